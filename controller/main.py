"""``canary-controller`` (also ``python -m controller``): the controller process.

Settings come from flags, each with an environment fallback (the Helm chart sets both).
Kubernetes access: in-cluster config inside a pod, else kubeconfig (``--kubeconfig``,
``KUBECONFIG`` or ``~/.kube/config``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from controller.actuator import secrets
from controller.actuator.client import Kube, connect
from controller.actuator.errors import KubeError
from controller.actuator.lease import LeaderElector
from controller.judge.service import JudgeService, KeyReader
from controller.models import CanaryRule, parse_duration
from controller.observability import LEADER, configure_logging, register_secret
from controller.ports import CountsProvider
from controller.sources.prometheus import PrometheusSource
from controller.sources.store import SampleStore

from .api import ApiServer
from .reconciler.manager import Manager
from .reconciler.rollout import Deps

log = logging.getLogger("controller")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="canary-controller", description=__doc__.splitlines()[0])
    p.add_argument("--namespace", default=_env("WATCH_NAMESPACE"),
                   help="Watch one namespace (default: all; env WATCH_NAMESPACE).")
    p.add_argument("--host", default=_env("CANARY_HOST", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(_env("CANARY_PORT", "8080") or 8080),
                   help="HTTP port for /v1/samples, /v1/feedback, /metrics, /healthz, /readyz.")
    p.add_argument("--store", default=_env("CANARY_STORE", "/data/samples.db"),
                   help="SQLite file of the sample store (on a volume in the chart).")
    p.add_argument("--judge-cache", default=_env("CANARY_JUDGE_CACHE"),
                   help="Verdict cache file (default: next to the store).")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction,
                   default=(_env("CANARY_LEADER_ELECT", "true") or "true").lower() == "true")
    p.add_argument("--lease-name", default=_env("CANARY_LEASE_NAME", "llm-canary-controller"))
    p.add_argument("--lease-namespace", default=_env("POD_NAMESPACE", "default"))
    p.add_argument("--identity", default=_env("POD_NAME", socket.gethostname()))
    p.add_argument("--lease-seconds", type=float, default=15.0,
                   help="Lease duration; a dead leader is replaced after at most this long.")
    p.add_argument("--renew-seconds", type=float, default=10.0,
                   help="A leader that could not renew for this long stops acting.")
    p.add_argument("--retry-seconds", type=float, default=2.0)
    p.add_argument("--kubeconfig", default=_env("KUBECONFIG"))
    p.add_argument("--context", default=None)
    p.add_argument("--resync", type=float, default=300.0, help="Seconds between full resyncs.")
    p.add_argument("--analysis-interval", default=_env("CANARY_ANALYSIS_INTERVAL"),
                   help="Override every rule's analysis interval (demos and tests).")
    p.add_argument("--retention", default=_env("CANARY_RETENTION", "7d"),
                   help="Delete stored samples older than this (checked hourly).")
    p.add_argument("--max-samples-per-rule", type=int,
                   default=int(_env("CANARY_MAX_SAMPLES_PER_RULE", "2000000") or 2000000))
    p.add_argument("--judge-base-url", default=_env("CANARY_JUDGE_BASE_URL"),
                   help="Judge endpoint for rules whose spec.judge names no baseUrl "
                        "(default: the OpenAI API).")
    p.add_argument("--prometheus-url", default=_env("CANARY_PROMETHEUS_URL"),
                   help="Prometheus for rules whose spec.metrics names no prometheusUrl.")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    return p.parse_args(argv)


def _key_reader(kube: Kube) -> KeyReader:
    """Judge keys from Secrets through the actuator; a failure names the Secret, never
    its value."""

    def read(namespace: str, name: str, key: str) -> str:
        try:
            return secrets.read_secret_key(kube, namespace, name, key)
        except KubeError as exc:
            raise LookupError(f"Secret {name}/{key}: {exc.reason}: {exc.message}") from None

    return read


def _counts_for(args: argparse.Namespace) -> Callable[[CanaryRule], CountsProvider | None]:
    """One Prometheus client per (URL, timeout), shared by the rules that use it."""
    cache: dict[tuple[str, float], PrometheusSource] = {}

    def counts_for(rule: CanaryRule) -> CountsProvider | None:
        m = rule.spec.metrics
        url = m.prometheus_url or args.prometheus_url
        if not url:
            return None
        key = (url, m.timeout_seconds)
        if key not in cache:
            cache[key] = PrometheusSource(url, timeout_seconds=m.timeout_seconds)
        return cache[key]

    return counts_for


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    token = _env("CANARY_INGEST_TOKEN")
    register_secret(token)
    kube = connect(args.kubeconfig, args.context)
    store = SampleStore(args.store)
    cache_path = args.judge_cache or str(Path(args.store).with_name("judge-cache.sqlite"))
    interval = parse_duration(args.analysis_interval) if args.analysis_interval else None

    leading = threading.Event()
    elector: LeaderElector | None = None
    if args.leader_elect:
        elector = LeaderElector(kube, args.lease_namespace, args.lease_name, args.identity,
                                lease_seconds=args.lease_seconds,
                                renew_seconds=args.renew_seconds,
                                retry_seconds=args.retry_seconds)

    def is_leader() -> bool:
        """Checked before every write: a lease not renewed in time stops us at once."""
        return leading.is_set() and (elector is None or elector.is_leader)
    judges = JudgeService(cache_path=cache_path, read_key=_key_reader(kube),
                          default_base_url=args.judge_base_url,
                          default_key=_env("OPENAI_API_KEY"))
    deps = Deps(kube=kube, samples=store, is_leader=is_leader, judge_for=judges.for_rule,
                counts_for=_counts_for(args))
    manager = Manager(deps, namespace=args.namespace, resync_seconds=args.resync,
                      interval_override=interval)
    api = ApiServer(store, host=args.host, port=args.port, is_leader=is_leader,
                    is_ready=manager.synced.is_set, token=token)
    api.start()
    log.info("serving HTTP on %s:%d", args.host, api.port)

    stop = threading.Event()

    def on_started() -> None:
        log.info("became the leader (%s)", args.identity)
        leading.set()
        LEADER.set(1)
        manager.start()

    def on_stopped() -> None:
        if leading.is_set():
            log.warning("lost the leader lease: stopped acting")
        leading.clear()
        LEADER.set(0)
        manager.stop()

    if elector is not None:
        elector.start(on_started, on_stopped)
    else:
        on_started()

    def shutdown(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    retention = timedelta(seconds=parse_duration(args.retention))

    def housekeeping() -> None:
        """Bounded retention: prune hourly until shutdown (longer than any rollout)."""
        while not stop.wait(3600):
            pruned = store.prune(max_age=retention,
                                 max_rows_per_rule=args.max_samples_per_rule)
            if pruned.samples or pruned.pending_feedback:
                log.info("pruned %d samples, %d pending feedback", pruned.samples,
                         pruned.pending_feedback)

    threading.Thread(target=housekeeping, name="housekeeping", daemon=True).start()
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    stop.wait()
    if elector is not None:
        elector.stop()
    on_stopped()
    api.stop()
    store.close()
    log.info("stopped")
    return 0
