"""The project's Kubernetes errors: what a caller can act on, not which HTTP library failed.

``map_errors()`` turns the client's ``ApiException`` (with the API server's ``Status``
body) and urllib3's connection errors into one of:

- :class:`NotFound` (404) — the object is gone; :class:`AlreadyExists` (409 on create);
- :class:`Conflict` (409) — a stale resourceVersion: re-read and retry, never overwrite;
- :class:`Invalid` (400, 422, 415) — the request itself is wrong; retrying cannot help;
- :class:`Forbidden` (401, 403) — RBAC or credentials;
- :class:`Gone` (410) — a watch's resourceVersion expired: relist;
- :class:`Transient` (connection errors, timeouts, 429, 5xx) — retry later with backoff.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from controller.retry_after import parse_retry_after


class KubeError(Exception):
    """Base of every error the actuator raises.

    ``reason`` is the API server's machine-readable reason (``Conflict``, ``NotFound``,
    ...) or a short name for client-side failures; ``message`` is the human text.
    """

    def __init__(self, message: str, *, reason: str = "", status: int | None = None,
                 causes: list[tuple[str, str]] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {message}" if reason else message)
        self.message = message
        self.reason = reason or type(self).__name__
        self.status = status
        self.causes = causes or []  # (field path, message) for Invalid
        self.retry_after = retry_after


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class AlreadyExists(Conflict):
    pass


class Invalid(KubeError):
    pass


class Forbidden(KubeError):
    pass


class Gone(KubeError):
    pass


class Transient(KubeError):
    pass


def _status_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {"message": body[:500]}
        return parsed if isinstance(parsed, dict) else {}
    return body if isinstance(body, dict) else {}


def from_status(code: int, body: Any, headers: Any = None) -> KubeError:
    """The error for an HTTP status and its (Kubernetes ``Status``) body."""
    status = _status_body(body)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or f"HTTP {code}")
    details = status.get("details") or {}
    causes = [(str(c.get("field", "")), str(c.get("message", "")))
              for c in details.get("causes") or [] if isinstance(c, dict)]
    retry_after = parse_retry_after(headers)
    if retry_after is None:  # the Status body's hint, when no header says it
        retry_after = parse_retry_after({"retry-after": details.get("retryAfterSeconds")})
    kwargs: dict[str, Any] = {"reason": reason, "status": code, "causes": causes,
                              "retry_after": retry_after}
    if code == 404:
        return NotFound(message, **kwargs)
    if code == 409:
        return (AlreadyExists if reason == "AlreadyExists" else Conflict)(message, **kwargs)
    if code == 410:
        return Gone(message, **kwargs)
    if code in (401, 403):
        return Forbidden(message, **kwargs)
    if code in (400, 415, 422):
        return Invalid(message, **kwargs)
    if code == 429 or code >= 500 or code in (0, 408):
        return Transient(message, **kwargs)
    return KubeError(message, **kwargs)


def from_api_exception(exc: ApiException) -> KubeError:
    return from_status(int(exc.status or 0), exc.body or exc.reason or "", exc.headers)


@contextmanager
def map_errors(what: str = "") -> Iterator[None]:
    """Re-raise client and connection errors as :class:`KubeError` subclasses."""
    try:
        yield
    except KubeError:
        raise
    except ApiException as exc:
        err = from_api_exception(exc)
        if what:
            err.message = f"{what}: {err.message}"
            err.args = (f"{err.reason}: {err.message}",)
        raise err from exc
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        prefix = f"{what}: " if what else ""
        raise Transient(f"{prefix}{type(exc).__name__}: {exc}", reason="Unreachable",
                        status=0) from exc
