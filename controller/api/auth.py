"""Who is posting: Kubernetes ServiceAccount tokens, checked with the TokenReview API.

Clients send a projected ServiceAccount token for the audience ``llm-canary`` (the pod
mounts it with a ``serviceAccountToken`` projection; kubelet rotates it and clients
re-read the file) as ``Authorization: Bearer <token>``. The API server verifies it
(signature, expiry, audience, bound Pod and ServiceAccount still existing) through
TokenReview; only a ServiceAccount identity is accepted.

- Reviews are cached briefly by the SHA-256 of the token (never the token itself),
  bounded in entries; a refusal is cached for less time than an acceptance. A cached
  acceptance never outlives :data:`CACHE_SECONDS` nor the token's own ``exp`` claim, so an
  expired token stops working at once and a revoked one within that time.
- A malformed header (not ``Bearer``, non-ASCII, longer than :data:`MAX_TOKEN_BYTES`) is
  refused without asking the API server.
- Concurrent reviews are bounded, and the same token is reviewed once even when many
  requests carry it at the same moment.
- Tokens are never logged: not on success, not in errors.

Unauthenticated ingestion exists only when the operator sets
``--insecure-allow-unauthenticated-ingestion``: every caller is then anonymous and may
post for any existing rule (for local demos and closed test networks).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from controller.conventions import INGEST_AUDIENCE
from controller.models.identity import ANONYMOUS, Caller, ServiceAccountRef, TokenReviewResult
from controller.ports import TokenReviewer

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8192
CACHE_SECONDS = 60.0
"""An accepted token is trusted this long without asking again."""
NEGATIVE_CACHE_SECONDS = 10.0
CACHE_ENTRIES = 10_000
MAX_CONCURRENT_REVIEWS = 4


class Unauthenticated(Exception):
    """401: the reason is safe to show (it never contains the token)."""


class AuthUnavailable(Exception):
    """503: the API server could not be asked; the client should retry."""


class Authenticator(Protocol):
    async def authenticate(self, header: str | None) -> Caller: ...


class Insecure:
    """``--insecure-allow-unauthenticated-ingestion``: everyone is anonymous."""

    async def authenticate(self, header: str | None) -> Caller:
        return ANONYMOUS


def bearer_token(header: str | None) -> bytes:
    """The token of an ``Authorization: Bearer ...`` header, as ASCII bytes; raises
    :class:`Unauthenticated` for anything else (non-ASCII included: no token has it)."""
    if not header:
        raise Unauthenticated("missing bearer token: send Authorization: Bearer <projected "
                              f"ServiceAccount token for audience {INGEST_AUDIENCE}>")
    scheme, _, value = header.strip().partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise Unauthenticated("the bearer token must be ASCII") from None
    if len(raw) > MAX_TOKEN_BYTES or not all(33 <= b < 127 for b in raw):
        raise Unauthenticated("malformed bearer token")
    return raw


def seconds_until_expiry(token: bytes, now: float | None = None) -> float | None:
    """Seconds until the ``exp`` claim of a JWT (unverified: only to cap the cache; the API
    server verified the token), or None for a token without one."""
    parts = token.split(b".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
        exp = float(payload["exp"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return exp - (time.time() if now is None else now)


class TokenReviewAuthenticator:
    """ServiceAccount tokens via TokenReview, with a bounded cache keyed by token hash."""

    def __init__(self, reviewer: TokenReviewer, *, audience: str = INGEST_AUDIENCE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reviewer = reviewer
        self.audience = audience
        self.clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Caller | str]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[Caller | str]] = {}
        self._slots: asyncio.Semaphore | None = None

    async def authenticate(self, header: str | None) -> Caller:
        token = bearer_token(header)
        digest = hashlib.sha256(token).digest()
        outcome = self._cached(digest)
        if outcome is None:
            outcome = await self._review_once(digest, token)
        if isinstance(outcome, str):
            raise Unauthenticated(outcome)
        return outcome

    def _cached(self, digest: bytes) -> Caller | str | None:
        entry = self._cache.get(digest)
        if entry is None:
            return None
        expires, outcome = entry
        if self.clock() >= expires:
            del self._cache[digest]
            return None
        self._cache.move_to_end(digest)
        return outcome

    async def _review_once(self, digest: bytes, token: bytes) -> Caller | str:
        """One review per token at a time: concurrent requests share its answer."""
        running = self._inflight.get(digest)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Caller | str] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            outcome = await self._review(token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(digest, None)
        future.set_result(outcome)
        ttl = CACHE_SECONDS if isinstance(outcome, Caller) else NEGATIVE_CACHE_SECONDS
        remaining = seconds_until_expiry(token)
        if remaining is not None:
            ttl = min(ttl, max(0.0, remaining))
        self._cache[digest] = (self.clock() + ttl, outcome)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return outcome

    async def _review(self, token: bytes) -> Caller | str:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_REVIEWS)
        async with self._slots:
            try:
                result = await asyncio.to_thread(
                    self.reviewer.review, token.decode("ascii"), [self.audience])
            except Exception as exc:
                log.warning("token review unavailable: %s", type(exc).__name__)
                raise AuthUnavailable("cannot verify the token now (the Kubernetes API "
                                      "did not answer); retry") from None
        return self._caller(result)

    def _caller(self, result: TokenReviewResult) -> Caller | str:
        if not result.authenticated:
            if "audience" in result.error:
                return (f"token is not for audience {self.audience!r}: project a "
                        f"ServiceAccount token with audience {self.audience}")
            return "token not accepted by the Kubernetes API (expired, revoked or unknown)"
        if result.audiences and self.audience not in result.audiences:
            return f"token is not for audience {self.audience!r}"
        account = ServiceAccountRef.from_username(result.username)
        if account is None:
            return "only Kubernetes ServiceAccounts may report samples"
        return Caller(account)
