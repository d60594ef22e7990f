"""The client SDK (llm_canary) against the real ingestion server and a harsh one.

The harsh server (aiohttp, written here) answers 429 with Retry-After, 503, 500, stalls,
closes connections (before and after storing), refuses some records with 207 and
dedups by id like the real one. Nothing may raise into the caller, ids must be stable
across retries, shutdown must end within its timeout and the queue must stay bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from canary_playground.kube import EmulatorHandle

from controller.api import ApiServer
from controller.models import RuleKey
from controller.sources.store import SampleStore
from llm_canary import CanaryReporter
from tests.support import ROOT
from tests.support.aio import serve_in_thread
from tests.support.api import directory, serving
from tests.support.waiting import wait_for

KEY = RuleKey("default", "bot")
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "flush_interval_ms": 20,
        "timeout_s": 2.0}


# -- the real server ----------------------------------------------------------------------


@dataclass
class Real:
    """The real server: the rule ``bot`` whose pods run as ``default/bot-sa``, tokens
    reviewed by the Kubernetes API emulator."""

    server: ApiServer
    store: SampleStore
    emulator: EmulatorHandle

    def __iter__(self) -> Iterator[Any]:
        return iter((self.server, self.store))

    def token(self, **kw: Any) -> str:
        return self.emulator.issue_token(service_account="default/bot-sa",
                                         audiences=["llm-canary"], **kw)


@pytest.fixture
def real(tmp_path: Path, emulator: EmulatorHandle) -> Iterator[Real]:
    store = SampleStore(tmp_path / "s.db")
    with serving(store, directory(("default/bot", "bot", "bot-sa")), emulator=emulator) as s:
        yield Real(s, store, emulator)
    store.close()


def test_samples_and_feedback_reach_the_real_server(
    real: Real, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, store = real
    monkeypatch.setenv("CANARY_INGEST_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("CANARY_INGEST_TOKEN", real.token())
    monkeypatch.setenv("CANARY_COHORT", "canary")
    monkeypatch.setenv("CANARY_REVISION", "abc123")
    with CanaryReporter(rule="bot", batch_size=7, **FAST) as reporter:
        ids = [reporter.report(input=[{"role": "user", "content": f"q{i}"}], output=f"a{i}",
                               latency_ms=100 + i, cost_usd=0.001, queue="billing",
                               task="refund", tenant="acme")
               for i in range(30)]
        reporter.feedback(ids[0], correction_minutes=2.5, label="approve", accepted=False)
        reporter.feedback("not-yet-sent", label="reject")
        assert reporter.flush(timeout=30)
        stats = reporter.stats()
    assert (stats["sent"], stats["rejected"], stats["dropped"]) == (32, 0, 0)
    assert store.count(KEY) == 30
    first = store.get(KEY, ids[0])
    assert first is not None
    s = first.sample
    assert (s.cohort, s.revision, s.queue, s.task) == ("canary", "abc123", "billing", "refund")
    assert (s.correction_minutes, s.label, s.accepted) == (2.5, "approve", False)
    assert s.extras() == {"tenant": "acme"}
    assert s.input[0].content == "q0"  # type: ignore[union-attr]


def test_server_field_errors_are_counted_and_logged_once(
    real: Real, caplog: pytest.LogCaptureFixture
) -> None:
    server, store = real
    url = f"http://127.0.0.1:{server.port}"
    caplog.set_level(logging.WARNING, logger="llm_canary")
    with CanaryReporter(url, rule="bot", token=real.token(), **FAST) as reporter:
        reporter.report(input="q", output="a", latency_ms=1)
        reporter.report(input=5, output="a", latency_ms=1, id="bad-input")
        reporter.flush(timeout=30)
        reporter.report(input=6, output="a", latency_ms=1, id="bad-again")
        reporter.flush(timeout=30)
        stats = reporter.stats()
    assert (stats["sent"], stats["rejected"]) == (1, 2)
    warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 1
    assert "line 2 (id bad-input) field 'input'" in warnings[0]
    assert store.count(KEY) == 1


def test_a_rotated_token_file_is_reread(real: Real, tmp_path: Path) -> None:
    server, store = real
    token_file = tmp_path / "token"
    token_file.write_text(real.token(expiration_seconds=3) + "\n")
    with CanaryReporter(f"http://127.0.0.1:{server.port}", rule="bot",
                        token_file=str(token_file), **FAST) as reporter:
        reporter.report(input="q", output="a", latency_ms=1)
        assert reporter.flush(timeout=30)
        time.sleep(3.5)  # the first token has expired: the server refuses it from now on
        fresh = tmp_path / "token.new"  # the kubelet rotates: a new file replaces the old
        fresh.write_text(real.token())
        os.replace(fresh, token_file)
        reporter.report(input="q", output="a", latency_ms=1)
        assert reporter.flush(timeout=30)
        assert reporter.stats()["sent"] == 2
    assert store.count(KEY) == 2


def test_interpreter_exit_flushes(real: Real) -> None:
    server, store = real
    code = (
        "from llm_canary import CanaryReporter\n"
        f"r = CanaryReporter('http://127.0.0.1:{server.port}', rule='bot', "
        f"token='{real.token()}',"
        " flush_interval_ms=60000, batch_size=1000)\n"
        "for i in range(25):\n"
        "    r.report(input='q', output='a', latency_ms=1, id=f'exit-{i}')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert store.count(KEY) == 25


def test_the_module_runs_vendored_with_the_stdlib_alone(tmp_path: Path) -> None:
    """Copied as llm_canary.py into a service and imported with no site-packages."""
    (tmp_path / "llm_canary.py").write_text((ROOT / "llm_canary" / "reporter.py").read_text())
    code = (
        "import sys\n"
        "sys.path.insert(0, '.')\n"
        "import llm_canary\n"
        "r = llm_canary.CanaryReporter(rule='bot', url=None)\n"
        "assert r.report(input='q', output='a', latency_ms=1, id='x') == 'x'\n"
        "extra = sorted(m.split('.')[0] for m in sys.modules\n"
        "               if m.split('.')[0] not in sys.stdlib_module_names)\n"
        "print(set(extra) - {'llm_canary', '__main__'})\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "set()"


# -- the harsh server ---------------------------------------------------------------------


@dataclass
class Harsh:
    """Answers each request with the next scripted action, then ``default``."""

    script: list[str] = field(default_factory=list)
    default: str = "ok"
    stall_s: float = 5.0
    stored: set[str] = field(default_factory=set)
    requests: list[tuple[float, list[str]]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_action(self) -> str:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        records = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.lock:
            self.requests.append((time.monotonic(), [r["id"] for r in records]))
        action = self.next_action()
        if action.startswith("429"):
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": action.split(":")[1]})
        if action in ("500", "503", "400", "401", "413"):
            if action == "413" and len(records) <= 2:
                return self.store(records)
            return web.json_response({"error": action}, status=int(action))
        if action == "stall":
            await asyncio.sleep(self.stall_s)
        if action in ("close", "store_then_close"):
            if action == "store_then_close":
                self.store(records)
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        return self.store(records)

    def store(self, records: list[dict[str, Any]]) -> web.Response:
        accepted = duplicates = 0
        errors = []
        for line, r in enumerate(records, start=1):
            if r.get("queue") == "refused":
                errors.append({"line": line, "field": "queue", "reason": "refused here",
                               "id": r["id"], "kind": "invalid_record",
                               "message": f"request:{line}: field 'queue': refused here"})
            elif r["id"] in self.stored:
                duplicates += 1
            else:
                self.stored.add(r["id"])
                accepted += 1
        payload = {"accepted": accepted, "duplicates": duplicates, "rejected": len(errors),
                   "errors": errors, "errors_dropped": 0, "message": ""}
        return web.json_response(payload, status=207 if errors else 200)

    def all_ids(self) -> list[list[str]]:
        with self.lock:
            return [ids for _, ids in self.requests]


@pytest.fixture
def harsh() -> Iterator[Harsh]:
    state = Harsh()
    app = web.Application()
    app.router.add_post("/v1/samples", state.handle)
    app.router.add_post("/v1/feedback", state.handle)
    with serve_in_thread(app) as url:
        state.url = url
        yield state


def test_every_transient_failure_is_retried_with_the_same_ids(harsh: Harsh) -> None:
    harsh.script = ["503", "500", "stall", "close", "store_then_close", "ok"]
    harsh.stall_s = 3.0
    with CanaryReporter(harsh.url, rule="bot", batch_size=10, max_retries=8,
                        **{**FAST, "timeout_s": 0.5}) as reporter:
        ids = [reporter.report(input="q", output="a", latency_ms=i) for i in range(10)]
        assert reporter.flush(timeout=60)
        stats = reporter.stats()
    sent_ids = harsh.all_ids()
    assert len(sent_ids) == 6 and all(batch == ids for batch in sent_ids)
    assert harsh.stored == set(ids)  # stored once, the retry after the lost answer deduped
    assert stats["retried"] == 5 and stats["sent"] == 10 and stats["duplicates"] == 10
    assert stats["dropped"] == 0


def test_retry_after_is_honoured(harsh: Harsh) -> None:
    harsh.script = ["429:1", "ok"]
    with CanaryReporter(harsh.url, rule="bot", **FAST) as reporter:
        reporter.report(input="q", output="a", latency_ms=1)
        assert reporter.flush(timeout=30)
    (t1, first), (t2, second) = harsh.requests
    assert first == second
    assert t2 - t1 >= 0.95  # never earlier than the server asked (later is fine)


def test_client_errors_are_not_retried_and_413_splits_the_batch(harsh: Harsh) -> None:
    harsh.script = ["400"]
    with CanaryReporter(harsh.url, rule="bot", **FAST) as reporter:
        reporter.report(input="q", output="a", latency_ms=1)
        reporter.flush(timeout=30)
        assert reporter.stats()["rejected"] == 1 and len(harsh.requests) == 1
        harsh.default = "413"
        for i in range(8):
            reporter.report(input="q", output="a", latency_ms=1, id=f"big-{i}")
        assert reporter.flush(timeout=30)
        assert reporter.stats()["sent"] == 8
    assert {f"big-{i}" for i in range(8)} <= harsh.stored


def test_partial_rejects_count_only_the_refused_records(harsh: Harsh) -> None:
    with CanaryReporter(harsh.url, rule="bot", **FAST) as reporter:
        reporter.report(input="q", output="a", latency_ms=1, queue="billing")
        reporter.report(input="q", output="a", latency_ms=1, queue="refused")
        assert reporter.flush(timeout=30)
        stats = reporter.stats()
    assert (stats["sent"], stats["rejected"], stats["retried"]) == (1, 1, 0)


def test_bad_values_never_raise_and_are_counted(harsh: Harsh) -> None:
    with CanaryReporter(harsh.url, rule="bot", **FAST) as reporter:
        bad: list[dict[str, Any]] = [
            {"latency_ms": math.nan}, {"latency_ms": -1}, {"latency_ms": "fast"},
            {"cost_usd": math.inf}, {"ts": datetime(2026, 1, 1)}, {"risk": "extreme"},
            {"fallback": "yes"}, {"weird": object()}, {"nested": {"x": math.nan}},
            {"input": None},
        ]
        for changes in bad:
            kwargs: dict[str, Any] = {"input": "q", "output": "a", "latency_ms": 1, **changes}
            assert isinstance(reporter.report(**kwargs), str)
        reporter.feedback("", correction_minutes=1)
        reporter.feedback("x", correction_minutes=-2)
        assert reporter.stats()["dropped_invalid"] == len(bad) + 2
        reporter.report(input="q", output="a", latency_ms=1, rule="other", cohort="canary")
        assert reporter.flush(timeout=30)
        assert reporter.stats()["sent"] == 1
    assert len(harsh.requests) == 1


def test_shutdown_ends_within_its_timeout_when_the_server_never_recovers(harsh: Harsh) -> None:
    harsh.default = "503"
    reporter = CanaryReporter(harsh.url, rule="bot", batch_size=50, max_retries=1000,
                              **FAST)
    for i in range(200):
        reporter.report(input="q", output="a", latency_ms=i)
    wait_for(lambda: harsh.requests, timeout=30)
    started = time.monotonic()
    reporter.close(timeout=1.0)
    elapsed = time.monotonic() - started
    stats = reporter.stats()
    assert elapsed < 1.0 + 5.0  # bounded by the timeout (plus scheduling slack)
    assert stats["queued"] == 0 and stats["sent"] == 0
    assert stats["dropped_failed"] + stats["dropped_shutdown"] == 200
    reporter.report(input="q", output="a", latency_ms=1)  # after close: counted, no raise
    assert reporter.stats()["dropped_shutdown"] >= 1


def test_shutdown_flushes_what_can_be_sent(harsh: Harsh) -> None:
    reporter = CanaryReporter(harsh.url, rule="bot", batch_size=100, flush_interval_ms=60_000)
    ids = {reporter.report(input="q", output="a", latency_ms=1) for _ in range(500)}
    reporter.close(timeout=30)
    assert harsh.stored == ids and reporter.stats()["sent"] == 500


def test_the_queue_bound_holds_under_a_flood(harsh: Harsh) -> None:
    harsh.default = "stall"
    harsh.stall_s = 2.0
    reporter = CanaryReporter(harsh.url, rule="bot", max_queue=500, batch_size=100,
                              timeout_s=0.2, max_retries=0, flush_interval_ms=10)
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, reporter.stats()["queued"])
            time.sleep(0.001)

    def flood() -> None:
        for i in range(5000):
            reporter.report(input="q", output="a", latency_ms=i)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=flood) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    stop.set()
    watcher.join(10)
    reporter.close(timeout=0.5)
    stats = reporter.stats()
    assert peak <= 500
    assert stats["dropped_overflow"] > 0
    accounted = stats["sent"] + stats["rejected"] + stats["dropped"]
    assert accounted == 20_000, stats
