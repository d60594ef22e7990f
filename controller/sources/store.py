"""The durable sample store: one SQLite file (stdlib ``sqlite3``, WAL mode).

Why it looks like this:

- **Evidence belongs to a rule.** Samples are keyed by (namespace, rule, id): a rule
  ``bot`` in two namespaces never shares samples, and one rule's clients cannot squat on
  another rule's ids.
- **Idempotent ingestion.** A repeated id for the same rule is dropped (``INSERT OR
  IGNORE``), so clients may retry a batch safely.
- **Nothing acknowledged is lost.** Every write is one ``BEGIN IMMEDIATE`` transaction
  committed with ``synchronous=FULL`` before the call returns.
- **One cursor for new and changed samples.** Every insert, every feedback that alters a
  sample and every verdict appends a row to a change log with a monotonic sequence number
  (``AUTOINCREMENT``: never reused, even after deletes). A consumer keeps the sequence it
  has read up to (the analysis keeps it in the CanaryRule's status);
  :meth:`SampleStore.changes` returns each touched sample once with ``previous`` (the
  sample as the consumer last saw it, or ``None`` if new to it) and ``current``, so the
  analysis can retract the old contribution and add the new one. Each change row stores
  the state before it, so ``previous`` is exact however the reads are batched.
- **Verdicts are kept beside the record, not in it.** A verdict is about the interaction
  (input and output), which feedback never changes. The judge runs before the analysis
  reads the log (see :mod:`controller.reconciler.analysis_step`): a sample it judged in
  the same interval reaches the analysis once, with its verdict; a verdict that arrives
  later (a retry after a judge outage) is a change that swaps the sample's contribution.
- **Feedback may arrive first.** Feedback for an unknown id is kept pending (per rule) and
  applied in the same transaction that inserts the sample.
- **One process, several threads.** One connection guarded by a lock; safe for a web
  server and a scheduler in the same process. Other processes may open the same file
  (SQLite serialises writers); sequence order is commit order either way.
- **Versioned schema.** ``PRAGMA user_version`` records it; a version-1 file (keyed by
  rule name only) is migrated in place on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.models import Feedback, RecordedVerdict, RuleKey, Sample, Unjudged, Verdict

from .records import (
    AwaitingVerdict,
    ChangeBatch,
    FeedbackResult,
    InsertResult,
    PruneResult,
    SampleChange,
    StoredSample,
)

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    namespace TEXT NOT NULL,
    rule      TEXT NOT NULL,
    id        TEXT NOT NULL,
    cohort    TEXT NOT NULL,
    queue     TEXT NOT NULL,
    ts        REAL NOT NULL,
    received  REAL NOT NULL,
    body      TEXT NOT NULL,
    overlay   TEXT NOT NULL DEFAULT '{}',
    inserted_seq INTEGER NOT NULL DEFAULT 0,
    verdict_kind TEXT,
    verdict   TEXT,
    judge_attempts INTEGER NOT NULL DEFAULT 0,
    feedback_closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, rule, id)
);
CREATE INDEX IF NOT EXISTS samples_received ON samples(namespace, rule, received);
CREATE INDEX IF NOT EXISTS samples_awaiting ON samples(namespace, rule, verdict_kind, inserted_seq);
CREATE INDEX IF NOT EXISTS samples_open ON samples(namespace, rule, feedback_closed, ts);
CREATE TABLE IF NOT EXISTS changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    rule      TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    before    TEXT,
    after     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_rule_seq ON changes(namespace, rule, seq);
CREATE INDEX IF NOT EXISTS changes_sample ON changes(namespace, rule, sample_id);
CREATE TABLE IF NOT EXISTS pending_feedback (
    namespace TEXT NOT NULL,
    rule      TEXT NOT NULL,
    id        TEXT NOT NULL,
    overlay   TEXT NOT NULL,
    received  REAL NOT NULL,
    PRIMARY KEY (namespace, rule, id)
);
CREATE TABLE IF NOT EXISTS log_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_MIGRATE_V1 = """
ALTER TABLE samples RENAME TO samples_v1;
ALTER TABLE changes RENAME TO changes_v1;
ALTER TABLE pending_feedback RENAME TO pending_feedback_v1;
DROP INDEX IF EXISTS samples_rule_received;
DROP INDEX IF EXISTS changes_rule_seq;
DROP INDEX IF EXISTS changes_sample;
DROP TABLE IF EXISTS cursors;
"""
_COPY_V1 = """
INSERT INTO changes (seq, namespace, rule, sample_id, kind, before, after)
    SELECT seq, 'default', rule, sample_id, kind, before, after FROM changes_v1;
