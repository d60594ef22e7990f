"""The controller's HTTP endpoints (stdlib ``ThreadingHTTPServer``, one port).

- ``POST /v1/samples``: a JSON array or JSON Lines of sample records. Valid records are
  stored (durably, before the answer) and duplicates dropped by id; each bad record is
  reported as a structured reject (line, field, reason, id, kind, message). 200 when
  everything was stored, 207 when some records were rejected, 400 when none were usable,
  413 over the size limit. The answer is :class:`~controller.models.ingest.SamplesAnswer`.
- ``POST /v1/feedback``: delayed feedback ``{id, rule, correction_minutes, label,
  accepted}`` joined by id (:class:`~controller.models.ingest.FeedbackAnswer`).
- ``GET /metrics`` (Prometheus text), ``/healthz`` (process alive), ``/readyz``.

Only the leader ingests: samples must never be split across replicas' stores (each
replica has its own SQLite file). A non-leader answers 503 with ``Retry-After`` and
reports not ready, so a Service in front of the replicas routes to the leader only.
An optional bearer token (``CANARY_INGEST_TOKEN``) protects the ingestion endpoints.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.models.ingest import FeedbackAnswer, SamplesAnswer
from controller.observability import REGISTRY, SAMPLES_INGESTED
from controller.sources.samples_io import LoadReport, parse_feedback, parse_samples
from controller.sources.store import SampleStore

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 10 * 1024 * 1024
RETRY_AFTER_SECONDS = 5


class ApiServer:
    """Serves the endpoints on a background thread until :meth:`stop`."""

    def __init__(
        self,
        store: SampleStore,
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        is_leader: Callable[[], bool] = lambda: True,
        is_ready: Callable[[], bool] = lambda: True,
        token: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.store = store
        self.is_leader = is_leader
        self.is_ready = is_ready
        self.token = token or None
        self.max_body = max_body
        handler = _make_handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="api",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- ingestion -------------------------------------------------------------------

    def ingest_samples(self, body: bytes) -> tuple[int, dict[str, Any]]:
        samples, report = parse_samples(body, "request")
        stored = self.store.insert_many(samples) if samples else None
        accepted = stored.accepted if stored else 0
        duplicates = (stored.duplicates if stored else 0) + report.skipped.get("duplicate", 0)
        rejected = report.total_rejected
        SAMPLES_INGESTED.labels("accepted").inc(accepted)
        SAMPLES_INGESTED.labels("duplicate").inc(duplicates)
        SAMPLES_INGESTED.labels("rejected").inc(rejected)
        answer = SamplesAnswer(
            accepted=accepted, duplicates=duplicates, rejected=rejected,
            errors=report.rejects, errors_dropped=report.rejects_dropped,
            message=_summary(report, stored=accepted, duplicates=duplicates),
        )
        return _status(accepted + duplicates, rejected, report), answer.model_dump(mode="json")

    def ingest_feedback(self, body: bytes) -> tuple[int, dict[str, Any]]:
        records, report = parse_feedback(body, "request")
        result = self.store.apply_feedback_many(records) if records else None
        rejected = report.total_rejected
        answer = FeedbackAnswer(
            applied=result.applied if result else 0, pending=result.pending if result else 0,
            rejected=rejected, errors=report.rejects, errors_dropped=report.rejects_dropped,
            message=_summary(report, applied=result.applied if result else 0,
                             pending=result.pending if result else 0),
        )
        return _status(len(records), rejected, report), answer.model_dump(mode="json")


def _summary(report: LoadReport, **counts: int) -> str:
    """One line: the counts, then the first refused record's message."""
    parts = [f"{n} {what}" for what, n in counts.items()]
    parts.append(f"{report.total_rejected} rejected")
    text = ", ".join(parts)
    if report.rejects:
        text += f"; first: {report.rejects[0].message}"
    elif report.empty:
        text += "; the body holds no records"
    return text


def _status(good: int, rejected: int, report: LoadReport) -> int:
    if good == 0 and (rejected or report.empty):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.MULTI_STATUS if rejected else HTTPStatus.OK


def _make_handler(server: ApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llm-canary"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, ctype: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            self._send(code, json.dumps(payload).encode(), headers=headers)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ready = server.is_ready() and server.is_leader()
                self._send(200 if ready else 503, b"ok\n" if ready else b"not leader\n",
                           "text/plain")
            else:
                self._json(404, {"error": f"no such endpoint {path}"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in ("/v1/samples", "/v1/feedback"):
                self._drain()
                self._json(404, {"error": f"no such endpoint {path}"})
                return
            if server.token and not self._authorised():
                self._drain()
                self._json(401, {"error": "missing or wrong bearer token"},
                           {"WWW-Authenticate": "Bearer"})
                return
            if not server.is_leader():
                self._drain()
                self._json(503, {"error": "not the leader; retry (the Service routes to the "
                                          "leader once it is ready)"},
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._json(411, {"error": "Content-Length required"},
                           {"Connection": "close"})
                self.close_connection = True
                return
            if length > server.max_body:
                self._json(413, {"error": f"body over {server.max_body} bytes; send smaller "
                                          "batches"}, {"Connection": "close"})
                self.close_connection = True
                return
            body = self.rfile.read(length)
            if path == "/v1/samples":
                code, payload = server.ingest_samples(body)
            else:
                code, payload = server.ingest_feedback(body)
            self._json(code, payload)

        def _authorised(self) -> bool:
            header = self.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            return scheme.lower() == "bearer" and server.token is not None and \
                hmac.compare_digest(value.strip(), server.token)

        def _drain(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = 0
            if 0 < length <= server.max_body:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

    return Handler
