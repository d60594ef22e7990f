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
- **A record that cannot be read never halts a reader.** Every read decodes each row on
  its own; a row that no longer decodes (written by an older version, corrupted on disk,
  or carrying a value the model now refuses) is *quarantined*: moved, with its change
  rows, to the ``quarantine`` table, counted in ``llmcanary_store_quarantined_total`` and
  reported by :meth:`SampleStore.quarantined`, while the read goes on with the rest.
- **Bounded on disk.** Retention by age and by count per rule (:meth:`SampleStore.prune`),
  and by size: with ``max_bytes`` an insert that finds the store over its limit first
  deletes the oldest samples (whatever their rule) down to ``PRUNE_TO`` of the limit, and
  refuses with :class:`StoreFull` if that cannot make room. The WAL is capped by
  ``journal_size_limit``. Pending feedback is bounded per rule in count (the oldest goes)
  and in age.
- **Versioned schema.** ``PRAGMA user_version`` records it; a version-1 file (keyed by
  rule name only) is migrated in place on open.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.models import Feedback, RecordedVerdict, RuleKey, Sample, Unjudged, Verdict
from controller.observability import STORE_QUARANTINED

from .records import (
    AwaitingVerdict,
    ChangeBatch,
    FeedbackResult,
    InsertResult,
    PruneResult,
    Quarantined,
    QuarantineReport,
    SampleChange,
    StoredSample,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
"""3: the quarantine table; 4: ``samples.feedback_closed``. Both are added in place to a
version-2 or -3 file."""
WAL_LIMIT_BYTES = 64 * 1024 * 1024
"""The write-ahead log is truncated back to this after each checkpoint."""
PRUNE_TO = 0.8
"""A store over ``max_bytes`` is pruned down to this share of it (room for a while)."""
MAX_PENDING_PER_RULE = 100_000
"""Feedback records kept per rule for samples that have not arrived (the oldest go first)."""


_CHUNK = 500
"""Ids per ``IN (...)`` lookup (well under SQLite's bound-parameter limit)."""


class StoreFull(Exception):
    """The store is at ``max_bytes`` and pruning the oldest samples freed no room."""

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
CREATE INDEX IF NOT EXISTS pending_received ON pending_feedback(namespace, rule, received);
CREATE TABLE IF NOT EXISTS quarantine (
    namespace TEXT NOT NULL,
    rule      TEXT NOT NULL,
    id        TEXT NOT NULL,
    body      TEXT,
    overlay   TEXT,
    verdict_kind TEXT,
    verdict   TEXT,
    reason    TEXT NOT NULL,
    at        REAL NOT NULL,
    PRIMARY KEY (namespace, rule, id)
);
"""

_ADD_FEEDBACK_CLOSED = """
ALTER TABLE samples ADD COLUMN feedback_closed INTEGER NOT NULL DEFAULT 0;
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


UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, RecursionError)
"""What decoding a stored row can raise when the row is bad (pydantic's ValidationError
and json's JSONDecodeError are ValueErrors): the row is quarantined, the read goes on."""


def _why(exc: BaseException) -> str:
    """One line naming the problem, never the stored values (they are users' data)."""
    if hasattr(exc, "errors"):
        try:
            errs = exc.errors(include_url=False, include_input=False)
            return "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in errs[:3]
            )[:300]
        except Exception:  # pragma: no cover - defensive: any error object
            pass
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _stored_body(sample: Sample, key: RuleKey) -> str:
    """The record as stored: its namespace made explicit, so a read gives the same key
    (ingestion has already placed it: no copy then)."""
    if sample.namespace != key.namespace:
        sample = sample.model_copy(update={"namespace": key.namespace})
    return sample.model_dump_json()


