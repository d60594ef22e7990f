"""The HTTP transport: a stdlib ``ThreadingHTTPServer`` (one thread per connection), watch
streaming, and the side API for tests.

Order of a request: the side API (``/_emulator/...``, no auth), health and version (no
auth), authentication (401), the request log, fault injection, then the API
(authorization, admission, the store). Watches: ``resourceVersion`` resume, a 410
``Expired`` ERROR event when the version was compacted, ``timeoutSeconds``, BOOKMARK
events, and synthetic ADDED events for what exists when no version (or "0") is given.

Side API: ``GET /_emulator/health``; ``GET|POST|DELETE /_emulator/faults``; ``GET|DELETE
/_emulator/requests[?since=N]``; ``POST /_emulator/reset`` (back to the start-up objects
and the last ``/_emulator/baseline``), ``/_emulator/baseline``, ``/_emulator/compact``,
``/_emulator/disconnect-watches``; ``GET|POST /_emulator/config``; ``POST
/_emulator/tokens`` (``{"serviceAccount": "ns/name" | "user": name, "groups", "audiences",
"expirationSeconds"}`` -> ``{"token", "username", "expiresAt"}``); ``GET
/_emulator/idle`` (no controller work due now).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import conversion
from .api import Api, Request, Response, WatchSpec, parse_json, request_info
from .auth import ADMIN, Identity
from .emulator import Emulator
from .errors import JSON, ApiError, status_object
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .storage import WatchEvent

log = logging.getLogger("kube-emulator")
UNAUTHENTICATED = ("/healthz", "/readyz", "/livez", "/version")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: EmulatorServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            finally:
                self.request.settimeout(None)
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, OSError):  # a client that hung up or spoke plain HTTP
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("KUBE_EMULATOR_VERBOSE"):
            super().log_message(format, *args)

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing --------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    _pending: JSON | None = None

    def _flush_log(self, code: int) -> None:
        """Log the request before its answer leaves, so a client that reads the request
        log right after its own call always finds it there."""
        if self._pending is not None:
            self._pending["status"] = code
            self.emu.faults.log(self._pending)
            self._pending = None

    def _send(self, code: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._flush_log(code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers or []:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        body = self._body()
        if url.path.startswith("/_emulator/"):
            try:
                self._side(method, url.path, query, body)
            except ApiError as exc:
                self._send(exc.code, exc.status())
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
            return
        entry: JSON = {"method": method, "path": url.path, "query": url.query,
                       "contentType": (self.headers.get("Content-Type") or "").split(";")[0],
                       "watch": query.get("watch") in ("true", "1", "True"), "fault": False}
        code = 500
        self._pending = entry
        try:
            code = self._serve(method, url.path, query, body, entry)
        except ApiError as exc:
            code = exc.code
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            code = 499
        except Exception as exc:  # a bug answers 500, never kills the connection silently
            log.exception("internal error on %s %s", method, url.path)
            code = 500
            self._send(500, status_object(500, "InternalError", f"internal error: {exc}"))
        finally:
            self._flush_log(code)

    def _identity(self) -> Identity:
        if self.emu.token is None:  # --no-token: everyone is admin
            return ADMIN
        identity = self.emu.auth.authenticate(self.headers.get("Authorization"))
        if identity is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        entry = self._pending
        if entry is not None:
            entry["user"] = identity.username
        return identity

    def _serve(self, method: str, path: str, query: dict[str, str], body: bytes,
               entry: JSON) -> int:
        if path in UNAUTHENTICATED:
            if path == "/version":
                self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-emulator",
                                 "platform": "linux/amd64", "goVersion": "emulator"})
            else:
                self._send(200, b"ok")
            return 200
        user = self._identity()
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        fault = self.emu.faults.take(method, target)
        if fault is not None:
            entry["fault"] = True
            if fault.delay:
                time.sleep(fault.delay)
            if fault.timeout:
                self.close_connection = True
                return 0
            if not fault.after:
                raise fault.error()
        req = Request(method, path, query, body,
                      (self.headers.get("Content-Type") or "").split(";")[0].strip(),
                      self.headers.get("Accept") or "", user, request_info(method, path, query),
                      host=self.headers.get("Host") or "127.0.0.1")
        answer = Api(self.emu).handle(req)
        if fault is not None:
            raise fault.error()
        if isinstance(answer, WatchSpec):
            self._watch(answer)
            return 200
        self._answer(answer)
        return answer.code

    def _answer(self, answer: Response) -> None:
        self._send(answer.code, answer.body, answer.headers)

    # -- watch -------------------------------------------------------------------------

    def _watch(self, spec: WatchSpec) -> None:
        store = self.emu.store
        terms = parse_label_selector(spec.labels)
        fterms = parse_field_selector(spec.fields)
        deadline = time.monotonic() + spec.timeout

        def wanted(ev: WatchEvent) -> bool:
            meta = ev.obj["metadata"]
            return ev.storage == spec.storage.key and \
                (spec.namespace is None or meta.get("namespace") == spec.namespace) and \
                labels_match(meta.get("labels") or {}, terms) and fields_match(ev.obj, fterms)

        with store.cond:
            epoch = store.watch_epoch
            if spec.since in ("", "0"):
                cursor = store.rv
                items, _ = store.select(spec.storage, spec.namespace, spec.labels, spec.fields)
                pending = [{"type": "ADDED", "object": conversion.from_storage(spec.res, o)}
                           for o in items]
            else:
                cursor, pending = int(spec.since), []
        self._flush_log(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        interval = self.emu.bookmark_interval
        next_bookmark = time.monotonic() + interval
        try:
            while True:
                for event in pending:
                    self._chunk(json.dumps(event).encode() + b"\n")
                now = time.monotonic()
                if now >= deadline:
                    break
                if spec.bookmarks and now >= next_bookmark:
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": spec.res.kind, "apiVersion": spec.res.api_version,
                        "metadata": {"resourceVersion": str(cursor)}}}).encode() + b"\n")
                    next_bookmark = now + interval
                with store.cond:
                    if cursor < store.compacted:  # events this watch still needed are gone
                        expired = status_object(410, "Expired", f"too old resource version: "
                                                f"{cursor} ({store.compacted})")
                        pending, deadline = [{"type": "ERROR", "object": expired}], 0.0
                        continue
                    events = store.events_after(cursor)
                    if not events and not store.closed and store.watch_epoch == epoch:
                        wake = min(deadline, next_bookmark if spec.bookmarks else deadline)
                        store.cond.wait(max(0.0, wake - time.monotonic()))
                        events = store.events_after(cursor)
                    if store.closed or store.watch_epoch != epoch:
                        break
                    if events:
                        cursor = events[-1].rv
                pending = [{"type": e.type, "object": conversion.from_storage(spec.res, e.obj)}
                           for e in events if wanted(e)]
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- side API --------------------------------------------------------------------

    def _side(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        emu, what = self.emu, path.removeprefix("/_emulator/")
        handler = SIDE.get((method, what)) or SIDE.get(("*", what))
        if handler is None:
            self._send(404, {"error": f"unknown emulator endpoint {method} {path}"})
            return
        self._send(*handler(emu, method, query, body))


def _faults(emu: Emulator, method: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
    if method == "POST":
        return 201, emu.faults.add(parse_json(body)).__dict__
    with emu.faults.lock:
        if method == "DELETE":
            emu.faults.faults.clear()
        return 200, [f.__dict__ for f in emu.faults.faults]


def _requests(emu: Emulator, method: str, query: dict[str, str], body: bytes
              ) -> tuple[int, Any]:
    since = int(query.get("since", 0))
    with emu.faults.lock:
        if method == "DELETE":
            emu.faults.requests.clear()
        out = [r for r in emu.faults.requests if r["seq"] > since]
        return 200, {"last": emu.faults.request_seq, "requests": out}


def _tokens(emu: Emulator, method: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
    spec = parse_json(body)
    audiences = [str(a) for a in spec.get("audiences") or []] or None
    seconds = spec.get("expirationSeconds")
    expiry = float(seconds) if seconds is not None else None
    if spec.get("serviceAccount"):
        ns, _, name = str(spec["serviceAccount"]).partition("/")
        if not ns or not name:
            raise ValueError('serviceAccount must be "namespace/name"')
        token, record = emu.auth.issue_service_account(
            ns, name, audiences=audiences,
            expiration_seconds=expiry if seconds is not None else 3600.0)
    elif spec.get("user"):
        token, record = emu.auth.issue_user(str(spec["user"]), list(spec.get("groups") or []),
                                            audiences=audiences, expiration_seconds=expiry)
    else:
        raise ValueError("give serviceAccount or user")
    return 201, {"token": token, "username": record.identity.username,
                 "groups": list(record.identity.groups), "audiences": list(record.audiences),
                 "expiresAt": record.expires}


def _simple(action: str) -> Any:
    def run(emu: Emulator, method: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        if action == "reset":
            emu.reset()
        elif action == "baseline":
            emu.store.mark_baseline()
        elif action == "compact":
            emu.store.compact()
            return 200, {"compacted": emu.store.compacted}
        elif action == "disconnect":
            with emu.store.cond:
                emu.store.watch_epoch += 1
                emu.store.cond.notify_all()
        elif action == "idle":
            return 200, {"idle": emu.queue.idle()}
        return 200, {"ok": True}
    return run


def _config(emu: Emulator, method: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
    if method == "POST":
        return 200, emu.configure(parse_json(body))
    return 200, emu.config()


SIDE: dict[tuple[str, str], Any] = {
    ("*", "health"): lambda emu, m, q, b: (200, {"ok": True}),
    ("*", "faults"): _faults,
    ("*", "requests"): _requests,
    ("POST", "tokens"): _tokens,
    ("POST", "reset"): _simple("reset"),
    ("POST", "baseline"): _simple("baseline"),
    ("POST", "compact"): _simple("compact"),
    ("POST", "disconnect-watches"): _simple("disconnect"),
    ("GET", "idle"): _simple("idle"),
    ("*", "config"): _config,
}


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connect at once (pools, watches, benchmarks)

    def __init__(self, emulator: Emulator, port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.emulator = emulator
        self.ssl_context = ssl_context
        super().__init__(("127.0.0.1", port), Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:  # the handshake happens in the handler's thread
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.emulator.stop()
        self.shutdown()
        self.server_close()
