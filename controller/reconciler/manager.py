"""The controller's moving parts: watches, a work queue, one analysis job per rule.

- **Watches** (one thread each) list+watch CanaryRules and Deployments, resume from the
  last resourceVersion, relist after 410 Gone, and only *enqueue keys*; reconciling is
  level-triggered, so a missed or duplicated event costs nothing but a reconcile.
- **Workers** drain the queue: a key is queued at most once at a time (a set, not a
  list), so a burst of events for one rule collapses into one reconcile.
- **Analysis jobs**: one apscheduler interval job per rule (``max_instances=1``,
  ``coalesce=True``), rescheduled when the interval changes and removed when the rule is
  deleted. Manual actions are acted on by the next reconcile (seconds), not the next tick.
- A periodic **resync** enqueues every known rule, catching anything a watch missed.
- Everything runs only while this replica leads; losing the lease stops the jobs, and
  every write re-checks leadership first (see :mod:`.rollout`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from controller.actuator import deployments, rules
from controller.actuator.client import Kube
from controller.actuator.errors import Gone, KubeError
from controller.health import Health
from controller.models import parse_duration

from .directory import Directory
from .rollout import Deps, NotLeader, reconcile
from .ticks import TickLedger

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Key:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class WorkQueue:
    """A set-backed FIFO: each key at most once, blocking get with timeout."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._order: list[Key] = []
        self._queued: set[Key] = set()

    def put(self, key: Key) -> None:
        with self._cond:
            if key not in self._queued:
                self._queued.add(key)
                self._order.append(key)
                self._cond.notify()

    def get(self, timeout: float) -> Key | None:
        with self._cond:
            if not self._order:
                self._cond.wait(timeout)
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
        *,
        namespace: str | None,
        resync_seconds: float = 300.0,
        workers: int = 2,
        interval_override: float | None = None,
        directory: Directory | None = None,
        health: Health | None = None,
    ) -> None:
        self.deps = deps
        self.kube: Kube = deps.kube
        self.namespace = namespace
        self.resync_seconds = resync_seconds
        self.workers = workers
        self.interval_override = interval_override
        self.queue = WorkQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scheduler: BackgroundScheduler | None = None
        self._intervals: dict[Key, float] = {}
        self._targets: dict[Key, str] = {}  # rule -> target Deployment name
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self.ticks = TickLedger()
        self.directory = directory or Directory()
        """Rules and their reporters, for the ingestion API (see :mod:`.directory`)."""
        self.health = health or Health()
        """Every thread (and the scheduler) is watched while started: one that dies makes
        the probes fail, so the pod is restarted instead of idling as a zombie leader."""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._scheduler = BackgroundScheduler(timezone="UTC",
                                              job_defaults={"misfire_grace_time": None})
        self._scheduler.start()
        scheduler = self._scheduler
        self.health.watch("analysis scheduler", lambda: scheduler.running)
        self._spawn("watch-rules", self._watch_loop, self._list_rules, self._rule_event,
                    rules.watch_rules)
        self._spawn("watch-deployments", self._watch_loop, self._list_deployments,
                    self._deployment_event, deployments.watch_deployments)
        self._spawn("resync", self._resync_loop)
        for i in range(self.workers):
            self._spawn(f"worker-{i}", self._worker_loop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop acting at once; threads finish their current call and exit."""
        self._stop.set()
        self.health.unwatch("analysis scheduler")
        for t in self._threads:
            self.health.unwatch(f"thread {t.name}")
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        with self._lock:
            self._intervals.clear()
        self.directory.reset()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)
        self.health.watch_thread(t)

    # -- watches ---------------------------------------------------------------------

    def _watch_loop(
        self,
        list_fn: Callable[[], str],
        on_event: Callable[[str, dict[str, Any]], None],
        watch_fn: Callable[..., Any],
    ) -> None:
        resource_version: str | None = None
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = list_fn()
                for kind, obj in watch_fn(self.kube, self.namespace, resource_version,
                                          WATCH_TIMEOUT_SECONDS):
                    if self._stop.is_set():
                        return
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        resource_version = rv
                    if kind != "BOOKMARK":
                        on_event(kind, obj)
                backoff = 0.5
            except Gone:
                log.info("watch expired (410 Gone); relisting")
                resource_version = None
            except KubeError as exc:
                log.warning("watch failed: %s; retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                resource_version = None

    def _list_rules(self) -> str:
        items, rv = rules.list_rules(self.kube, self.namespace)
        self.directory.replace_rules(items)
        seen = set()
        for obj in items:
            key = self._key(obj)
            seen.add(key)
            self._rule_event("ADDED", obj)
        with self._lock:
            gone = [k for k in self._intervals if k not in seen]
        for key in gone:
            self._forget(key)
        self.synced.set()
        return rv

    def _list_deployments(self) -> str:
        items, rv = deployments.list_deployments(self.kube, self.namespace)
        self.directory.replace_deployments(items)
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
        target = (spec.get("targetRef") or {}).get("name")
        if target:
            with self._lock:
                self._targets[key] = target
        self._schedule(key, spec)
        self.queue.put(key)

    def _deployment_event(self, kind: str, obj: dict[str, Any]) -> None:
        self.directory.deployment_event(kind, obj)
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name", "")
        base = name.removesuffix("-canary")
        with self._lock:
            keys = [k for k, t in self._targets.items() if k.namespace == ns and t == base]
        for key in keys:
            self.queue.put(key)

    def _forget(self, key: Key) -> None:
        with self._lock:
            self._intervals.pop(key, None)
            self._targets.pop(key, None)
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
        job = self._scheduler.add_job(
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
        while not self._stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is not None:
                self._run(key, analyze=False)

    def _run(self, key: Key, *, analyze: bool) -> None:
        if self._stop.is_set():
            return
        try:
            reconcile(self.deps, key.namespace, key.name, analyze=analyze)
        except NotLeader:
            log.info("not the leader: skipped %s", key)
        except KubeError as exc:
            log.warning("reconcile of %s failed: %s; requeued on the next resync", key, exc)
        except Exception:
            log.exception("reconcile of %s crashed", key)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_seconds):
            with self._lock:
                keys = list(self._intervals)
            for key in keys:
                self.queue.put(key)
