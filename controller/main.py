"""``canary-controller`` (also ``python -m controller``): the controller process.

Settings come from flags, each with an environment fallback (the Helm chart sets both).
Kubernetes access: in-cluster config inside a pod, else kubeconfig (``--kubeconfig``,
``KUBECONFIG`` or ``~/.kube/config``).

Ingestion is authenticated by default (ServiceAccount tokens checked with TokenReview,
authorized per rule); ``--insecure-allow-unauthenticated-ingestion`` turns that off for
demos. The former ``CANARY_INGEST_TOKEN`` (one shared secret that let any holder post for
every rule in every namespace) is no longer read: a process started with it set logs an
error and refuses unauthenticated posts anyway.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from controller.actuator import deployments, judge_key
from controller.actuator.client import Kube, connect
from controller.actuator.cluster import KubeCluster
from controller.actuator.errors import KubeError
from controller.actuator.lease import LeaderElector
from controller.actuator.router import ReplicaRatioRouter
from controller.actuator.tokenreview import TokenReviewer
from controller.conventions import GITOPS_TRACKING_LABELS
from controller.health import Health
from controller.judge.cache import VerdictCache
from controller.judge.service import JudgeService, KeyReader
from controller.models import CanaryRule, parse_duration
from controller.observability import LEADER, configure_logging
from controller.ports import CountsProvider
from controller.sources.prometheus import PrometheusSource
from controller.sources.store import SampleStore
from controller.supervisor import SUPERVISOR

from .api import ApiServer, Ingestion, Insecure, Limits, TokenReviewAuthenticator
from .api.auth import Authenticator
from .reconciler.directory import AccountLookup, Directory, service_account_of
from .reconciler.manager import Manager
from .reconciler.rollout import Deps

log = logging.getLogger("controller")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


_SIZE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2,
               "gi": 1024**3}


def parse_size(text: str) -> int:
    """Bytes in a Kubernetes-style quantity: ``700Mi``, ``1G``, ``123456``; 0 = no limit."""
    value = text.strip()
    number = value.rstrip("KkMmGgi")
    unit = value[len(number):].lower()
    if unit not in _SIZE_UNITS or not number.replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 700Mi or 1Gi")
    return int(float(number) * _SIZE_UNITS[unit])


def _flag(name: str) -> bool:
    return (_env(name, "false") or "false").lower() in ("1", "true", "yes")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="canary-controller", description=__doc__.splitlines()[0])
    p.add_argument("--namespace", default=_env("WATCH_NAMESPACE"),
                   help="Watch one namespace (default: all; env WATCH_NAMESPACE).")
    p.add_argument("--host", default=_env("CANARY_HOST", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(_env("CANARY_PORT", "8080") or 8080),
                   help="HTTP port for /v1/samples, /v1/feedback, /healthz, /readyz (and "
                        "/metrics unless --metrics-port is set).")
    p.add_argument("--metrics-port", type=int,
                   default=int(_env("CANARY_METRICS_PORT", "0") or 0) or None,
                   help="Serve /metrics (and the probes) on this port only, so a "
                        "NetworkPolicy can open ingestion and metrics to different peers.")
    p.add_argument("--insecure-allow-unauthenticated-ingestion", action="store_true",
                   default=_flag("CANARY_INSECURE_ALLOW_UNAUTHENTICATED_INGESTION"),
                   help="Accept samples from anyone, for any existing rule (demos and "
                        "closed test networks only). Default: ServiceAccount tokens checked "
                        "with TokenReview, authorized per rule.")
    p.add_argument("--max-body", type=parse_size, default=parse_size("10Mi"),
                   help="Largest ingestion request body (413 beyond).")
    p.add_argument("--max-inflight-requests", type=int,
                   default=int(_env("CANARY_MAX_INFLIGHT_REQUESTS", "8") or 8),
                   help="Ingestion requests processed at once; more get 429 + Retry-After.")
    p.add_argument("--store", default=_env("CANARY_STORE", "/data/samples.db"),
                   help="SQLite file of the sample store (on a volume in the chart).")
    p.add_argument("--judge-cache", default=_env("CANARY_JUDGE_CACHE"),
                   help="Verdict cache file (default: next to the store).")
    p.add_argument("--judge-cache-max-entries", type=int,
                   default=int(_env("CANARY_JUDGE_CACHE_MAX_ENTRIES", "100000") or 100000),
                   help="Verdicts kept in the cache (the newest); about 1.5 KiB each.")
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
    p.add_argument("--poll-seconds", type=float, default=5.0,
                   help="While a rollout waits on pods, reconcile it at most this far apart "
                        "(from 0.25 s, doubling).")
    p.add_argument("--exclude-label", action="append", default=None,
                   help="A label of the target Deployment never copied to the canary "
                        "(repeatable; env CANARY_EXCLUDE_LABELS, comma-separated). Default: "
                        "the GitOps tracking labels " + ", ".join(GITOPS_TRACKING_LABELS))
    p.add_argument("--analysis-interval", default=_env("CANARY_ANALYSIS_INTERVAL"),
                   help="Override every rule's analysis interval (demos and tests).")
    p.add_argument("--retention", default=_env("CANARY_RETENTION", "7d"),
                   help="Delete stored samples older than this (checked hourly).")
    p.add_argument("--max-samples-per-rule", type=int,
                   default=int(_env("CANARY_MAX_SAMPLES_PER_RULE", "500000") or 500000))
    p.add_argument("--max-store-bytes", type=parse_size,
                   default=parse_size(_env("CANARY_MAX_STORE_BYTES", "600Mi") or "600Mi"),
                   help="Size limit of the sample store: beyond it the oldest samples are "
                        "deleted, and ingestion answers 507 if nothing can go (0: none).")
    p.add_argument("--max-pending-feedback-per-rule", type=int, default=100_000,
                   help="Feedback kept per rule for samples not yet received.")
    p.add_argument("--judge-allowed-url", action="append",
                   default=[u for u in (_env("CANARY_JUDGE_ALLOWED_URLS", "") or "").split(",")
                            if u.strip()],
                   help="A judge endpoint rules may name in judge.baseUrl (repeatable; env "
                        "CANARY_JUDGE_ALLOWED_URLS, comma-separated). --judge-base-url is "
                        "always allowed; any other URL is refused before a key is read.")
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
            return judge_key.read_secret_key(kube, namespace, name, key)
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


def _exclude_labels(args: argparse.Namespace) -> tuple[str, ...]:
    if args.exclude_label is not None:
        chosen = [x for item in args.exclude_label for x in item.split(",")]
    elif _env("CANARY_EXCLUDE_LABELS") is not None:
        chosen = (_env("CANARY_EXCLUDE_LABELS") or "").split(",")
    else:
        return GITOPS_TRACKING_LABELS
    return tuple(x.strip() for x in chosen if x.strip())


def _prune_judge_cache(path: str, max_entries: int) -> None:
    if not Path(path).exists():
        return
    try:
        cache = VerdictCache(path)
        try:
            cache.prune(max_entries=max_entries)
        finally:
            cache.close()
    except Exception:
        log.exception("judge cache pruning failed; retrying later")


def _target_accounts(kube: Kube) -> AccountLookup:
    """The ServiceAccount a rule's target runs as, read from the API server on first use."""

    def lookup(namespace: str, name: str) -> str | None:
        obj = deployments.get_or_none(kube, namespace, name)
        return None if obj is None else service_account_of(obj)

    return lookup


