"""Background threads survive any exception and a dead one is named; the work queue's
delayed puts; the Kubernetes layer's one retry policy."""

from __future__ import annotations

import threading
import time

import pytest

from controller.actuator.errors import AlreadyExists, Conflict, Transient
from controller.actuator.retry import CONFLICT, FAILURE, Backoff, on_conflict
from controller.observability import THREAD_RESTARTS
from controller.reconciler.manager import Key, WorkQueue
from controller.supervisor import FAILING_AFTER, Supervisor


def wait(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_crashing_loop_is_restarted_counted_and_reported_until_it_recovers() -> None:
    sup = Supervisor(backoff_base=0.01, backoff_cap=0.02)
    stop = threading.Event()
    calls: list[int] = []
    healthy = threading.Event()

    def loop() -> None:
        calls.append(1)
        if not healthy.is_set():
            raise AttributeError("'ApiClient' object has no attribute 'param_serialize'")
        while not stop.wait(0.01):
            sup.beat("lease")

    before = THREAD_RESTARTS.labels("lease")._value.get()
    sup.spawn("lease", loop, stop)
    wait(lambda: len(calls) >= FAILING_AFTER)
    problems = sup.problems()
    assert len(problems) == 1 and "thread lease keeps failing" in problems[0]
    assert "param_serialize" in problems[0]
    assert THREAD_RESTARTS.labels("lease")._value.get() - before >= FAILING_AFTER
    healthy.set()
    wait(lambda: not sup.problems())
    assert sup.health()["lease"]["alive"] is True
    stop.set()
    wait(lambda: not sup.health()["lease"]["alive"])
    assert sup.problems() == []  # stopped on purpose: not a problem


def test_a_loop_that_returns_while_it_should_run_is_restarted() -> None:
    sup = Supervisor(backoff_base=0.01, backoff_cap=0.01)
    stop = threading.Event()
    runs: list[int] = []
    sup.spawn("resync", lambda: runs.append(1), stop)
    wait(lambda: len(runs) >= 3)
    stop.set()


def test_a_dead_thread_is_named() -> None:
    sup = Supervisor()
    stop = threading.Event()
    thread = sup.spawn("worker-0", lambda: stop.wait(), stop)
    sup._entries["worker-0"].thread = threading.Thread(target=lambda: None)  # died
    sup._entries["worker-0"].thread.start()
    sup._entries["worker-0"].thread.join()
    assert sup.problems() == ["thread worker-0 is dead"]
    stop.set()
    thread.join(2)
    sup.forget("worker-0")
    assert sup.health() == {}


def test_the_work_queue_holds_each_key_once_and_delays_puts() -> None:
    now = [100.0]
    q = WorkQueue(clock=lambda: now[0])
    a, b = Key("ns", "a"), Key("ns", "b")
    q.put(a)
    q.put(a)
    q.put_after(b, 5.0)
    q.put_after(b, 10.0)  # a later request never postpones an earlier one
    assert len(q) == 1 and q.get(0.01) == a and q.get(0.01) is None
    now[0] += 5.0
    assert q.get(0.01) == b and q.get(0.01) is None
    q.put_after(a, 0.0)
    assert q.get(0.01) == a


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    b = Backoff(base=1.0, cap=30.0, jitter=0.0)
    assert [b.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    busy = Transient("slow down", status=429, retry_after=12)
    assert b.delay(0, busy) == 12
    assert Backoff(base=1.0, cap=5.0, jitter=0.0).delay(0, busy) == 5  # still capped
    jittered = {round(FAILURE.delay(3), 3) for _ in range(20)}
    assert len(jittered) > 1 and all(6 <= d <= 10 for d in jittered)
    assert CONFLICT.delay(10) <= CONFLICT.cap


def test_on_conflict_rereads_then_gives_up_and_never_retries_already_exists() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Conflict("stale", status=409)
        return "written"

    assert on_conflict(flaky, what="t", sleep=lambda s: None) == "written"
    assert len(attempts) == 3

    def always() -> None:
        raise Conflict("stale", status=409)

    with pytest.raises(Conflict):
        on_conflict(always, what="t", attempts=2, sleep=lambda s: None)

    def exists() -> None:
        attempts.append(1)
        raise AlreadyExists("exists", status=409)

    attempts.clear()
    with pytest.raises(AlreadyExists):
        on_conflict(exists, what="t", sleep=lambda s: None)
    assert len(attempts) == 1
