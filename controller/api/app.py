"""The controller's HTTP server (aiohttp, on its own thread and event loop).

Endpoints:

- ``POST /v1/samples``, ``POST /v1/feedback``, ``POST /v1/traces`` (OTLP/HTTP, protobuf
  or JSON): ingestion (:mod:`.ingestion`), for authenticated ServiceAccounts
  (:mod:`.auth`), within the limits of :mod:`.limits`. Another format plugs in with
  :meth:`ApiServer.add_ingest_endpoint` (same authentication, limits and leader check).
- ``GET /v1/schema``: the ingestion contract as JSON Schema (public, like the docs).
- ``GET /metrics`` (Prometheus text), ``/healthz`` (liveness), ``/readyz`` (readiness):
  unauthenticated, and they say nothing a tenant should not see (no tokens, no sample
  content; health names failing parts only). With ``metrics_port`` they are also served
  on a second port, and ``/metrics`` only there (a NetworkPolicy can then open the
  ingestion port to reporters and the metrics port to monitoring alone).
  :meth:`ApiServer.add_public_endpoint` adds more (e.g. ``GET /v1/schema``).

Only the leader stores samples (each replica has its own SQLite store). A standby is
Ready and answers ingestion with 503 and ``Retry-After``; clients retry and reach the
leader (readiness never depends on leadership, so rolling upgrades with several replicas
do not deadlock). The leader answers 503 too until its rule directory is loaded.

Every answer is JSON with a status code, including the HTTP parser's own refusals
(malformed request line, negative ``Content-Length``, oversized headers): a client is
never left with a dropped connection and no answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.health import Health
from controller.models.identity import Caller
from controller.models.schema import SCHEMA_MEDIA_TYPE, schema_bytes
from controller.observability import HTTP_REQUESTS, REGISTRY
from controller.ports import DirectoryUnavailable

from .auth import Authenticator, AuthUnavailable, Unauthenticated
from .ingestion import Answer, Ingestion
from .limits import Admission, Limits, RequestError, read_body, too_large

log = logging.getLogger(__name__)

NOT_LEADER_RETRY_SECONDS = 2
Handler = Callable[[BaseRequest], Awaitable[StreamResponse]]
IngestFn = Callable[[bytes, Caller, str], Answer]
"""``(body, caller, content type) -> answer``, run on a worker thread."""
PublicFn = Callable[[], tuple[int, bytes, str]]
"""``() -> (status, body, content type)`` for an unauthenticated GET."""


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None,
                  *, close: bool = False) -> web.Response:
    resp = web.Response(status=status, body=json.dumps(payload).encode(),
                        content_type="application/json", headers=headers)
    if close:
        resp.force_close()
    return resp


class _JsonErrors(RequestHandler):
    """aiohttp's connection handler, answering the parser's refusals in JSON."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> StreamResponse:
        if status >= 500:
            log.error("HTTP server error: %s", type(exc).__name__ if exc else message)
        text = HTTPStatus(status).phrase if status >= 500 else (
            str(getattr(exc, "message", "") or message or HTTPStatus(status).phrase))
        resp = json_response(status, {"error": text[:300]}, close=True)
        HTTP_REQUESTS.labels("other", str(status)).inc()
        return resp


