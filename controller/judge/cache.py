"""Verdict cache in SQLite, so re-runs and controller restarts do not pay twice.

The key is a sha256 over everything that changes the judge's *answer*: model, prompt
version, mode, policy text, decision labels, the judge's sampling temperature, the
redaction configuration (when there is one: a changed redaction never reuses verdicts of
differently redacted text) and the sample's input and output. It deliberately excludes
the success threshold, the aggregation formula and its temperature (the cached criterion
verdicts are re-aggregated on read), the price, and everything about the sample that the
judge never sees (id, cohort, queue, timing).
Only judged samples are cached; unjudged ones are retried next time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .settings import JudgeSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(
    settings: JudgeSettings,
    prompt_version: str,
    conv_in: Any,
    conv_out: Any,
    *,
    redaction: str | None = None,
) -> str:
    """sha256 of the answer-relevant configuration and the interaction; ``redaction`` is
    the redaction fingerprint (left out of the material when None, so keys made before
    redaction existed stay valid)."""
    material: dict[str, Any] = {
        "model": settings.model,
        "prompt_version": prompt_version,
        "mode": settings.mode,
        "policy": settings.policy,
        "labels": list(settings.decision_labels),
        "sampling_temperature": settings.sampling_temperature,
        "input": conv_in,
        "output": conv_out,
    }
    if redaction is not None:
        material["redaction"] = redaction
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class VerdictCache:
    """A small key -> JSON store; safe to share between threads and tasks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        blob = json.dumps(answer, sort_keys=True, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts (key, answer, created) VALUES (?, ?, ?)",
                (key, blob, time.time()),
            )

    def prune(self, *, max_entries: int) -> int:
        """Keep the newest ``max_entries`` verdicts (the cache shares the store's volume,
        so it must stay bounded); returns how many went."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM verdicts WHERE rowid IN (SELECT rowid FROM verdicts"
                " ORDER BY created DESC, rowid DESC LIMIT -1 OFFSET ?)", (max_entries,))
        return int(cur.rowcount)

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()
