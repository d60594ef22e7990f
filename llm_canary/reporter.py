"""Report samples and feedback to the llm-canary controller from a service (stdlib only).

A few lines in a service::

    from llm_canary import CanaryReporter

    reporter = CanaryReporter(rule="support-assistant")  # URL, cohort, revision, token: env

    def handle(request):
        started = time.monotonic()
        answer = model.chat(request.messages)
        sample_id = reporter.report(
            input=request.messages, output=answer.text,
            latency_ms=(time.monotonic() - started) * 1000, cost_usd=answer.cost,
            queue=request.team, fallback=answer.from_fallback,
        )
        return answer, sample_id            # keep the id to send feedback later

    reporter.feedback(sample_id, correction_minutes=2.5, label="approve")

What it does for you:

- **Configuration from the pod.** ``url`` defaults to ``$CANARY_INGEST_URL``; the cohort
  is ``$CANARY_COHORT`` (the controller sets ``canary`` in canary pods; missing means
  ``baseline``) and the revision ``$CANARY_REVISION``. The bearer token is ``token=``,
  else ``$CANARY_INGEST_TOKEN``, else the projected ServiceAccount token file
  (``$CANARY_TOKEN_FILE``, default ``/var/run/secrets/llm-canary/token``), re-read when
  the kubelet rotates it. Without a URL the reporter is disabled: it logs once and counts
  what it drops.
- **Never in the way.** :meth:`report` only validates and queues (microseconds); a
  background thread sends batches (every ``flush_interval_ms`` or ``batch_size``
  records). The queue is bounded: when full the oldest record is dropped and counted.
  Nothing raises into the caller; obvious mistakes (negative or non-finite numbers, a
  naive timestamp, values JSON cannot carry) drop the record, count it and log once.
- **Safe retries.** Every record gets its idempotency id when queued (``uuid4`` unless you
  pass ``id=``), so a retried batch is deduplicated by the server. 408, 429, 5xx and
  connection errors are retried with capped exponential backoff and full jitter,
  honouring ``Retry-After``; other 4xx are not retried (the server's field errors are
  logged once); a 413 splits the batch.
- **Shutdown.** :meth:`close` (or leaving a ``with`` block, or interpreter exit) flushes
  what is queued within ``shutdown_timeout_s`` and drops the rest, counted.
- **Counters.** :meth:`stats`: sent, rejected, dropped (and why), retried, queued.

This file is self-contained: a service may vendor it as ``llm_canary.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any

__all__ = ["CanaryReporter"]
__version__ = "0.1.0"

log = logging.getLogger("llm_canary")

ENV_URL = "CANARY_INGEST_URL"
ENV_TOKEN = "CANARY_INGEST_TOKEN"
ENV_TOKEN_FILE = "CANARY_TOKEN_FILE"
ENV_COHORT = "CANARY_COHORT"
ENV_REVISION = "CANARY_REVISION"
ENV_RULE = "CANARY_RULE"
DEFAULT_TOKEN_FILE = "/var/run/secrets/llm-canary/token"

SAMPLES_PATH = "/v1/samples"
FEEDBACK_PATH = "/v1/feedback"
COHORTS = ("baseline", "canary")
RISKS = ("low", "medium", "high")
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
RESERVED = frozenset({"id", "rule", "namespace", "cohort", "revision", "ts", "feedback_closed"})
"""Keys ``**signals`` may not set: the reporter owns them (``feedback_closed`` the server)."""

_live: weakref.WeakSet[CanaryReporter] = weakref.WeakSet()


class _Box:
    """One endpoint's bounded queue of serialised records (``(json bytes, id)``)."""

    def __init__(self, path: str, maxlen: int) -> None:
        self.path = path
        self.items: deque[tuple[bytes, str]] = deque()
        self.maxlen = maxlen


