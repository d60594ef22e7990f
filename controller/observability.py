"""Metrics and structured logs, defined once for the whole process.

Metric names are part of the interface: the Grafana dashboard in the chart and users'
alerts query them. Logs are JSON lines; every registered secret value is redacted from
every record as defence in depth (secrets are also never passed to log calls).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.scrubbing import SecretScrubber

REGISTRY = CollectorRegistry(auto_describe=True)

DECISIONS = Counter(
    "llmcanary_decisions",
    "Analysis decisions by action (advance, promote, rollback, hold, pause, ...).",
    ["namespace", "rule", "action"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "llmcanary_rollbacks",
    "Rollbacks started, automatic or manual.",
    ["namespace", "rule", "reason"],
    registry=REGISTRY,
)
RULE_PHASE = Gauge(
    "llmcanary_rule_phase",
    "1 for the rule's current phase, 0 otherwise.",
    ["namespace", "rule", "phase"],
    registry=REGISTRY,
)
RULE_WEIGHT = Gauge(
    "llmcanary_rule_weight",
    "Canary traffic weight in percent.",
    ["namespace", "rule"],
    registry=REGISTRY,
)
RULE_EFFECTIVE_WEIGHT = Gauge(
    "llmcanary_rule_effective_weight",
    "Canary share of available pods in percent: the weight in effect (replica ratio).",
    ["namespace", "rule"],
    registry=REGISTRY,
)
JUDGE_AVAILABLE = Gauge(
    "llmcanary_judge_available",
    "1 while the rule's judge answers, 0 during an outage (JudgeAvailable condition).",
    ["namespace", "rule"],
    registry=REGISTRY,
)
OPERATION_FAILURES = Counter(
    "llmcanary_operation_failures",
    "Cluster operations that failed, by the API's reason (Forbidden, Invalid, ...).",
    ["namespace", "rule", "reason"],
    registry=REGISTRY,
)
THREAD_RESTARTS = Counter(
    "llmcanary_thread_restarts",
    "Background threads restarted after an unexpected exception, by thread.",
    ["thread"],
    registry=REGISTRY,
)
GUARD_LABELS = ["namespace", "rule", "guard", "slice"]
GUARD_DELTA = Gauge(
    "llmcanary_guard_delta", "Canary minus baseline estimate.", GUARD_LABELS, registry=REGISTRY
)
GUARD_LOWER = Gauge(
    "llmcanary_guard_lower",
    "Anytime-valid lower bound on the delta.",
    GUARD_LABELS,
    registry=REGISTRY,
)
GUARD_UPPER = Gauge(
    "llmcanary_guard_upper",
    "Anytime-valid upper bound on the delta.",
    GUARD_LABELS,
    registry=REGISTRY,
)
GUARD_OUTCOME = Gauge(
    "llmcanary_guard_outcome",
    "1 for the guard slice's current outcome, 0 otherwise.",
    [*GUARD_LABELS, "outcome"],
    registry=REGISTRY,
)
JUDGE_CALLS = Counter(
    "llmcanary_judge_calls", "Judge API calls by result.", ["rule", "result"], registry=REGISTRY
)
JUDGE_LATENCY = Histogram(
    "llmcanary_judge_latency_seconds",
    "Wall-clock time to judge one rule's batch of an interval.",
    ["rule"],
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
JUDGE_COST = Counter(
    "llmcanary_judge_cost_usd", "Estimated judge spend in USD.", ["rule"], registry=REGISTRY
)
JUDGE_UNJUDGED = Counter(
    "llmcanary_judge_unjudged",
    "Samples left unjudged, by reason.",
    ["rule", "reason"],
    registry=REGISTRY,
)
SAMPLES_INGESTED = Counter(
    "llmcanary_samples_ingested",
    "Sample records received by result.",
    ["result"],
    registry=REGISTRY,
)
STORE_QUARANTINED = Counter(
    "llmcanary_store_quarantined",
    "Stored samples that could not be read back and were moved to quarantine.",
    ["namespace", "rule"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "llmcanary_http_requests",
    "HTTP requests answered, by endpoint and status code (429: back-pressure, 503: not the "
    "leader or not ready to ingest, 401/403: refused callers).",
    ["endpoint", "code"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "llmcanary_reconcile_duration_seconds",
    "Time per reconcile.",
    registry=REGISTRY,
)
TICK_SECONDS = Histogram(
    "llmcanary_tick_duration_seconds",
    "Time per analysis tick.",
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
TICK_LATENESS = Histogram(
    "llmcanary_tick_lateness_seconds",
    "From an analysis tick's scheduled time to the start of the analysis that covered it "
    "(skipped ticks included: as late as the tick that finally ran).",
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
TICKS_SKIPPED = Counter(
    "llmcanary_ticks_skipped",
    "Scheduled analysis ticks that never ran (the previous tick overran, or the scheduler "
    "or its workers were busy); the next tick covers their samples.",
    registry=REGISTRY,
)
LEADER = Gauge("llmcanary_leader", "1 while this replica holds the lease.", registry=REGISTRY)


REDACTOR = SecretScrubber()
"""Every registered secret value, hidden from every log line."""


def register_secret(value: str | None) -> None:
    """Make sure ``value`` is replaced by ``***`` in every log line from now on."""
    REDACTOR.add(value)


_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return REDACTOR.scrub(json.dumps(payload, default=str))


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kubernetes", "httpx", "httpcore", "openai", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