INSERT INTO samples (namespace, rule, id, cohort, queue, ts, received, body, overlay,
                     inserted_seq, verdict_kind, verdict)
    SELECT 'default', s.rule, s.id, s.cohort, s.queue, s.ts, s.received, s.body, s.overlay,
           COALESCE((SELECT MIN(c.seq) FROM changes_v1 c WHERE c.sample_id = s.id), 0),
           s.verdict_kind, s.verdict
    FROM samples_v1 s;
DROP TABLE samples_v1;
DROP TABLE changes_v1;
DROP TABLE pending_feedback_v1;
"""

INSERT = "insert"
FEEDBACK = "feedback"
VERDICT = "verdict"


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


def _stored_body(sample: Sample, key: RuleKey) -> str:
    """The record as stored: its namespace made explicit, so a read gives the same key."""
    return sample.model_copy(update={"namespace": key.namespace}).model_dump_json()


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
            self._migrate()

    def _migrate(self) -> None:
        """Create the schema, or upgrade a version-1 file (samples keyed by rule name only:
        its rows move to namespace ``default``; pending feedback without a rule is dropped)."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        legacy = version < SCHEMA_VERSION and "samples" in tables
        script = (_MIGRATE_V1 if legacy else "") + _SCHEMA + (_COPY_V1 if legacy else "")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
        """Store new samples in one transaction; ids already stored for the same rule (or
        repeated in the batch) are dropped. Pending feedback for an id is applied as it
        arrives."""
        received = _epoch(now) if now else _now()
        accepted: list[str] = []
        duplicates = 0
        with self._write() as db:
            for s in samples:
                key = s.key
                cur = db.execute(
                    "INSERT OR IGNORE INTO samples (namespace, rule, id, cohort, queue, ts,"
                    " received, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key.namespace, key.name, s.id, s.cohort.value, s.queue, _epoch(s.ts),
                     received, _stored_body(s, key)),
                )
                if cur.rowcount == 0:
                    duplicates += 1
                    continue
                overlay = "{}"
                row = db.execute(
                    "SELECT overlay FROM pending_feedback WHERE namespace = ? AND rule = ?"
                    " AND id = ?", (key.namespace, key.name, s.id),
                ).fetchone()
                if row is not None:
                    overlay = row[0]
                    db.execute(
                        "DELETE FROM pending_feedback WHERE namespace = ? AND rule = ? AND id = ?",
                        (key.namespace, key.name, s.id),
                    )
                seq = db.execute(
                    "INSERT INTO changes (namespace, rule, sample_id, kind, before, after)"
                    " VALUES (?, ?, ?, ?, NULL, ?)",
                    (key.namespace, key.name, s.id, INSERT, overlay),
                ).lastrowid
                db.execute(
                    "UPDATE samples SET overlay = ?, inserted_seq = ? WHERE namespace = ?"
                    " AND rule = ? AND id = ?", (overlay, seq, key.namespace, key.name, s.id),
                )
                accepted.append(s.id)
        return InsertResult(len(accepted), duplicates, tuple(accepted))

    def insert(self, sample: Sample, *, now: datetime | None = None) -> bool:
        """Store one sample; False when its id was already stored."""
        return self.insert_many([sample], now=now).accepted == 1

    def apply_feedback(self, feedback: Feedback, *, now: datetime | None = None) -> bool:
        """Join feedback to its sample by rule and id. True when the sample exists;
        otherwise the feedback is kept pending and applied when the sample arrives."""
        return self.apply_feedback_many([feedback], now=now).applied == 1

    def apply_feedback_many(
        self, feedback: Iterable[Feedback], *, now: datetime | None = None
    ) -> FeedbackResult:
        received = _epoch(now) if now else _now()
        applied = pending = 0
        with self._write() as db:
            for fb in feedback:
                key, update = fb.key, fb.overlay()
                where = (key.namespace, key.name, fb.id)
                row = db.execute(
                    "SELECT overlay FROM samples WHERE namespace = ? AND rule = ? AND id = ?",
                    where,
                ).fetchone()
                if row is None:
                    pending += 1
                    old = db.execute(
                        "SELECT overlay FROM pending_feedback WHERE namespace = ? AND rule = ?"
                        " AND id = ?", where,
                    ).fetchone()
                    merged = {**(json.loads(old[0]) if old else {}), **update}
                    db.execute(
                        "INSERT OR REPLACE INTO pending_feedback (namespace, rule, id, overlay,"
                        " received) VALUES (?, ?, ?, ?, ?)",
                        (*where, json.dumps(merged, sort_keys=True), received),
                    )
                    continue
                applied += 1
                before = row[0]
                after = json.dumps({**json.loads(before), **update}, sort_keys=True)
                if after == before:
                    continue  # nothing new: no change for consumers to process
                db.execute(
                    "UPDATE samples SET overlay = ? WHERE namespace = ? AND rule = ? AND id = ?",
                    (after, *where),
                )
                db.execute(
                    "INSERT INTO changes (namespace, rule, sample_id, kind, before, after)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (*where[:2], fb.id, FEEDBACK, before, after),
                )
        return FeedbackResult(applied, pending)

    def close_feedback_windows(
        self, key: RuleKey, before: datetime, *, limit: int = 50_000
    ) -> int:
        """Mark the rule's samples stamped at or before ``before`` as past their feedback
        window (server-owned ``feedback_closed: true``), each as a change, so a consumer
        swaps a pending output for a resolved one (no feedback then means 0 minutes).
        Returns how many were closed (at most ``limit`` per call: the rest next time)."""
        closed = 0
        with self._write() as db:
            rows = db.execute(
                "SELECT id, overlay FROM samples WHERE namespace = ? AND rule = ?"
                " AND feedback_closed = 0 AND ts <= ? LIMIT ?",
                (key.namespace, key.name, _epoch(before), limit),
            ).fetchall()
            for sample_id, before_overlay in rows:
                after = json.dumps({**json.loads(before_overlay), "feedback_closed": True},
                                   sort_keys=True)
                where = (key.namespace, key.name, sample_id)
                db.execute(
                    "UPDATE samples SET overlay = ?, feedback_closed = 1 WHERE namespace = ?"
                    " AND rule = ? AND id = ?", (after, *where),
                )
                db.execute(
                    "INSERT INTO changes (namespace, rule, sample_id, kind, before, after)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (*where, FEEDBACK, before_overlay, after),
                )
                closed += 1
        return closed

    # -- verdicts ---------------------------------------------------------------------

    def awaiting_verdict(
        self, key: RuleKey, *, upto: int, since: datetime | None = None, limit: int = 100_000
    ) -> list[AwaitingVerdict]:
        """Samples of a rule, inserted at or before sequence ``upto`` (and with
        ``ts >= since``), that have no verdict yet, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body, overlay, inserted_seq, judge_attempts FROM samples"
                " WHERE namespace = ? AND rule = ? AND verdict_kind IS NULL"
                " AND inserted_seq <= ? AND ts >= ? ORDER BY inserted_seq LIMIT ?",
                (key.namespace, key.name, upto, _epoch(since) if since else float("-inf"),
                 limit),
            ).fetchall()
        return [AwaitingVerdict(_sample(body, json.loads(overlay)), seq, attempts)
                for body, overlay, seq, attempts in rows]

    def set_verdicts(
        self, key: RuleKey, verdicts: Iterable[tuple[str, Verdict]], *,
        retry: Iterable[str] = (),
    ) -> int:
        """Record verdicts in one transaction; returns how many samples existed.

        Each new verdict is logged as a change carrying the previous one, so a consumer
        that already counted the sample (a judged retry) swaps its contribution, and one
        that has not yet read the sample sees it once, with its verdict. Samples in
        ``retry`` failed transiently: they stay awaiting, with one more attempt counted.
        """
        found = 0
        with self._write() as db:
            db.executemany(
                "UPDATE samples SET judge_attempts = judge_attempts + 1"
                " WHERE namespace = ? AND rule = ? AND id = ?",
                [(key.namespace, key.name, sid) for sid in retry],
            )
            for sample_id, verdict in verdicts:
                where = (key.namespace, key.name, sample_id)
                row = db.execute(
                    "SELECT overlay, verdict_kind, verdict FROM samples"
                    " WHERE namespace = ? AND rule = ? AND id = ?", where,
                ).fetchone()
                if row is None:
                    continue
                found += 1
                kind, text = _verdict_json(verdict)
                if (kind, text) == (row[1], row[2]):
                    continue
                db.execute(
                    "UPDATE samples SET verdict_kind = ?, verdict = ? WHERE namespace = ?"
                    " AND rule = ? AND id = ?", (kind, text, *where),
                )
                before = json.dumps(
                    {"overlay": json.loads(row[0]), "kind": row[1], "verdict": row[2]}
                )
                db.execute(
                    "INSERT INTO changes (namespace, rule, sample_id, kind, before, after)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (*where, VERDICT, before, row[0]),
                )
        return found

    # -- reading ----------------------------------------------------------------------

    def get(self, key: RuleKey, sample_id: str) -> StoredSample | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, overlay, received, verdict_kind, verdict FROM samples"
                " WHERE namespace = ? AND rule = ? AND id = ?",
                (key.namespace, key.name, sample_id),
            ).fetchone()
        if row is None:
            return None
        return StoredSample(
            sample=_sample(row[0], json.loads(row[1])),
            received_at=datetime.fromtimestamp(row[2], UTC),
            verdict=_verdict(row[3], row[4]),
        )

    def head(self, key: RuleKey | None = None) -> int:
        """The latest change sequence (for a rule, or overall); 0 when there is none."""
        with self._lock:
            if key is None:
                row = self._db.execute("SELECT MAX(seq) FROM changes").fetchone()
            else:
                row = self._db.execute(
                    "SELECT MAX(seq) FROM changes WHERE namespace = ? AND rule = ?",
                    (key.namespace, key.name),
                ).fetchone()
        return int(row[0] or 0)

    def log_id(self) -> str:
        """This log's identity: a cursor saved from another log (another replica's store,
        or a store recreated on a new volume) means nothing here."""
        with self._lock:
            row = self._db.execute("SELECT value FROM log_meta WHERE key = 'log_id'").fetchone()
            if row is not None:
                return str(row[0])
            value = uuid.uuid4().hex
            self._db.execute("INSERT OR IGNORE INTO log_meta (key, value) VALUES ('log_id', ?)",
                             (value,))
            row = self._db.execute("SELECT value FROM log_meta WHERE key = 'log_id'").fetchone()
        return str(row[0])

    def position_at(self, key: RuleKey, at: datetime) -> int:
        """The log position just before the first sample received at or after ``at``: a
        consumer that starts there reads every sample stored since, and nothing older."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(inserted_seq) FROM samples WHERE namespace = ? AND rule = ?"
                " AND received >= ?", (key.namespace, key.name, _epoch(at)),
            ).fetchone()
        if row[0] is None:
            return self.head(key)
        return int(row[0]) - 1

    def changes(
        self, key: RuleKey, after: int = 0, *, upto: int | None = None, limit: int = 10_000
    ) -> ChangeBatch:
        """Samples of a rule inserted or changed after sequence ``after`` (and at or before
        ``upto``), each once.

        Reads at most ``limit`` change rows; a sample touched several times in the range
        comes back once, with the state before the first and after the last of them.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._read() as db:
            rows = db.execute(
                "SELECT c.seq, c.sample_id, c.kind, c.before, c.after, s.body, s.received,"
                " s.verdict_kind, s.verdict"
                " FROM changes c JOIN samples s ON s.namespace = c.namespace"
                " AND s.rule = c.rule AND s.id = c.sample_id"
                " WHERE c.namespace = ? AND c.rule = ? AND c.seq > ? AND c.seq <= ?"
                " ORDER BY c.seq LIMIT ?",
                (key.namespace, key.name, after, upto if upto is not None else 2**62,
                 limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        result = _collapse(rows)
        cursor = rows[-1][0] if rows else after
        return ChangeBatch(changes=result, cursor=cursor, more=more)

    def samples(self, key: RuleKey, *, since: datetime | None = None) -> list[StoredSample]:
        """Every stored sample of a rule (optionally with ``ts >= since``), by ts; for
        replay and for rebuilding statistics from scratch."""
        query = (
            "SELECT body, overlay, received, verdict_kind, verdict FROM samples"
            " WHERE namespace = ? AND rule = ? AND ts >= ? ORDER BY ts, id"
        )
        with self._lock:
            rows = self._db.execute(
                query, (key.namespace, key.name, _epoch(since) if since else float("-inf"))
            ).fetchall()
        return [
            StoredSample(
                sample=_sample(body, json.loads(overlay)),
                received_at=datetime.fromtimestamp(received, UTC),
                verdict=_verdict(kind, text),
            )
            for body, overlay, received, kind, text in rows
        ]

    def count(self, key: RuleKey | None = None) -> int:
        with self._lock:
            if key is None:
                row = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM samples WHERE namespace = ? AND rule = ?",
                    (key.namespace, key.name),
                ).fetchone()
        return int(row[0])

    def pending_feedback_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM pending_feedback").fetchone()[0])

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
            doomed: list[tuple[str, str, str]] = []
            if max_age is not None:
                cutoff = current - max_age.total_seconds()
                doomed += db.execute(
                    "SELECT namespace, rule, id FROM samples WHERE received < ?", (cutoff,)
                ).fetchall()
                pending = db.execute(
                    "DELETE FROM pending_feedback WHERE received < ?", (cutoff,)
                ).rowcount
            if max_rows_per_rule is not None:
                doomed += db.execute(
                    "SELECT namespace, rule, id FROM (SELECT namespace, rule, id,"
                    " ROW_NUMBER() OVER (PARTITION BY namespace, rule"
                    " ORDER BY received DESC, rowid DESC) AS n FROM samples) WHERE n > ?",
                    (max_rows_per_rule,),
                ).fetchall()
            for where in dict.fromkeys(tuple(d) for d in doomed):
                db.execute(
                    "DELETE FROM changes WHERE namespace = ? AND rule = ? AND sample_id = ?",
                    where,
                )
                deleted += db.execute(
                    "DELETE FROM samples WHERE namespace = ? AND rule = ? AND id = ?", where
                ).rowcount
        return PruneResult(samples=deleted, pending_feedback=pending)


Row = tuple[int, str, str, str | None, str, str, float, str | None, str | None]


def _collapse(rows: list[Row]) -> list[SampleChange]:
    """One change per sample over a range of change rows: the state before the first row
    and after the last."""
    first: dict[str, tuple[str, str | None]] = {}
    last_overlay: dict[str, str] = {}
    old_verdict: dict[str, Verdict | None] = {}
    stored: dict[str, tuple[str, float, Verdict | None]] = {}
    for _seq, sample_id, kind, before, after_overlay, body, received, vkind, vtext in rows:
        first.setdefault(sample_id, (kind, before))
        last_overlay[sample_id] = after_overlay
        if kind == VERDICT and sample_id not in old_verdict:
            old = json.loads(before or "{}")
            old_verdict[sample_id] = _verdict(old.get("kind"), old.get("verdict"))
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
                verdict_before=None if previous is None else old_verdict.get(sample_id, verdict),
                received_at=datetime.fromtimestamp(received, UTC),
            )
        )
    return result


__all__ = [
    "AwaitingVerdict",
    "ChangeBatch",
    "FeedbackResult",
    "InsertResult",
    "PruneResult",
    "SampleChange",
    "SampleStore",
    "StoredSample",
]