class _Server(Server):
    """A low-level aiohttp server with JSON errors and a connection cap."""

    def __init__(self, handler: Handler, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections

    def __call__(self) -> RequestHandler:
        return _JsonErrors(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.max_connections:
            HTTP_REQUESTS.labels("other", "connection_refused").inc()
            transport.close()


class ApiServer:
    """Serves the endpoints on a background thread until :meth:`stop`."""

    def __init__(
        self,
        ingestion: Ingestion,
        authenticator: Authenticator,
        *,
        health: Health | None = None,
        host: str = "0.0.0.0",
        port: int = 8080,
        metrics_port: int | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        directory_synced: Callable[[], bool] = lambda: True,
        limits: Limits | None = None,
        workers: int = 2,
    ) -> None:
        self.ingestion = ingestion
        self.authenticator = authenticator
        self.health = health or Health()
        self.host = host
        self.is_leader = is_leader
        self.directory_synced = directory_synced
        self.limits = limits or Limits()
        self.admission = Admission(self.limits)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self._ports = {"main": port, **({"metrics": metrics_port}
                                        if metrics_port is not None else {})}
        self._bound: dict[str, int] = {}
        self._ingest: dict[str, IngestFn] = {}
        self._public: dict[str, PublicFn] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.add_ingest_endpoint("/v1/samples", ingestion.samples)
        self.add_ingest_endpoint("/v1/feedback", ingestion.feedback)
        self.add_ingest_endpoint("/v1/traces", ingestion.traces)
        self.add_public_endpoint("/v1/schema", lambda: (200, schema_bytes(), SCHEMA_MEDIA_TYPE))

    # -- extension points --------------------------------------------------------------

    def add_ingest_endpoint(self, path: str, fn: IngestFn) -> None:
        """``POST path``: authenticated, bounded, leader-only; ``fn`` runs on a worker."""
        self._ingest[path] = fn

    def add_public_endpoint(self, path: str, fn: PublicFn) -> None:
        """``GET path``, unauthenticated: only for content any caller may see."""
        self._public[path] = fn

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._bound["main"]

    @property
    def metrics_port(self) -> int:
        return self._bound.get("metrics", self._bound["main"])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="api", daemon=True)
        self._thread.start()
        if not self._started.wait(30) or self._error is not None:
            raise RuntimeError(f"HTTP server did not start: {self._error}")
        self.health.watch_thread(self._thread)

    def stop(self) -> None:
        if self._thread is None:
            return
        self.health.unwatch(f"thread {self._thread.name}")
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported through start() or the health check
            self._error = exc
            self._started.set()
            log.exception("HTTP server stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runners: list[web.ServerRunner] = []
        try:
            for role, port in self._ports.items():
                server = _Server(self._handler(role), max_connections=self.limits.max_connections,
                                 keepalive_timeout=self.limits.keepalive_seconds,
                                 max_line_size=8190, max_field_size=8190, max_headers=64)
                runner = web.ServerRunner(server, handle_signals=False)
                await runner.setup()
                runners.append(runner)
                site = web.TCPSite(runner, self.host, port, backlog=256)
                await site.start()
                sockets = getattr(site._server, "sockets", None) or []
                self._bound[role] = int(sockets[0].getsockname()[1]) if sockets else port
            self._started.set()
            await self._stop.wait()
        finally:
            for runner in runners:
                await runner.cleanup()

    # -- routing -----------------------------------------------------------------------

    def _handler(self, role: str) -> Handler:
        separate_metrics = "metrics" in self._ports

        async def handle(request: BaseRequest) -> StreamResponse:
            path = request.path
            endpoint = path if path in self._ingest or path in self._public or path in (
                "/metrics", "/healthz", "/readyz") else "other"
            try:
                resp = await self._route(request, role, separate_metrics)
            except RequestError as exc:
                resp = json_response(exc.status, {"error": exc.message}, exc.headers,
                                     close=exc.close)
            except Exception:
                log.exception("request %s %s failed", request.method, endpoint)
                resp = json_response(500, {"error": "internal error"}, close=True)
            HTTP_REQUESTS.labels(endpoint, str(resp.status)).inc()
            return resp

        return handle

    async def _route(self, request: BaseRequest, role: str, separate_metrics: bool
                     ) -> StreamResponse:
        path, method = request.path, request.method
        if path in ("/healthz", "/readyz"):
            _only(method, "GET", "HEAD")
            return self._health(path)
        if path == "/metrics" and (role == "metrics" or not separate_metrics):
            _only(method, "GET", "HEAD")
            return web.Response(body=generate_latest(REGISTRY),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})
        if role == "main" and path in self._public:
            _only(method, "GET", "HEAD")
            status, body, ctype = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._public[path])
            return web.Response(status=status, body=body, headers={"Content-Type": ctype})
        if role == "main" and path in self._ingest:
            _only(method, "POST")
            return await self._ingestion(request, self._ingest[path])
        raise RequestError(404, f"no such endpoint {path[:200]}")

    def _health(self, path: str) -> StreamResponse:
        report = self.health.liveness() if path == "/healthz" else self.health.readiness()
        payload: dict[str, Any] = {"status": "ok" if report.ok else "failing"}
        if report.failing:
            payload["failing"] = list(report.failing)
        if path == "/readyz":
            payload["leader"] = bool(self.is_leader())
        return json_response(200 if report.ok else 503, payload)

    async def _ingestion(self, request: BaseRequest, fn: IngestFn) -> StreamResponse:
        retry = {"Retry-After": str(NOT_LEADER_RETRY_SECONDS)}
        if not self.is_leader():
            raise RequestError(503, "this replica is a standby: only the leader stores "
                                    "samples; retry (the next attempt may reach the leader)",
                               headers=retry, close=True)
        if not self.directory_synced():
            raise RequestError(503, "the controller is still loading its rules; retry",
                               headers=retry, close=True)
        declared = request.content_length
        if declared is not None and declared > self.limits.max_body_bytes:
            raise too_large(self.limits.max_body_bytes)  # before taking an admission slot
        with self.admission.admit(declared):
            try:
                caller = await self.authenticator.authenticate(
                    request.headers.get("Authorization"))
            except Unauthenticated as exc:
                raise RequestError(401, str(exc), headers={"WWW-Authenticate": "Bearer"},
                                   close=not request.content.is_eof()) from None
            except AuthUnavailable as exc:
                raise RequestError(503, str(exc), headers=retry, close=True) from None
            body = await read_body(request, self.limits)
            ctype = request.headers.get("Content-Type", "")
            try:
                answer = await asyncio.get_running_loop().run_in_executor(
                    self._executor, fn, body, caller, ctype)
            except DirectoryUnavailable as exc:
                raise RequestError(503, str(exc), headers=retry, close=True) from None
        if answer.body is not None:
            return web.Response(status=answer.status, body=answer.body,
                                headers={**answer.headers, "Content-Type": answer.content_type})
        return json_response(answer.status, answer.payload, answer.headers)


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise RequestError(405, f"method {method[:20]} not allowed here",
                           headers={"Allow": ", ".join(allowed)})
