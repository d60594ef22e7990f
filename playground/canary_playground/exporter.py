"""A small metrics exporter on 127.0.0.1 that tests drive, for a real Prometheus to scrape.

It exposes what an LLM service would report per cohort and queue:
``llm_requests_total{cohort,queue}`` and ``llm_fallback_total{cohort,queue}`` (plus
``llm_policy_violations_total``). A series exists only once it has been incremented,
so "no data" is distinguishable from zero, as it is with a real service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, start_http_server

LABELS = ("cohort", "queue")


class Exporter:
    """Counters in a private registry, served over HTTP on an ephemeral port."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llm_requests", "Requests served", LABELS, registry=self.registry
        )
        self.fallbacks = Counter(
            "llm_fallback", "Requests served by the fallback path", LABELS, registry=self.registry
        )
        self.policy_violations = Counter(
            "llm_policy_violations", "Policy violations", LABELS, registry=self.registry
        )
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        server, thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_port)

    def stop(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def record(
        self,
        cohort: str,
        queue: str = "default",
        *,
        requests: int = 0,
        fallbacks: int = 0,
        violations: int = 0,
    ) -> None:
        """Count served requests and, among them, fallbacks and policy violations."""
        if fallbacks > requests or violations > requests:
            raise ValueError("fallbacks and violations are among the requests")
        if requests:
            self.requests.labels(cohort=cohort, queue=queue).inc(requests)
        if fallbacks:
            self.fallbacks.labels(cohort=cohort, queue=queue).inc(fallbacks)
        if violations:
            self.policy_violations.labels(cohort=cohort, queue=queue).inc(violations)

    def touch(self, cohort: str, queue: str = "default") -> None:
        """Create every series of a slice at zero (a service that started reporting)."""
        for counter in (self.requests, self.fallbacks, self.policy_violations):
            counter.labels(cohort=cohort, queue=queue).inc(0)


@contextmanager
def running_exporter() -> Iterator[Exporter]:
    exporter = Exporter()
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()