class CanaryReporter:
    """Queues samples and feedback for one CanaryRule and sends them in the background.

    Thread-safe; one per process and rule is enough. See the module docstring.
    """

    def __init__(
        self,
        url: str | None = None,
        rule: str | None = None,
        namespace: str | None = None,
        token: str | None = None,
        *,
        cohort: str | None = None,
        revision: str | None = None,
        token_file: str | None = None,
        batch_size: int = 200,
        max_batch_bytes: int = 1_000_000,
        max_queue: int = 10_000,
        flush_interval_ms: float = 1000,
        timeout_s: float = 5.0,
        max_retries: int = 6,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        shutdown_timeout_s: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        rule = rule or os.environ.get(ENV_RULE)
        if not rule:
            raise ValueError(f"rule is required (the CanaryRule's name), or set ${ENV_RULE}")
        source = "cohort=" if cohort else f"${ENV_COHORT}"
        cohort = cohort or os.environ.get(ENV_COHORT) or "baseline"
        if cohort not in COHORTS:
            raise ValueError(f"cohort must be 'baseline' or 'canary', got {cohort!r} "
                             f"(from {source})")
        if batch_size < 1 or max_queue < 1 or max_batch_bytes < 1024:
            raise ValueError("batch_size and max_queue must be >= 1, max_batch_bytes >= 1024")
        self.url = (url or os.environ.get(ENV_URL) or "").rstrip("/") or None
        self.rule = rule
        self.namespace = namespace
        self.cohort = cohort
        self.revision = revision if revision is not None else os.environ.get(ENV_REVISION) or None
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.max_record_bytes = max_batch_bytes
        self.flush_interval_s = max(0.001, flush_interval_ms / 1000)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.log = logger or log
        self._static_token = token or os.environ.get(ENV_TOKEN) or None
        self._token_file = token_file or os.environ.get(ENV_TOKEN_FILE) or DEFAULT_TOKEN_FILE
        self._token_stamp: tuple[int, int, int] | None = None
        self._file_token: str | None = None
        self._counts = dict.fromkeys(
            ("sent", "duplicates", "rejected", "retried", "dropped_overflow", "dropped_invalid",
             "dropped_failed", "dropped_shutdown", "dropped_disabled"), 0)
        self._warned: set[str] = set()
        self._init_runtime(max_queue)
        if self.url is None:
            self._warn_once("disabled", f"llm-canary reporter disabled: no url and no "
                            f"${ENV_URL}; samples are counted as dropped")
        _live.add(self)

    def _init_runtime(self, max_queue: int) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._boxes = (_Box(SAMPLES_PATH, max_queue), _Box(FEEDBACK_PATH, max_queue))
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._busy = False
        self._flush_requested = False
        self._deadline: float | None = None

    # -- the request path -----------------------------------------------------------------

    def report(
        self,
        *,
        input: Any,
        output: Any,
        latency_ms: float,
        cost_usd: float | None = None,
        fallback: bool = False,
        queue: str | None = None,
        risk: str | None = None,
        task: str | None = None,
        decision: str | None = None,
        label: str | None = None,
        policy_violation: bool | None = None,
        id: str | None = None,
        ts: datetime | str | None = None,
        **signals: Any,
    ) -> str:
        """Queue one interaction; returns its id (keep it to send feedback). Never raises.

        ``latency_ms`` in milliseconds, ``cost_usd`` in US dollars (``None``: unknown).
        ``input``/``output``: text, or a list of ``{"role", "content"}`` turns. Extra
        keyword arguments are sent as custom fields (stored, not analysed).
        """
        sample_id = id if isinstance(id, str) and id else uuid.uuid4().hex
        try:
            record = self._sample(sample_id, input, output, latency_ms, cost_usd, fallback,
                                  queue, risk, task, decision, label, policy_violation, ts,
                                  signals)
            self._enqueue(0, record, sample_id)
        except Exception as exc:  # never into the request path
            self._invalid(f"sample {sample_id!r}: {exc}")
        return sample_id

    def feedback(
        self,
        id: str,
        correction_minutes: float | None = None,
        label: str | None = None,
        accepted: bool | None = None,
    ) -> None:
        """Queue delayed feedback for the sample ``id`` (may be sent before the sample
        arrives; the controller joins them). Never raises."""
        try:
            if not isinstance(id, str) or not id:
                raise ValueError("id must be a non-empty string")
            record: dict[str, Any] = {"id": id, "rule": self.rule}
            if self.namespace:
                record["namespace"] = self.namespace
            if correction_minutes is not None:
                record["correction_minutes"] = _non_negative("correction_minutes",
                                                             correction_minutes)
            if label is not None:
                record["label"] = str(label)
            if accepted is not None:
                record["accepted"] = bool(accepted)
            self._enqueue(1, record, id)
        except Exception as exc:
            self._invalid(f"feedback {id!r}: {exc}")

    def _sample(
        self, sample_id: str, input: Any, output: Any, latency_ms: Any, cost_usd: Any,
        fallback: Any, queue: Any, risk: Any, task: Any, decision: Any, label: Any,
        policy_violation: Any, ts: Any, signals: dict[str, Any],
    ) -> dict[str, Any]:
        if not isinstance(fallback, bool):
            raise ValueError(f"fallback must be True or False, got {fallback!r}")
        if risk is not None and risk not in RISKS:
            raise ValueError(f"risk must be one of {', '.join(RISKS)}, got {risk!r}")
        if input is None or output is None:
            raise ValueError("input and output are required")
        record: dict[str, Any] = {
            "id": sample_id, "rule": self.rule, "cohort": self.cohort, "ts": _timestamp(ts),
            "input": input, "output": output,
            "latency_ms": _non_negative("latency_ms", latency_ms),
            "cost_usd": None if cost_usd is None else _non_negative("cost_usd", cost_usd),
            "fallback": fallback,
        }
        optional = {"namespace": self.namespace, "revision": self.revision, "queue": queue,
                    "risk": risk, "task": task, "decision": decision, "label": label,
                    "policy_violation": policy_violation}
        record.update({k: v for k, v in optional.items() if v is not None})
        reserved = RESERVED & signals.keys()
        if reserved:
            self._warn_once("reserved", f"llm-canary: ignoring reserved keys in signals: "
                            f"{', '.join(sorted(reserved))}")
        record.update({k: v for k, v in signals.items() if k not in RESERVED})
        return record

    def _enqueue(self, which: int, record: Mapping[str, Any], record_id: str) -> None:
        data = json.dumps(record, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":")).encode()
        if len(data) > self.max_record_bytes:
            raise ValueError(f"record of {len(data)} bytes is over {self.max_record_bytes}")
        if self.url is None:
            self._count("dropped_disabled")
            return
        with self._lock:
            if self._closing:
                self._counts["dropped_shutdown"] += 1
                return
            box = self._boxes[which]
            if len(box.items) >= box.maxlen:
                box.items.popleft()
                self._counts["dropped_overflow"] += 1
                overflow = True
            else:
                overflow = False
            box.items.append((data, record_id))
            if self._thread is None:
                self._start_locked()
            if len(box.items) >= self.batch_size:
                self._cond.notify()
        if overflow:
            self._warn_once("overflow", "llm-canary: queue full, dropping the oldest records "
                            "(the controller is unreachable or too slow); see stats()")

    def _invalid(self, why: str) -> None:
        self._count("dropped_invalid")
        self._warn_once("invalid", f"llm-canary: dropped an invalid record ({why}); later ones "
                        "are counted in stats()['dropped_invalid'] only")

    # -- control ------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True when the queues are empty within ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flush_requested = True
            self._cond.notify_all()
            while self._pending_locked() or self._busy:
                if self._thread is None or not self._thread.is_alive():
                    return not self._pending_locked()
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.05 if left is None else min(left, 0.05))
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``shutdown_timeout_s``), then stop; what is
        still queued then is dropped and counted. Idempotent; never raises."""
        timeout = self.shutdown_timeout_s if timeout is None else timeout
        with self._lock:
            if self._closed:
                return
            self._closed = self._closing = True
            self._deadline = time.monotonic() + timeout
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout + 1.0)
        with self._lock:
            left = sum(len(b.items) for b in self._boxes)
            for box in self._boxes:
                box.items.clear()
            self._counts["dropped_shutdown"] += left
        if left:
            self.log.warning("llm-canary: %d records not sent before the shutdown timeout", left)
        _live.discard(self)

    def __enter__(self) -> CanaryReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Counters since start: ``sent`` (acknowledged, duplicates included),
        ``rejected`` (refused by the server), ``dropped`` (lost before the server saw
        them, by reason in ``dropped_*``), ``retried`` (retry attempts), ``queued``."""
        with self._lock:
            counts = dict(self._counts)
            counts["queued"] = sum(len(b.items) for b in self._boxes)
        counts["dropped"] = sum(v for k, v in counts.items() if k.startswith("dropped_"))
        return counts

    # -- the sender thread --------------------------------------------------------------

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llm-canary-reporter",
                                        daemon=True)
        self._thread.start()

    def _pending_locked(self) -> bool:
        return any(b.items for b in self._boxes)

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            with self._lock:
                while not self._closing and not self._flush_requested and not any(
                    len(b.items) >= self.batch_size for b in self._boxes
                ):
                    left = next_flush - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._flush_requested = False
                if self._closing and not self._pending_locked():
                    self._cond.notify_all()
                    return
                if self._closing and self._deadline is not None \
                        and time.monotonic() >= self._deadline:
                    self._cond.notify_all()
                    return
                batches = [(box.path, self._take_locked(box)) for box in self._boxes]
                self._busy = True
            next_flush = time.monotonic() + self.flush_interval_s
            try:
                for path, batch in batches:
                    if batch:
                        self._deliver(path, batch)
            except Exception:  # the sender must survive anything
                self.log.exception("llm-canary: unexpected error while sending")
            finally:
                with self._lock:
                    self._busy = False
                    self._cond.notify_all()

    def _take_locked(self, box: _Box) -> list[tuple[bytes, str]]:
        batch: list[tuple[bytes, str]] = []
        size = 0
        while box.items and len(batch) < self.batch_size:
            data, _ = box.items[0]
            if batch and size + len(data) + 1 > self.max_batch_bytes:
                break
            batch.append(box.items.popleft())
            size += len(data) + 1
        return batch

    def _deliver(self, path: str, batch: list[tuple[bytes, str]]) -> None:
        """Send one batch until it is acknowledged, refused, or retries run out."""
        body = b"\n".join(data for data, _ in batch)
        attempt = 0
        refreshed = False
        while True:
            status, headers, payload = self._post(path, body)
            if status is not None and 200 <= status < 300:
                self._acknowledged(path, batch, status, payload)
                return
            if status == 401 and not refreshed and self._static_token is None:
                refreshed = True  # the kubelet may just have rotated the token
                self._token_stamp = None
                continue
            if status == 413 and len(batch) > 1:
                half = len(batch) // 2
                self._deliver(path, batch[:half])
                self._deliver(path, batch[half:])
                return
            if status is not None and status not in RETRYABLE:
                self._refused(path, batch, status, payload)
                return
            attempt += 1
            delay = self._delay(attempt, headers)
            if attempt > self.max_retries or not self._sleep(delay):
                self._count("dropped_failed", len(batch))
                self._warn_once(f"failed{path}", f"llm-canary: gave up on {len(batch)} records "
                                f"for {path} after {attempt} attempts (last: "
                                f"{status or 'connection error'})")
                return
            self._count("retried")

    def _delay(self, attempt: int, headers: Mapping[str, str]) -> float:
        hinted = _retry_after(headers.get("retry-after"))
        if hinted is not None:
            return min(hinted, self.max_retry_after_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # full jitter

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False as soon as a shutdown deadline would pass first
        (``close`` wakes the wait, so a long backoff never delays shutdown)."""
        end = time.monotonic() + delay
        with self._lock:
            while True:
                if self._deadline is not None and end > self._deadline:
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)

    def _post(self, path: str, body: bytes) -> tuple[int | None, Mapping[str, str], bytes]:
        assert self.url is not None
        headers = {"Content-Type": "application/x-ndjson",
                   "User-Agent": f"llm-canary-reporter/{__version__}"}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = self.timeout_s
        with self._lock:
            if self._deadline is not None:
                timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        request = urllib.request.Request(self.url + path, data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _lower(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = exc.read()
            except (OSError, HTTPException):
                payload = b""
            return exc.code, _lower(exc.headers), payload
        except (OSError, HTTPException, ValueError) as exc:
            self.log.debug("llm-canary: %s unreachable: %s", self.url, exc)
            return None, {}, b""

    def _acknowledged(self, path: str, batch: list[tuple[bytes, str]], status: int,
                      payload: bytes) -> None:
        answer = _json(payload)
        rejected = int(answer.get("rejected", 0)) if status == 207 else 0
        rejected = max(0, min(rejected, len(batch)))
        with self._lock:
            self._counts["sent"] += len(batch) - rejected
            self._counts["rejected"] += rejected
            self._counts["duplicates"] += int(answer.get("duplicates", 0) or 0)
        if rejected:
            self._log_rejects(path, rejected, len(batch), status, answer)

    def _refused(self, path: str, batch: list[tuple[bytes, str]], status: int,
                 payload: bytes) -> None:
        self._count("rejected", len(batch))
        answer = _json(payload)
        if status in (401, 403):
            self._warn_once(f"auth{status}", f"llm-canary: {path} answered {status}: "
                            f"{answer.get('error', 'not authorised')} (check the token and "
                            "that this ServiceAccount may report for the rule)")
            return
        self._log_rejects(path, len(batch), len(batch), status, answer)

    def _log_rejects(self, path: str, rejected: int, total: int, status: int,
                     answer: Mapping[str, Any]) -> None:
        found = answer.get("errors")
        errors: list[Any] = found if isinstance(found, list) else []
        detail = "; ".join(_describe_reject(e) for e in errors[:5]) or str(
            answer.get("error") or answer.get("message") or "no detail")
        text = f"llm-canary: {path} refused {rejected} of {total} records ({status}): {detail}"
        if f"rejects{path}" in self._warned:
            self.log.debug(text)
        else:
            self._warn_once(f"rejects{path}", text)

    # -- helpers ------------------------------------------------------------------------

    def _token(self) -> str | None:
        if self._static_token:
            return self._static_token
        try:
            st = os.stat(self._token_file)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._token_stamp:
            try:
                with open(self._token_file, encoding="utf-8") as f:
                    self._file_token = f.read().strip() or None
                self._token_stamp = stamp
            except OSError:
                return self._file_token
        return self._file_token

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self.log.warning(message)


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return number


def _timestamp(ts: Any) -> str:
    if ts is None:
        return datetime.now(UTC).isoformat(timespec="milliseconds")
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return ts.isoformat()
    if isinstance(ts, str) and ts:
        return ts
    raise ValueError(f"ts must be a datetime or an RFC 3339 string, got {ts!r}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _lower(headers: Any) -> dict[str, str]:
    """Response headers with lower-case names (HTTP header names are case-insensitive)."""
    return {str(k).lower(): str(v) for k, v in (headers.items() if headers else ())}


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe_reject(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)[:200]
    where = f"line {error.get('line')}"
    if error.get("id"):
        where += f" (id {error['id']})"
    field = f" field {error['field']!r}" if error.get("field") else ""
    return f"{where}{field}: {error.get('reason') or error.get('message')}"[:300]


def _close_all() -> None:
    for reporter in list(_live):
        with contextlib.suppress(Exception):  # interpreter exit: never raise
            reporter.close()


atexit.register(_close_all)


def _after_fork_in_child() -> None:
    """A forked worker (gunicorn, multiprocessing) starts clean: fresh locks, empty
    queues (the parent sends its own), and its own sender thread on first use."""
    for reporter in list(_live):
        reporter._init_runtime(reporter._boxes[0].maxlen)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
