"""The durable sample store: one SQLite file (stdlib ``sqlite3``, WAL mode).

Why it looks like this:

- **Idempotent ingestion.** ``id`` is the primary key; a repeated id is dropped
  (``INSERT OR IGNORE``), so clients may retry a batch safely.
- **Nothing acknowledged is lost.** Every write is one ``BEGIN IMMEDIATE`` transaction
  committed with ``synchronous=FULL`` before the call returns.
- **One cursor for new and changed samples.** Every insert and every feedback that alters
  a sample appends a row to a change log with a monotonic sequence number
  (``AUTOINCREMENT``: never reused, even after deletes). A consumer keeps the sequence it
  has read up to; :meth:`SampleStore.changes` returns each touched sample once with
  ``previous`` (the sample as the consumer last saw it, or ``None`` if new to it) and
  ``current``, so the analysis can retract the old contribution and add the new one.
  Each change row stores the feedback overlay before and after it, so ``previous`` is
  exact however the reads are batched.
- **Verdicts are kept beside the record, not in it.** A verdict is about the interaction
  (input and output), which feedback never changes; a consumer counts ``previous`` and
  ``current`` with the same stored verdict. Setting a verdict is not a change (the
  consumer that judged has already counted it) unless ``log_change=True``.
- **Feedback may arrive first.** Feedback for an unknown id is kept pending and applied
  in the same transaction that inserts the sample.
- **One process, several threads.** One connection guarded by a lock; safe for a web
  server and a scheduler in the same process. Other processes may open the same file
  (SQLite serialises writers); sequence order is commit order either way.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.models import Feedback, RecordedVerdict, Sample, Unjudged, Verdict

DEFAULT_CONSUMER = "analysis"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id        TEXT PRIMARY KEY,
    rule      TEXT NOT NULL,
    cohort    TEXT NOT NULL,
    queue     TEXT NOT NULL,
    ts        REAL NOT NULL,
    received  REAL NOT NULL,
    body      TEXT NOT NULL,
    overlay   TEXT NOT NULL DEFAULT '{}',
    verdict_kind TEXT,
    verdict   TEXT
);
CREATE INDEX IF NOT EXISTS samples_rule_received ON samples(rule, received);
CREATE TABLE IF NOT EXISTS changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    rule      TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    before    TEXT,
    after     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_rule_seq ON changes(rule, seq);
CREATE INDEX IF NOT EXISTS changes_sample ON changes(sample_id);
CREATE TABLE IF NOT EXISTS pending_feedback (
    id        TEXT PRIMARY KEY,
    overlay   TEXT NOT NULL,
    received  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    consumer  TEXT NOT NULL,
    rule      TEXT NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (consumer, rule)
);
"""

INSERT = "insert"
FEEDBACK = "feedback"
VERDICT = "verdict"


@dataclass(frozen=True)
class InsertResult:
    accepted: int
    duplicates: int
    accepted_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedbackResult:
    applied: int
    pending: int
    foreign: tuple[str, ...] = ()
    """Ids of feedback naming a rule other than its sample's: never applied (a reporter
    allowed to send feedback for one rule must not change another rule's samples)."""


@dataclass(frozen=True)
class StoredSample:
    """A sample as stored: the record with feedback applied, plus the controller's verdict."""

    sample: Sample
    received_at: datetime
    verdict: Verdict | None


@dataclass(frozen=True)
class SampleChange:
    """One sample touched since the consumer's cursor.

    ``previous`` is what the consumer last saw (``None``: the sample is new to it);
    ``current`` is the sample now. ``verdict`` is the stored verdict, which applies to
    both (feedback does not change what was judged). ``verdict_before`` is the verdict
    that went with ``previous`` (``None`` for a new sample); it differs from ``verdict``
    only after a verdict change logged with ``log_change=True``.
    """

    sample_id: str
    previous: Sample | None
    current: Sample
    verdict: Verdict | None
    verdict_before: Verdict | None
    received_at: datetime

    @property
    def is_new(self) -> bool:
        return self.previous is None


@dataclass(frozen=True)
class ChangeBatch:
    changes: list[SampleChange]
    cursor: int
    """Pass this back as ``after`` next time (and commit it once the batch is counted)."""
    more: bool
    """True when the limit stopped the read: call again with the new cursor."""


@dataclass(frozen=True)
class PruneResult:
    samples: int
    pending_feedback: int


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _verdict_json(verdict: Verdict | None) -> tuple[str | None, str | None]:
    if verdict is None:
        return None, None
    kind = "judged" if isinstance(verdict, RecordedVerdict) else "unjudged"
    return kind, verdict.model_dump_json()