class SampleStore:
    """Durable, deduplicating sample store with a change log; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        timeout_seconds: float = 30.0,
        max_bytes: int | None = None,
        max_pending_per_rule: int = MAX_PENDING_PER_RULE,
    ) -> None:
        self.path = str(path)
        self.max_bytes = max_bytes or None
        self.max_pending_per_rule = max_pending_per_rule
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA busy_timeout={int(timeout_seconds * 1000)}")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        self._db.execute("PRAGMA temp_store=MEMORY")  # /tmp is small and read-only elsewhere
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        with self._lock:
            self._migrate()

    def _migrate(self) -> None:
        """Create the schema, or upgrade a version-1 file (samples keyed by rule name only:
        its rows move to namespace ``default``; pending feedback without a rule is dropped).
        Later versions gain their new columns, tables and indexes in place."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        legacy = version < 2 and "samples" in tables
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(samples)")}
        add_closed = not legacy and "samples" in tables and "feedback_closed" not in columns
        script = (_MIGRATE_V1 if legacy else "") + (_ADD_FEEDBACK_CLOSED if add_closed else "") \
            + _SCHEMA + (_COPY_V1 if legacy else "")
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
        by_rule: dict[RuleKey, list[Sample]] = {}
        for s in samples:
            by_rule.setdefault(s.key, []).append(s)
        accepted: list[str] = []
        duplicates = 0
        self._make_room()
        with self._write() as db:
            for key, batch in by_rule.items():
                new = self._new_only(db, key, batch)
                duplicates += len(batch) - len(new)
                pending = self._take_pending(db, key, [s.id for s in new])
                for s in new:
                    overlay = pending.get(s.id, "{}")
                    seq = db.execute(
                        "INSERT INTO changes (namespace, rule, sample_id, kind, before, after)"
                        " VALUES (?, ?, ?, ?, NULL, ?)",
                        (key.namespace, key.name, s.id, INSERT, overlay),
                    ).lastrowid
                    db.execute(
                        "INSERT INTO samples (namespace, rule, id, cohort, queue, ts, received,"
                        " body, overlay, inserted_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key.namespace, key.name, s.id, s.cohort.value, s.queue, _epoch(s.ts),
                         received, _stored_body(s, key), overlay, seq),
                    )
                    accepted.append(s.id)
        return InsertResult(len(accepted), duplicates, tuple(accepted))

    @staticmethod
    def _new_only(db: sqlite3.Connection, key: RuleKey, batch: list[Sample]) -> list[Sample]:
        """The samples whose id is neither stored for the rule nor earlier in the batch
        (one indexed lookup per chunk instead of one statement per sample)."""
        stored: set[str] = set()
        ids = [s.id for s in batch]
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            stored.update(r[0] for r in db.execute(
                "SELECT id FROM samples WHERE namespace = ? AND rule = ? AND id IN"
                f" ({','.join('?' * len(chunk))})", (key.namespace, key.name, *chunk)))
        new: list[Sample] = []
        for s in batch:
            if s.id not in stored:
                stored.add(s.id)
                new.append(s)
        return new

    @staticmethod
    def _take_pending(db: sqlite3.Connection, key: RuleKey, ids: list[str]) -> dict[str, str]:
        """Feedback that arrived before these samples (id -> overlay), removed from pending."""
        if not ids or db.execute("SELECT 1 FROM pending_feedback WHERE namespace = ? AND"
                                 " rule = ? LIMIT 1", (key.namespace, key.name)).fetchone() is None:
            return {}
        found: dict[str, str] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(db.execute(
                "SELECT id, overlay FROM pending_feedback WHERE namespace = ? AND rule = ?"
                f" AND id IN ({marks})", (key.namespace, key.name, *chunk)).fetchall())
            db.execute(f"DELETE FROM pending_feedback WHERE namespace = ? AND rule = ? AND id"
                       f" IN ({marks})", (key.namespace, key.name, *chunk))
        return found

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
        capped: set[RuleKey] = set()
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
                    capped.add(key)
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
            for key in capped:
                db.execute(
                    "DELETE FROM pending_feedback WHERE rowid IN (SELECT rowid FROM"
                    " pending_feedback WHERE namespace = ? AND rule = ?"
                    " ORDER BY received DESC, rowid DESC LIMIT -1 OFFSET ?)",
                    (key.namespace, key.name, self.max_pending_per_rule),
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
        ``ts >= since``), that have no verdict yet, oldest first. Unreadable rows are
        quarantined and skipped."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body, overlay, inserted_seq, judge_attempts FROM samples"
                " WHERE namespace = ? AND rule = ? AND verdict_kind IS NULL"
                " AND inserted_seq <= ? AND ts >= ? ORDER BY inserted_seq LIMIT ?",
                (key.namespace, key.name, upto, _epoch(since) if since else float("-inf"),
                 limit),
            ).fetchall()
        out: list[AwaitingVerdict] = []
        bad: dict[str, str] = {}
        for sample_id, body, overlay, seq, attempts in rows:
            try:
                out.append(AwaitingVerdict(_sample(body, json.loads(overlay)), seq, attempts))
            except UNREADABLE as exc:
                bad[sample_id] = _why(exc)
        self._quarantine(key, bad)
        return out

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
        """The stored sample, or None (also when it was unreadable: it is quarantined)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, body, overlay, received, verdict_kind, verdict FROM samples"
                " WHERE namespace = ? AND rule = ? AND id = ?",
                (key.namespace, key.name, sample_id),
            ).fetchone()
        if row is None:
            return None
        found = self._stored(key, [row])
        return found[0] if found else None

    def _stored(self, key: RuleKey, rows: list[Any]) -> list[StoredSample]:
        """Rows (id, body, overlay, received, verdict kind, verdict) decoded; the
        unreadable ones quarantined."""
        out: list[StoredSample] = []
        bad: dict[str, str] = {}
        for sample_id, body, overlay, received, kind, text in rows:
            try:
                out.append(StoredSample(
                    sample=_sample(body, json.loads(overlay)),
                    received_at=datetime.fromtimestamp(received, UTC),
                    verdict=_verdict(kind, text),
                ))
            except UNREADABLE as exc:
                bad[sample_id] = _why(exc)
        self._quarantine(key, bad)
        return out

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
        comes back once, with the state before the first and after the last of them. A
        sample whose rows cannot be decoded is quarantined and left out (the cursor still
        moves past it); the batch names it in ``quarantined``.
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
        result, bad = _collapse(rows)
        cursor = rows[-1][0] if rows else after
        quarantined = self._quarantine(key, bad)
        return ChangeBatch(changes=result, cursor=cursor, more=more, quarantined=quarantined)

    def samples(self, key: RuleKey, *, since: datetime | None = None) -> list[StoredSample]:
        """Every stored sample of a rule (optionally with ``ts >= since``), by ts; for
        replay and for rebuilding statistics from scratch. Unreadable rows are quarantined
        and left out."""
        query = (
            "SELECT id, body, overlay, received, verdict_kind, verdict FROM samples"
            " WHERE namespace = ? AND rule = ? AND ts >= ? ORDER BY ts, id"
        )
        with self._lock:
            rows = self._db.execute(
                query, (key.namespace, key.name, _epoch(since) if since else float("-inf"))
            ).fetchall()
        return self._stored(key, rows)

    # -- quarantine -------------------------------------------------------------------

    def _quarantine(self, key: RuleKey, bad: dict[str, str]) -> tuple[Quarantined, ...]:
        """Move unreadable samples (id -> why) aside with their change rows, in one
        transaction; each is counted and logged once (by id and reason, never content)."""
        if not bad:
            return ()
        at = _now()
        moved: list[Quarantined] = []
        with self._write() as db:
            for sample_id, reason in bad.items():
                where = (key.namespace, key.name, sample_id)
                cur = db.execute(
                    "INSERT OR REPLACE INTO quarantine (namespace, rule, id, body, overlay,"
                    " verdict_kind, verdict, reason, at) SELECT namespace, rule, id, body,"
                    " overlay, verdict_kind, verdict, ?, ? FROM samples WHERE namespace = ?"
                    " AND rule = ? AND id = ?", (reason, at, *where),
                )
                if cur.rowcount == 0:
                    continue  # another reader moved it first
                db.execute("DELETE FROM samples WHERE namespace = ? AND rule = ? AND id = ?",
                           where)
                db.execute("DELETE FROM changes WHERE namespace = ? AND rule = ?"
                           " AND sample_id = ?", where)
                moved.append(Quarantined(sample_id, reason))
        for q in moved:
            STORE_QUARANTINED.labels(key.namespace, key.name).inc()
            log.warning("quarantined unreadable sample %s of %s: %s", q.sample_id, key,
                        q.reason)
        return tuple(moved)

    def quarantined(self, key: RuleKey) -> QuarantineReport:
        """How many of a rule's samples were quarantined, and the latest one."""
        with self._lock:
            count = self._db.execute(
                "SELECT COUNT(*) FROM quarantine WHERE namespace = ? AND rule = ?",
                (key.namespace, key.name),
            ).fetchone()[0]
            last = self._db.execute(
                "SELECT id, reason FROM quarantine WHERE namespace = ? AND rule = ?"
                " ORDER BY at DESC, rowid DESC LIMIT 1", (key.namespace, key.name),
            ).fetchone()
        return QuarantineReport(int(count), Quarantined(*last) if last else None)

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

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages excluded; the WAL is capped
        separately at ``WAL_LIMIT_BYTES``)."""
        with self._lock:
            pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
            free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def _make_room(self) -> None:
        """Before an insert: over ``max_bytes``, delete the oldest samples down to
        ``PRUNE_TO`` of it; :class:`StoreFull` when nothing more can go."""
        if self.max_bytes is None or self.used_bytes() < self.max_bytes:
            return
        with self._lock:
            self.prune(max_bytes=int(self.max_bytes * PRUNE_TO))
            if self.used_bytes() >= self.max_bytes:
                raise StoreFull(
                    f"sample store at its size limit ({self.max_bytes} bytes) and nothing "
                    "left to prune")

    def prune(
        self,
        *,
        max_age: timedelta | None = None,
        max_rows_per_rule: int | None = None,
        max_bytes: int | None = None,
        now: datetime | None = None,
    ) -> PruneResult:
        """Delete samples received more than ``max_age`` ago, beyond the newest
        ``max_rows_per_rule`` per rule, and the oldest of all while the store uses more
        than ``max_bytes``, with their change rows; pending feedback older than
        ``max_age`` goes too. Deleted samples never come back as changes."""
        if max_rows_per_rule is not None and max_rows_per_rule < 0:
            raise ValueError("max_rows_per_rule must be >= 0")
        current = _epoch(now) if now else _now()
        deleted = pending = 0
        with self._write() as db:
            if max_age is not None:
                cutoff = current - max_age.total_seconds()
                deleted += self._delete_where(db, "received < ?", (cutoff,))
                pending = db.execute(
                    "DELETE FROM pending_feedback WHERE received < ?", (cutoff,)
                ).rowcount
                db.execute("DELETE FROM quarantine WHERE at < ?", (cutoff,))
            if max_rows_per_rule is not None:
                deleted += self._prune_counts(db, max_rows_per_rule)
        if max_bytes is not None:
            deleted += self._prune_size(max_bytes)
        return PruneResult(samples=deleted, pending_feedback=pending)

    def _prune_counts(self, db: sqlite3.Connection, keep: int) -> int:
        """Per rule over ``keep`` samples: delete those received before its keep-th newest
        (an index range per rule, no sort of the whole table)."""
        deleted = 0
        over = db.execute(
            "SELECT namespace, rule FROM samples GROUP BY namespace, rule HAVING COUNT(*) > ?",
            (keep,),
        ).fetchall()
        for namespace, rule in over:
            row = db.execute(
                "SELECT received, rowid FROM samples WHERE namespace = ? AND rule = ?"
                " ORDER BY received DESC, rowid DESC LIMIT 1 OFFSET ?",
                (namespace, rule, keep),
            ).fetchone()
            if row is not None:
                deleted += self._delete_where(
                    db, "namespace = ? AND rule = ? AND (received < ? OR (received = ?"
                    " AND rowid <= ?))", (namespace, rule, row[0], row[0], row[1]))
        return deleted

    def _prune_size(self, max_bytes: int) -> int:
        """Delete the oldest samples, a slice at a time, until at most ``max_bytes`` are
        in use (bounded rounds: each deletes at least 1% of the rows)."""
        deleted = 0
        for _ in range(50):
            used = self.used_bytes()
            total = self.count()
            if used <= max_bytes or total == 0:
                break
            share = min(1.0, max(0.01, (used - max_bytes) / used * 1.1))
            n = max(1, int(total * share))
            with self._write() as db:
                cutoff = db.execute(
                    "SELECT received, rowid FROM samples ORDER BY received, rowid"
                    " LIMIT 1 OFFSET ?", (n - 1,),
                ).fetchone()
                if cutoff is None:
                    break
                deleted += self._delete_where(
                    db, "received < ? OR (received = ? AND rowid <= ?)",
                    (cutoff[0], cutoff[0], cutoff[1]))
        return deleted

    @staticmethod
    def _delete_where(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> int:
        """Delete matching samples and their change rows."""
        db.execute(
            "DELETE FROM changes WHERE (namespace, rule, sample_id) IN"
            f" (SELECT namespace, rule, id FROM samples WHERE {where})", args,
        )
        return int(db.execute(f"DELETE FROM samples WHERE {where}", args).rowcount)


Row = tuple[int, str, str, str | None, str, str, float, str | None, str | None]


def _collapse(rows: list[Row]) -> tuple[list[SampleChange], dict[str, str]]:
    """One change per sample over a range of change rows: the state before the first row
    and after the last. Samples whose rows do not decode come back as (id -> why)."""
    first: dict[str, tuple[str, str | None]] = {}
    last_overlay: dict[str, str] = {}
    old_verdict: dict[str, str | None] = {}
    stored: dict[str, tuple[str, float, str | None, str | None]] = {}
    for _seq, sample_id, kind, before, after_overlay, body, received, vkind, vtext in rows:
        first.setdefault(sample_id, (kind, before))
        last_overlay[sample_id] = after_overlay
        if kind == VERDICT and sample_id not in old_verdict:
            old_verdict[sample_id] = before
        stored[sample_id] = (body, received, vkind, vtext)
    result: list[SampleChange] = []
    bad: dict[str, str] = {}
    for sample_id, (kind, before) in first.items():
        try:
            result.append(_change(sample_id, kind, before, last_overlay[sample_id],
                                  stored[sample_id], old_verdict.get(sample_id)))
        except UNREADABLE as exc:
            bad[sample_id] = _why(exc)
    return result, bad


def _change(
    sample_id: str, kind: str, before: str | None, after_overlay: str,
    stored: tuple[str, float, str | None, str | None], verdict_before: str | None,
) -> SampleChange:
    """One sample's change, decoded (raises on an unreadable row)."""
    body, received, vkind, vtext = stored
    verdict = _verdict(vkind, vtext)
    previous: Sample | None = None
    if kind == FEEDBACK:
        previous = _sample(body, json.loads(before or "{}"))
    elif kind == VERDICT:
        previous = _sample(body, json.loads(before or "{}")["overlay"])
    old = verdict
    if verdict_before is not None:
        data = json.loads(verdict_before)
        old = _verdict(data.get("kind"), data.get("verdict"))
    return SampleChange(
        sample_id=sample_id,
        previous=previous,
        current=_sample(body, json.loads(after_overlay)),
        verdict=verdict,
        verdict_before=None if previous is None else old,
        received_at=datetime.fromtimestamp(received, UTC),
    )


__all__ = [
    "AwaitingVerdict",
    "ChangeBatch",
    "FeedbackResult",
    "InsertResult",
    "PruneResult",
    "QuarantineReport",
    "Quarantined",
    "SampleChange",
    "SampleStore",
    "StoreFull",
    "StoredSample",
]
