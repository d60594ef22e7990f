"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go does it.

- The holder renews every ``retry_seconds``; it stays leader only while its last
  successful renewal is younger than ``renew_seconds`` (the renew deadline). Past it, or
  as soon as it reads another holder in the Lease, it stops leading and ``on_stopped``
  runs at once. :attr:`LeaderElector.is_leader` checks the deadline itself, so even a
  stalled renew thread cannot make a replica act on an expired lease.
- A candidate takes over only when the record it observes has not changed for the
  Lease's ``leaseDurationSeconds`` measured on its *own* monotonic clock (so clock skew
  between replicas does not matter), or when the Lease has no holder.
- Every write carries the resourceVersion it read: two candidates cannot both win.
- :meth:`LeaderElector.stop` releases the lease (empty holder), so a successor does not
  wait for it to expire.

With the defaults (15 s lease, 10 s deadline, 2 s retry) a crashed leader is replaced
within about 15-17 s, and a cut-off leader stops acting after 10 s, before anyone else
can take over.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controller.models.base import JSON
from controller.supervisor import SUPERVISOR, Supervisor

from .client import Kube, path_of
from .errors import AlreadyExists, Conflict, KubeError, NotFound

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, *,
                 lease_seconds: float = 15, renew_seconds: float = 10,
                 retry_seconds: float = 2,
                 clock: Callable[[], float] = time.monotonic,
                 supervisor: Supervisor = SUPERVISOR) -> None:
        if not 0 < retry_seconds < renew_seconds < lease_seconds:
            raise ValueError("need 0 < retry_seconds < renew_seconds < lease_seconds")
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.retry_seconds = retry_seconds
        self._lease_wire = max(1, math.ceil(lease_seconds))  # whole seconds on the wire
        self._clock = clock
        self._lock = threading.Lock()
        self._renewed_at: float | None = None  # last successful acquire/renew (ours)
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime, transitions)
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_stopped: Callable[[], None] | None = None
        self._leading = False  # what the callbacks were last told
        self._supervisor = supervisor

    # -- state -----------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._renewed_at is not None and \
                self._clock() - self._renewed_at < self.renew_seconds

    @property
    def _path(self) -> str:
        return path_of("coordination.k8s.io/v1", "leases", self.namespace, self.name)

    def _lose(self, why: str) -> None:
        with self._lock:
            was = self._renewed_at is not None
            self._renewed_at = None
        if was:
            log.warning("leader lease %s/%s lost: %s", self.namespace, self.name, why)

    # -- one round -------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt to acquire or renew; True when this identity holds the lease now."""
        now = self._clock()
        try:
            lease = self.kube.request("GET", self._path)
        except NotFound:
            return self._create(now)
        except KubeError as exc:
            log.info("reading lease %s/%s failed: %s", self.namespace, self.name, exc)
            return self._check_deadline()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if now - self._observed_at < duration:
                self._lose(f"held by {holder}")
                return False
        transitions = int(spec.get("leaseTransitions") or 0)
        stamp = _micro_time()
        new_spec = dict(spec, holderIdentity=self.identity, renewTime=stamp,
                        leaseDurationSeconds=self._lease_wire)
        if holder != self.identity:
            new_spec.update(acquireTime=stamp, leaseTransitions=transitions + 1)
        body = dict(lease, spec=new_spec)
        try:
            answer = self.kube.request("PUT", self._path, body=body)
        except Conflict:
            return self._check_deadline()
        except KubeError as exc:
            log.info("renewing lease %s/%s failed: %s", self.namespace, self.name, exc)
            return self._check_deadline()
        return self._won(answer, now, took_over=holder != self.identity)

    def _create(self, now: float) -> bool:
        stamp = _micro_time()
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds":
                         self._lease_wire, "acquireTime": stamp, "renewTime": stamp,
                         "leaseTransitions": 0}}
        try:
            answer = self.kube.request("POST", path_of("coordination.k8s.io/v1", "leases",
                                                       self.namespace), body=body)
        except AlreadyExists:
            return False
        except KubeError as exc:
            log.info("creating lease %s/%s failed: %s", self.namespace, self.name, exc)
            return self._check_deadline()
        return self._won(answer, now, took_over=True)

    def _won(self, lease: JSON, now: float, *, took_over: bool) -> bool:
        spec = lease.get("spec") or {}
        with self._lock:
            self._renewed_at = now
            self._observed = (spec.get("holderIdentity"), spec.get("renewTime"),
                              spec.get("leaseTransitions"))
            self._observed_at = now
        if took_over:
            log.info("acquired leader lease %s/%s as %s", self.namespace, self.name,
                     self.identity)
        return True

    def _check_deadline(self) -> bool:
        """After a failed renewal: still leader only until the renew deadline."""
        if self.is_leader:
            return True
        self._lose(f"not renewed within {self.renew_seconds}s")
        return False

    # -- background loop -------------------------------------------------------------

    @property
    def thread_name(self) -> str:
        return f"lease-{self.name}"

    def start(self, on_started: Callable[[], None], on_stopped: Callable[[], None]) -> None:
        """Run elections in a supervised daemon thread (restarted after any exception);
        callbacks run in that thread."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._stop.clear()
        self._on_stopped = on_stopped
        self._thread = self._supervisor.spawn(
            self.thread_name, lambda: self._run(on_started, on_stopped), self._stop)

    def _notify(self, leading: bool, on_started: Callable[[], None],
                on_stopped: Callable[[], None]) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        try:
            (on_started if leading else on_stopped)()
        except Exception:
            log.exception("leader election callback failed")

    def _run(self, on_started: Callable[[], None], on_stopped: Callable[[], None]) -> None:
        while not self._stop.is_set():
            if self._leading and not self.is_leader:  # even when the last round crashed
                self._notify(False, on_started, on_stopped)
            leading = self.try_acquire_or_renew()
            self._supervisor.beat(self.thread_name)
            if self._stop.is_set():
                break
            self._notify(leading, on_started, on_stopped)
            wait = self.retry_seconds
            with self._lock:
                if self._renewed_at is not None:  # wake up exactly at the deadline
                    deadline = self._renewed_at + self.renew_seconds - self._clock()
                    wait = max(0.0, min(wait, deadline))
            if self._stop.wait(wait):
                break
            if self._leading and not self.is_leader:
                self._notify(False, on_started, on_stopped)

    def stop(self, timeout: float = 10.0, *, release: bool = True) -> None:
        """Stop campaigning; release the lease if held (unless ``release`` is False, as
        when a process dies); ``on_stopped`` if we were leading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            self._supervisor.forget(self.thread_name)
        if self.is_leader:
            if release:
                self.release()
            else:
                self._lose("stopped without releasing")
        if self._on_stopped is not None and self._leading:
            self._leading = False
            try:
                self._on_stopped()
            except Exception:
                log.exception("leader election callback failed")

    def release(self) -> bool:
        """Give the lease up now (empty holder) if we still hold it; True if released."""
        try:
            lease = self.kube.request("GET", self._path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return False
            spec = dict(spec, holderIdentity="", leaseDurationSeconds=1,
                        renewTime=_micro_time())
            self.kube.request("PUT", self._path, body=dict(lease, spec=spec))
            log.info("released leader lease %s/%s", self.namespace, self.name)
            return True
        except KubeError as exc:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)
            return False
        finally:
            self._lose("released")