def _verdict(kind: str | None, text: str | None) -> Verdict | None:
    if kind is None or text is None:
        return None
    if kind == "judged":
        return RecordedVerdict.model_validate_json(text)
    return Unjudged.model_validate_json(text)


def _sample(body: str, overlay: dict[str, Any]) -> Sample:
    data = json.loads(body)
    data.update(overlay)
    return Sample.model_validate(data)


class SampleStore:
    """Durable, deduplicating sample store with a change log; see the module docstring."""

    def __init__(self, path: str | Path, *, timeout_seconds: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA busy_timeout={int(timeout_seconds * 1000)}")
        with self._lock:
            self._db.executescript(_SCHEMA)

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction, committed (durably) before returning."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-statement reads."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingestion ------------------------------------------------------------------

    def insert_many(
        self, samples: Iterable[Sample], *, now: datetime | None = None
    ) -> InsertResult:
        """Store new samples in one transaction; ids already stored (or repeated in the
        batch) are dropped. Pending feedback for an id is applied as it arrives."""
        received = _epoch(now) if now else _now()
        accepted: list[str] = []
        duplicates = 0
        with self._write() as db:
            for s in samples:
                body = s.model_dump_json()
                cur = db.execute(
                    "INSERT OR IGNORE INTO samples (id, rule, cohort, queue, ts, received, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (s.id, s.rule, s.cohort.value, s.queue, _epoch(s.ts), received, body),
                )
                if cur.rowcount == 0:
                    duplicates += 1
                    continue
                overlay = "{}"
                row = db.execute(
                    "SELECT overlay FROM pending_feedback WHERE id = ?", (s.id,)
                ).fetchone()
                if row is not None:
                    overlay = row[0]
                    db.execute("UPDATE samples SET overlay = ? WHERE id = ?", (overlay, s.id))
                    db.execute("DELETE FROM pending_feedback WHERE id = ?", (s.id,))
                db.execute(
                    "INSERT INTO changes (rule, sample_id, kind, before, after)"
                    " VALUES (?, ?, ?, NULL, ?)",
                    (s.rule, s.id, INSERT, overlay),
                )
                accepted.append(s.id)
        return InsertResult(len(accepted), duplicates, tuple(accepted))

    def insert(self, sample: Sample, *, now: datetime | None = None) -> bool:
        """Store one sample; False when its id was already stored."""
        return self.insert_many([sample], now=now).accepted == 1

    def apply_feedback(self, feedback: Feedback, *, now: datetime | None = None) -> bool:
        """Join feedback to its sample by id. True when the sample exists; otherwise the
        feedback is kept pending and applied when the sample arrives."""
        return self.apply_feedback_many([feedback], now=now).applied == 1

    def apply_feedback_many(
        self, feedback: Iterable[Feedback], *, now: datetime | None = None
    ) -> FeedbackResult:
        received = _epoch(now) if now else _now()
        applied = pending = 0
        foreign: list[str] = []
        with self._write() as db:
            for fb in feedback:
                update = fb.overlay()
                row = db.execute(
                    "SELECT rule, overlay FROM samples WHERE id = ?", (fb.id,)
                ).fetchone()
                if row is None:
                    pending += 1
                    old = db.execute(
                        "SELECT overlay FROM pending_feedback WHERE id = ?", (fb.id,)
                    ).fetchone()
                    merged = {**(json.loads(old[0]) if old else {}), **update}
                    db.execute(
                        "INSERT OR REPLACE INTO pending_feedback (id, overlay, received)"
                        " VALUES (?, ?, ?)",
                        (fb.id, json.dumps(merged, sort_keys=True), received),
                    )
                    continue
                rule, before = row
                if rule != fb.rule:
                    foreign.append(fb.id)
                    continue
                applied += 1
                after = json.dumps({**json.loads(before), **update}, sort_keys=True)
                if after == before:
                    continue  # nothing new: no change for consumers to process
                db.execute("UPDATE samples SET overlay = ? WHERE id = ?", (after, fb.id))
                db.execute(
                    "INSERT INTO changes (rule, sample_id, kind, before, after)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (rule, fb.id, FEEDBACK, before, after),
                )
        return FeedbackResult(applied, pending, tuple(foreign))

    # -- verdicts ---------------------------------------------------------------------

    def set_verdict(self, sample_id: str, verdict: Verdict, *, log_change: bool = False) -> bool:
        """Record the controller's verdict for a sample; False when the id is unknown."""
        return self.set_verdicts([(sample_id, verdict)], log_change=log_change) == 1

    def set_verdicts(
        self, verdicts: Iterable[tuple[str, Verdict]], *, log_change: bool = False
    ) -> int:
        """Record verdicts in one transaction; returns how many samples existed.

        With ``log_change`` a change is logged carrying the previous verdict, for a
        re-judging that the consumer has not counted itself.
        """
        found = 0
        with self._write() as db:
            for sample_id, verdict in verdicts:
                row = db.execute(
                    "SELECT rule, overlay, verdict_kind, verdict FROM samples WHERE id = ?",
                    (sample_id,),
                ).fetchone()
                if row is None:
                    continue
                found += 1
                kind, text = _verdict_json(verdict)
                db.execute(
                    "UPDATE samples SET verdict_kind = ?, verdict = ? WHERE id = ?",
                    (kind, text, sample_id),
                )
                if log_change and (kind, text) != (row[2], row[3]):
                    before = json.dumps(
                        {"overlay": json.loads(row[1]), "kind": row[2], "verdict": row[3]}
                    )
                    db.execute(
                        "INSERT INTO changes (rule, sample_id, kind, before, after)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (row[0], sample_id, VERDICT, before, row[1]),
                    )
        return found

    # -- reading ----------------------------------------------------------------------

    def get(self, sample_id: str) -> StoredSample | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, overlay, received, verdict_kind, verdict FROM samples WHERE id = ?",
                (sample_id,),
            ).fetchone()
        if row is None:
            return None
        return StoredSample(
            sample=_sample(row[0], json.loads(row[1])),
            received_at=datetime.fromtimestamp(row[2], UTC),
            verdict=_verdict(row[3], row[4]),
        )

    def head(self, rule: str | None = None) -> int:
        """The latest change sequence (for a rule, or overall); 0 when there is none."""
        with self._lock:
            if rule is None:
                row = self._db.execute("SELECT MAX(seq) FROM changes").fetchone()
            else:
                row = self._db.execute(
                    "SELECT MAX(seq) FROM changes WHERE rule = ?", (rule,)
                ).fetchone()
        return int(row[0] or 0)

    def changes(self, rule: str, after: int = 0, *, limit: int = 10_000) -> ChangeBatch:
        """Samples of ``rule`` inserted or changed after sequence ``after``, each once.

        Reads at most ``limit`` change rows; a sample touched several times in the range
        comes back once, with the state before the first and after the last of them.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._read() as db:
            rows = db.execute(
                "SELECT c.seq, c.sample_id, c.kind, c.before, c.after, s.body, s.received,"
                " s.verdict_kind, s.verdict"
                " FROM changes c JOIN samples s ON s.id = c.sample_id"
                " WHERE c.rule = ? AND c.seq > ? ORDER BY c.seq LIMIT ?",
                (rule, after, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        first: dict[str, tuple[str, str | None]] = {}
        last_overlay: dict[str, str] = {}
        old_verdict: dict[str, Verdict | None] = {}
        stored: dict[str, tuple[str, float, Verdict | None]] = {}
        for _seq, sample_id, kind, before, after_overlay, body, received, vkind, vtext in rows:
            first.setdefault(sample_id, (kind, before))
            last_overlay[sample_id] = after_overlay
            if kind == VERDICT and sample_id not in old_verdict:
                old = json.loads(before)
                old_verdict[sample_id] = _verdict(old["kind"], old["verdict"])
            stored[sample_id] = (body, received, _verdict(vkind, vtext))
        result: list[SampleChange] = []
        for sample_id, (kind, before) in first.items():
            body, received, verdict = stored[sample_id]
            previous: Sample | None = None
            if kind == FEEDBACK:
                previous = _sample(body, json.loads(before or "{}"))
            elif kind == VERDICT:
                previous = _sample(body, json.loads(before or "{}")["overlay"])
            result.append(
                SampleChange(
                    sample_id=sample_id,
                    previous=previous,
                    current=_sample(body, json.loads(last_overlay[sample_id])),
                    verdict=verdict,
                    verdict_before=(
                        None if previous is None else old_verdict.get(sample_id, verdict)
                    ),
                    received_at=datetime.fromtimestamp(received, UTC),
                )
            )
        cursor = rows[-1][0] if rows else after
        return ChangeBatch(changes=result, cursor=cursor, more=more)

    def samples(self, rule: str, *, since: datetime | None = None) -> list[StoredSample]:
        """Every stored sample of a rule (optionally with ``ts >= since``), by ts; for
        replay and for rebuilding statistics from scratch."""
        query = (
            "SELECT body, overlay, received, verdict_kind, verdict FROM samples"
            " WHERE rule = ? AND ts >= ? ORDER BY ts, id"
        )
        with self._lock:
            rows = self._db.execute(
                query, (rule, _epoch(since) if since else float("-inf"))
            ).fetchall()
        return [
            StoredSample(
                sample=_sample(body, json.loads(overlay)),
                received_at=datetime.fromtimestamp(received, UTC),
                verdict=_verdict(kind, text),
            )
            for body, overlay, received, kind, text in rows
        ]

    def count(self, rule: str | None = None) -> int:
        with self._lock:
            if rule is None:
                row = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM samples WHERE rule = ?", (rule,)
                ).fetchone()
        return int(row[0])

    def pending_feedback_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM pending_feedback").fetchone()[0])

    def queues(self, rule: str) -> list[str]:
        """Distinct queues seen for a rule (for per-queue Prometheus queries)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT queue FROM samples WHERE rule = ? ORDER BY queue", (rule,)
            ).fetchall()
        return [r[0] for r in rows]

    def rules(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT rule FROM samples ORDER BY rule").fetchall()
        return [r[0] for r in rows]

    # -- cursors ----------------------------------------------------------------------

    def cursor(self, rule: str, consumer: str = DEFAULT_CONSUMER) -> int:
        """The committed read position of a consumer (0 when it has read nothing)."""
        with self._lock:
            row = self._db.execute(
                "SELECT position FROM cursors WHERE consumer = ? AND rule = ?", (consumer, rule)
            ).fetchone()
        return int(row[0]) if row else 0

    def commit_cursor(self, rule: str, position: int, consumer: str = DEFAULT_CONSUMER) -> None:
        """Durably record that a consumer has counted everything up to ``position``.

        Never moves backwards, so a late commit from a stale tick is harmless.
        """
        with self._write() as db:
            db.execute(
                "INSERT INTO cursors (consumer, rule, position) VALUES (?, ?, ?)"
                " ON CONFLICT(consumer, rule) DO UPDATE SET"
                " position = MAX(position, excluded.position)",
                (consumer, rule, position),
            )

    def reset_cursor(self, rule: str, consumer: str = DEFAULT_CONSUMER) -> None:
        """Forget a consumer's position (a new rollout recounts from the start)."""
        with self._write() as db:
            db.execute("DELETE FROM cursors WHERE consumer = ? AND rule = ?", (consumer, rule))

    # -- retention --------------------------------------------------------------------

    def prune(
        self,
        *,
        max_age: timedelta | None = None,
        max_rows_per_rule: int | None = None,
        now: datetime | None = None,
    ) -> PruneResult:
        """Delete samples received more than ``max_age`` ago, and beyond the newest
        ``max_rows_per_rule`` per rule, with their change rows; pending feedback older
        than ``max_age`` goes too. Deleted samples never come back as changes."""
        if max_rows_per_rule is not None and max_rows_per_rule < 0:
            raise ValueError("max_rows_per_rule must be >= 0")
        current = _epoch(now) if now else _now()
        deleted = pending = 0
        with self._write() as db:
            doomed: list[str] = []
            if max_age is not None:
                cutoff = current - max_age.total_seconds()
                doomed += [
                    r[0] for r in db.execute("SELECT id FROM samples WHERE received < ?", (cutoff,))
                ]
                pending = db.execute(
                    "DELETE FROM pending_feedback WHERE received < ?", (cutoff,)
                ).rowcount
            if max_rows_per_rule is not None:
                doomed += [
                    r[0]
                    for r in db.execute(
                        "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY rule"
                        " ORDER BY received DESC, rowid DESC) AS n FROM samples) WHERE n > ?",
                        (max_rows_per_rule,),
                    )
                ]
            for sample_id in dict.fromkeys(doomed):
                db.execute("DELETE FROM changes WHERE sample_id = ?", (sample_id,))
                deleted += db.execute("DELETE FROM samples WHERE id = ?", (sample_id,)).rowcount
        return PruneResult(samples=deleted, pending_feedback=pending)


__all__ = [
    "DEFAULT_CONSUMER",
    "ChangeBatch",
    "FeedbackResult",
    "InsertResult",
    "PruneResult",
    "SampleChange",
    "SampleStore",
    "StoredSample",
    "Verdict",
]
