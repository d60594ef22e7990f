"""What one client may cost the server: bytes, time, connections and concurrent work.

Every limit answers; none drops a connection without a word:

- **Body size** for every framing: a declared ``Content-Length`` over the limit is refused
  before anything is read (413); a chunked body is counted as it arrives and refused the
  moment it crosses the limit (413); a negative or malformed length is refused by the
  HTTP parser (400, JSON body, see :mod:`.app`).
- **Time**: the body must arrive within ``body_timeout_seconds`` (408); a connection that
  never completes a request, or sits idle between requests, is closed after
  ``keepalive_seconds`` (aiohttp's keep-alive timer, armed from the first byte).
- **Concurrency**: at most ``max_inflight_requests`` ingestion requests and
  ``max_inflight_bytes`` of their bodies are held at once; beyond that the answer is 429
  with ``Retry-After`` at once (no queue that grows memory), and clients back off.
- **Connections**: at most ``max_connections`` open at once; more are closed on accept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 * MiB
    max_inflight_requests: int = 8
    max_inflight_bytes: int = 24 * MiB
    """Bodies held at once; with parsing overhead this bounds ingestion's memory (see the
    chart's sizing notes)."""
    body_timeout_seconds: float = 30.0
    keepalive_seconds: float = 15.0
    max_connections: int = 1024
    retry_after_seconds: int = 1


class RequestError(Exception):
    """An answer other than the endpoint's own: status, message, extra headers."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close


class Admission:
    """Counts ingestion work in flight (the event loop is single-threaded: no lock)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.requests = 0
        self.bytes = 0

    @contextmanager
    def admit(self, declared_bytes: int | None) -> Iterator[None]:
        """Hold a slot for one request and its body (the limit when undeclared)."""
        size = min(declared_bytes if declared_bytes is not None else self.limits.max_body_bytes,
                   self.limits.max_body_bytes)
        if self.requests >= self.limits.max_inflight_requests or \
                (self.requests and self.bytes + size > self.limits.max_inflight_bytes):
            raise RequestError(429, "too many requests in flight; retry after the delay "
                                    "in Retry-After", close=declared_bytes != 0,
                               headers={"Retry-After": str(self.limits.retry_after_seconds)})
        self.requests += 1
        self.bytes += size
        try:
            yield
        finally:
            self.requests -= 1
            self.bytes -= size


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"body over {limit} bytes; send smaller batches", close=True)


async def read_body(request: web.BaseRequest, limits: Limits) -> bytes:
    """The whole body within the size and time limits, whatever its framing."""
    declared = request.content_length
    if declared is not None and declared > limits.max_body_bytes:
        raise too_large(limits.max_body_bytes)
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(limits.body_timeout_seconds):
            async for chunk in request.content.iter_chunked(256 * 1024):
                total += len(chunk)
                if total > limits.max_body_bytes:
                    raise too_large(limits.max_body_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive within "
                                f"{limits.body_timeout_seconds:g}s", close=True) from None
    return b"".join(chunks)
