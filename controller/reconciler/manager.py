"""The controller's moving parts: watches, a work queue, one analysis job per rule.

- **Watches** (one supervised thread each): CanaryRules, and only the Deployments the
  controller made (label selector ``app.kubernetes.io/managed-by=llm-canary``: the
  canaries and holdbacks; an event names its rule by ``canary.llmops.dev/rule``). The
  targets are not watched: a rollout waiting on the cluster is reconciled again after
  :data:`FIRST_POLL_SECONDS`, then at doubling intervals up to ``poll_seconds``, and drift
  is checked at every reconcile before any analysis. A watch
  resumes from its last resourceVersion after any error and relists only after 410 Gone,
  so an API hiccup never turns into a list of every Deployment in the cluster. Watches
  only *enqueue keys*; reconciling is level-triggered, so a missed or duplicated event
  costs nothing but a reconcile.
- **Workers** drain the queue: a key is queued at most once at a time, so a burst of
  events for one rule collapses into one reconcile. A key can also be queued for later:
  after a failed reconcile (capped exponential backoff, honouring Retry-After,
  :data:`controller.actuator.retry.FAILURE`), or while its rollout waits on pods.
- **Analysis jobs**: one apscheduler interval job per rule (``max_instances=1``,
  ``coalesce=True``), rescheduled when the interval changes and removed when the rule is
  deleted. Manual actions are acted on by the next reconcile (seconds), not the next tick.
- A periodic **resync** enqueues every known rule, catching anything a watch missed.
- **Ownership**: the rule watch keeps which rules name which target, so a second rule
  on a Deployment is refused (:mod:`controller.engine.ownership`) without a list call.
- Everything runs only while this replica leads. :meth:`Manager.stop` closes the watch
  streams (a blocked read ends at once) and joins every thread, so a leadership flap
  never leaks threads; every write re-checks leadership first (see :mod:`.rollout`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from controller.actuator import deployments, rules
from controller.actuator.client import Kube
from controller.actuator.errors import Gone, KubeError
from controller.actuator.retry import FAILURE, WATCH
from controller.actuator.router import MANAGED_SELECTOR
from controller.conventions import RULE_LABEL
from controller.engine import Claim
from controller.health import Health
from controller.models import Phase, parse_duration
from controller.supervisor import SUPERVISOR, Supervisor

from .directory import Directory
from .rollout import Deps, NotLeader, reconcile
from .ticks import TickLedger

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 60
FIRST_POLL_SECONDS = 0.25
"""The first re-check of a rollout waiting on pods (a rollback waits for the target's pods
before it removes the canary: most are ready within a second or two)."""
ListFn = Callable[[], str]
WatchFn = Callable[[str | None, Callable[[Callable[[], None]], None]],
                   Iterator[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True, order=True)
class Key:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class WorkQueue:
    """A set-backed FIFO (each key at most once) with delayed puts; blocking get."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._order: list[Key] = []
        self._queued: set[Key] = set()
        self._later: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._seq = itertools.count()
        self._clock = clock

    def put(self, key: Key) -> None:
        with self._cond:
            if key not in self._queued:
                self._queued.add(key)
                self._order.append(key)
                self._cond.notify()

    def put_after(self, key: Key, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds (the earliest of several requests wins)."""
        due = self._clock() + max(0.0, delay)
        with self._cond:
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._later, (due, next(self._seq), key))
            self._cond.notify()

    def _promote_due(self) -> float | None:
        """Move due keys to the queue; seconds until the next one (None: none)."""
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            due, _, key = heapq.heappop(self._later)
            if self._due.get(key) != due:
                continue  # superseded by an earlier request
            del self._due[key]
            if key not in self._queued:
                self._queued.add(key)
                self._order.append(key)
        return self._later[0][0] - now if self._later else None

    def get(self, timeout: float) -> Key | None:
        with self._cond:
            wait = self._promote_due()
            if not self._order:
                self._cond.wait(timeout if wait is None else min(timeout, wait))
                self._promote_due()
            if not self._order:
                return None
            key = self._order.pop(0)
            self._queued.discard(key)
            return key

    def __len__(self) -> int:
        with self._cond:
            return len(self._order)


class Manager:
    """Runs watches, workers, the scheduler and resync while :meth:`start`-ed."""

    def __init__(
        self,
        deps: Deps,
        kube: Kube,
        *,
        namespace: str | None,
        resync_seconds: float = 300.0,
        poll_seconds: float = 5.0,
        workers: int = 2,
        interval_override: float | None = None,
        supervisor: Supervisor = SUPERVISOR,
        directory: Directory | None = None,
        health: Health | None = None,
    ) -> None:
        self.deps = deps
        self.kube = kube
        self.namespace = namespace
        self.resync_seconds = resync_seconds
        self.poll_seconds = poll_seconds
        self.workers = workers
        self.interval_override = interval_override
        self.supervisor = supervisor
        self.queue = WorkQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closers: dict[str, Callable[[], None]] = {}  # watch -> close its stream
        self._scheduler: BackgroundScheduler | None = None
        self._intervals: dict[Key, float] = {}
        self._claims: dict[Key, tuple[str, Claim]] = {}  # rule -> (target, claim)
        self._failures: dict[Key, int] = {}
        self._retry_at: dict[Key, float] = {}  # a failed rule's next attempt (monotonic)
        self._seen: dict[Key, tuple[Any, bool]] = {}  # rule -> (generation, deleting)
        self._waits: dict[Key, int] = {}  # consecutive reconciles that waited on pods
        self._lock = threading.Lock()
        self.synced = threading.Event()
        deps.claims = self.claims
        self.ticks = TickLedger()
        self.directory = directory or Directory()
        """Rules and their reporters, for the ingestion API (see :mod:`.directory`)."""
        self.health = health or Health()
        """The scheduler is watched while started (threads are the supervisor's: it restarts
        them and reports one that keeps failing)."""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.stop()  # a restart after a leadership flap first ends the previous threads
        self._stop = threading.Event()
        self._scheduler = BackgroundScheduler(timezone="UTC",
                                              job_defaults={"misfire_grace_time": None})
        self._scheduler.start()
        scheduler = self._scheduler
        self.health.watch("analysis scheduler", lambda: scheduler.running)
        self._spawn("watch-rules", lambda: self._watch_loop(
            "watch-rules", self._list_rules, self._rule_event, self._watch_rules))
        self._spawn("watch-deployments", lambda: self._watch_loop(
            "watch-deployments", self._list_deployments, self._deployment_event,
            self._watch_deployments))
        self._spawn("resync", self._resync_loop)
        for i in range(self.workers):
            self._spawn(f"worker-{i}", self._worker_loop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop acting at once; watch streams are closed, threads joined."""
        self._stop.set()
        self.health.unwatch("analysis scheduler")
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        with self._lock:
            closers = list(self._closers.values())
            self._closers.clear()
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            self.supervisor.forget(t.name)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("threads still finishing after stop: %s", ", ".join(alive))
        self._threads = []
        with self._lock:
            self._intervals.clear()
        self.synced.clear()
        self.directory.reset()

    def running_threads(self) -> list[str]:
        return [t.name for t in self._threads if t.is_alive()]

    def _spawn(self, name: str, loop: Callable[[], None]) -> None:
        self._threads.append(self.supervisor.spawn(name, loop, self._stop))

    # -- watches ---------------------------------------------------------------------

    def _register(self, name: str, stop: threading.Event, close: Callable[[], None]) -> None:
        """Remember how to close watch ``name``'s current stream (for :meth:`stop`)."""
        with self._lock:
            self._closers[name] = close
        if stop.is_set():
            close()

    def _watch_loop(self, name: str, list_fn: ListFn,
                    on_event: Callable[[str, dict[str, Any]], None], watch_fn: WatchFn) -> None:
        """List once, then watch from the last resourceVersion seen; relist only after
        410 Gone. Errors back off (:data:`WATCH`) and resume where the watch was."""
        stop = self._stop

        def register(close: Callable[[], None]) -> None:
            self._register(name, stop, close)

        resource_version: str | None = None
        failures = 0
        while not stop.is_set():
            try:
                if resource_version is None:
                    resource_version = list_fn()
                for kind, obj in watch_fn(resource_version, register):
                    if stop.is_set():
                        return
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        resource_version = rv
                    if kind != "BOOKMARK":
                        on_event(kind, obj)
                    self.supervisor.beat(name)
                failures = 0
                self.supervisor.beat(name)
            except Gone:
                log.info("%s: resource version expired (410 Gone); relisting", name)
                resource_version = None
            except KubeError as exc:
                if stop.is_set():
                    return
                delay = WATCH.delay(failures, exc)
                failures += 1
                log.warning("%s failed: %s; resuming in %.1fs", name, exc, delay)
                stop.wait(delay)

    def _watch_rules(self, rv: str | None, on_open: Callable[[Callable[[], None]], None]
                     ) -> Iterator[tuple[str, dict[str, Any]]]:
        return rules.watch_rules(self.kube, self.namespace, rv, WATCH_TIMEOUT_SECONDS,
                                 on_open)

    def _watch_deployments(self, rv: str | None,
                           on_open: Callable[[Callable[[], None]], None]
                           ) -> Iterator[tuple[str, dict[str, Any]]]:
        return deployments.watch_deployments(self.kube, self.namespace, rv,
                                             WATCH_TIMEOUT_SECONDS, MANAGED_SELECTOR, on_open)

    def _list_rules(self) -> str:
        items, rv = rules.list_rules(self.kube, self.namespace)
        self.directory.replace_rules(items)
        seen = set()
        for obj in items:
            seen.add(self._key(obj))
            self._rule_event("ADDED", obj)
        with self._lock:
            gone = [k for k in self._claims if k not in seen]
        for key in gone:
            self._forget(key)
        self.synced.set()
        return rv

    def _list_deployments(self) -> str:
        items, rv = deployments.list_deployments(self.kube, self.namespace, MANAGED_SELECTOR)
        for obj in items:
            self._deployment_event("ADDED", obj)
        return rv

    @staticmethod
    def _key(obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return Key(meta.get("namespace") or "default", meta["name"])

    def _rule_event(self, kind: str, obj: dict[str, Any]) -> None:
        self.directory.rule_event(kind, obj)
        key = self._key(obj)
        if kind == "DELETED":
            self._forget(key)
            return
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        seen = (meta.get("generation"), bool(meta.get("deletionTimestamp")))
        with self._lock:
            if self._seen.get(key, seen) != seen:  # the user changed or deleted the rule:
                self._failures.pop(key, None)  # act on it now, not after a failure's backoff
                self._retry_at.pop(key, None)
            self._seen[key] = seen
        target = (spec.get("targetRef") or {}).get("name")
        if target:
            phase = str((obj.get("status") or {}).get("phase") or "Pending")
            active = phase in {p.value for p in Phase if p.active}
            claim = Claim(key.name, str(meta.get("creationTimestamp") or ""), active)
            with self._lock:
                self._claims[key] = (str(target), claim)
        self._schedule(key, spec)
        self.queue.put(key)

    def _deployment_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        rule = (meta.get("labels") or {}).get(RULE_LABEL)
        if rule:
            self.queue.put(Key(meta.get("namespace") or "default", str(rule)))

    def claims(self, namespace: str, target: str) -> list[Claim]:
        """The rules of ``namespace`` that name ``target``, as the rule watch saw them."""
        with self._lock:
            return [c for k, (t, c) in self._claims.items()
                    if k.namespace == namespace and t == target]

    def _forget(self, key: Key) -> None:
        with self._lock:
            self._intervals.pop(key, None)
            self._claims.pop(key, None)
            self._failures.pop(key, None)
            self._retry_at.pop(key, None)
            self._seen.pop(key, None)
            self._waits.pop(key, None)
        if self._scheduler is not None:
            with contextlib.suppress(JobLookupError):  # was never scheduled
                self._scheduler.remove_job(str(key))
        self.ticks.forget(str(key))
        log.info("rule %s deleted: analysis job removed", key)

    # -- analysis jobs ---------------------------------------------------------------

    def _schedule(self, key: Key, spec: dict[str, Any]) -> None:
        try:
            interval = self.interval_override or parse_duration(
                (spec.get("analysis") or {}).get("interval", "1m"))
        except ValueError:
            return  # the reconcile reports the invalid rule
        with self._lock:
            if self._intervals.get(key) == interval or self._scheduler is None:
                return
            self._intervals[key] = interval
            scheduler = self._scheduler
        job = scheduler.add_job(
            self._tick, "interval", seconds=interval, args=[key], id=str(key),
            replace_existing=True, max_instances=1, coalesce=True,
        )
        self.ticks.schedule(str(key), job.trigger.start_date, interval)
        log.info("analysis of %s every %ss", key, interval)

    def _tick(self, key: Key) -> None:
        self.ticks.started(str(key), datetime.now(UTC))
        self._run(key, analyze=True)

    # -- workers ---------------------------------------------------------------------

    def _worker_loop(self) -> None:
        stop = self._stop
        while not stop.is_set():
            key = self.queue.get(timeout=0.5)
            self.supervisor.beat()
            if key is not None:
                self._run(key, analyze=False)

    def _run(self, key: Key, *, analyze: bool) -> None:
        if self._stop.is_set():
            return
        with self._lock:
            retry_at = self._retry_at.get(key, 0.0)
        wait = retry_at - time.monotonic()
        if wait > 0:  # a failing rule waits for its backoff, whatever woke it (no hot loop:
            if not analyze:  # its own status write and Event would wake it at once)
                self.queue.put_after(key, wait)
            return
        try:
            result = reconcile(self.deps, key.namespace, key.name, analyze=analyze)
        except NotLeader:
            log.info("not the leader: skipped %s", key)
            return
        except Exception as exc:  # a KubeError, or a bug: this rule only, never the worker
            with self._lock:
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
            delay = FAILURE.delay(failures, exc)
            with self._lock:
                self._retry_at[key] = time.monotonic() + delay
            if isinstance(exc, KubeError):
                log.warning("reconcile of %s failed: %s; again in %.1fs", key, exc, delay)
            else:
                log.exception("reconcile of %s crashed; again in %.1fs", key, delay)
            self.queue.put_after(key, delay)
            return
        with self._lock:
            self._failures.pop(key, None)
            self._retry_at.pop(key, None)
        with self._lock:
            waits = self._waits.pop(key, 0)
            if result.waiting:
                self._waits[key] = waits + 1
        if result.waiting:  # soon at first (pods are often ready in a second), then less
            self.queue.put_after(key, min(self.poll_seconds, FIRST_POLL_SECONDS * 2 ** waits))

    def _resync_loop(self) -> None:
        stop = self._stop
        while not stop.wait(self.resync_seconds):
            with self._lock:
                keys = list(self._claims) + [k for k in self._intervals
                                             if k not in self._claims]
            for key in keys:
                self.queue.put(key)
            self.supervisor.beat()