def _authenticator(args: argparse.Namespace, kube: Kube) -> Authenticator:
    if _env("CANARY_INGEST_TOKEN"):
        log.error("CANARY_INGEST_TOKEN is set but no longer used: one shared token let any "
                  "holder post for every rule; clients now send their ServiceAccount token "
                  "(audience llm-canary), authorized per rule")
    if args.insecure_allow_unauthenticated_ingestion:
        log.warning("INSECURE: ingestion accepts unauthenticated samples for any rule")
        return Insecure()
    return TokenReviewAuthenticator(TokenReviewer(kube))


def _elector(args: argparse.Namespace, kube: Kube) -> LeaderElector | None:
    """The lease elector with ``--leader-elect``; without it this replica always acts."""
    if not args.leader_elect:
        return None
    return LeaderElector(kube, args.lease_namespace, args.lease_name, args.identity,
                         lease_seconds=args.lease_seconds, renew_seconds=args.renew_seconds,
                         retry_seconds=args.retry_seconds)


def _housekeeping(args: argparse.Namespace, store: SampleStore, cache_path: str,
                  stop: threading.Event) -> Callable[[], None]:
    """The housekeeping loop, run by the supervisor until ``stop``."""
    retention = timedelta(seconds=parse_duration(args.retention))

    def housekeeping() -> None:
        """Bounded retention: prune by age and count every few minutes until shutdown (the
        size limit is also enforced on every insert)."""
        while not stop.wait(HOUSEKEEPING_SECONDS):
            try:
                pruned = store.prune(max_age=retention,
                                     max_rows_per_rule=args.max_samples_per_rule,
                                     max_bytes=args.max_store_bytes or None)
            except Exception:
                log.exception("store pruning failed; retrying later")
                continue
            SUPERVISOR.beat()
            if pruned.samples or pruned.pending_feedback:
                log.info("pruned %d samples, %d pending feedback", pruned.samples,
                         pruned.pending_feedback)
            _prune_judge_cache(cache_path, args.judge_cache_max_entries)

    return housekeeping


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        kube = connect(args.kubeconfig, args.context)
    except KubeError as exc:  # no configuration: one line naming what is missing, no traceback
        print(f"canary-controller: {exc.message}", file=sys.stderr)
        return 2
    store = SampleStore(args.store, max_bytes=args.max_store_bytes or None,
                        max_pending_per_rule=args.max_pending_feedback_per_rule)
    cache_path = args.judge_cache or str(Path(args.store).with_name("judge-cache.sqlite"))
    interval = parse_duration(args.analysis_interval) if args.analysis_interval else None
    health = Health()

    leading = threading.Event()
    elector = _elector(args, kube)

    def is_leader() -> bool:
        """Checked before every write: a lease not renewed in time stops us at once."""
        return leading.is_set() and (elector is None or elector.is_leader)
    judges = JudgeService(cache_path=cache_path, read_key=_key_reader(kube),
                          default_base_url=args.judge_base_url,
                          default_key=_env("OPENAI_API_KEY"),
                          allowed_urls=list(args.judge_allowed_url))
    health.include(SUPERVISOR.problems)
    router = ReplicaRatioRouter(kube, exclude_labels=_exclude_labels(args))
    directory = Directory(lookup=_target_accounts(kube))
    deps = Deps(cluster=KubeCluster(kube), router=router, samples=store, is_leader=is_leader,
                judge_for=judges.for_rule, counts_for=_counts_for(args),
                on_observed=directory.observed)
    manager = Manager(deps, kube, namespace=args.namespace, resync_seconds=args.resync,
                      poll_seconds=args.poll_seconds, interval_override=interval,
                      directory=directory, health=health)
    api = ApiServer(Ingestion(store, manager.directory), _authenticator(args, kube),
                    health=health, host=args.host, port=args.port,
                    metrics_port=args.metrics_port, is_leader=is_leader,
                    directory_synced=lambda: manager.directory.synced,
                    limits=Limits(max_body_bytes=args.max_body,
                                  max_inflight_requests=args.max_inflight_requests))
    api.start()
    log.info("serving HTTP on %s:%d (metrics on %d)", args.host, api.port, api.metrics_port)

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

    SUPERVISOR.spawn("housekeeping", _housekeeping(args, store, cache_path, stop), stop)
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


HOUSEKEEPING_SECONDS = 300.0
