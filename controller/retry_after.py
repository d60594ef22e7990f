"""The one ``Retry-After`` parser, for every HTTP peer the controller retries against.

Both retry policies read it: the Kubernetes layer's (:mod:`controller.actuator.retry`,
through :func:`controller.actuator.errors.from_status`) and the judge's
(:mod:`controller.judge.client`). It lives outside both adapters so that neither imports
the other's client library. (The SDK, :mod:`llm_canary`, keeps its own: it is stdlib-only
and never imports the controller.)

A server may say how long to wait as ``retry-after-ms`` (milliseconds, OpenAI-style) or
``Retry-After`` in seconds or as an HTTP date. Header names are matched case-insensitively
(a plain ``dict`` as well as the clients' header maps). A value that is not a finite
number or a date is ignored (``None``), never a reason to wait forever; a date in the
past or a negative number means "now" (0).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any


def parse_retry_after(headers: Any, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After``; ``None`` when absent or
    unreadable. ``headers`` is any mapping with ``get`` (or ``None``)."""
    if headers is None:
        return None
    ms = _seconds(_header(headers, "retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    value = _header(headers, "retry-after")
    seconds = _seconds(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(str(value).strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no zone named (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _header(headers: Any, name: str) -> Any:
    """``headers[name]``, whatever the case of the key."""
    value = headers.get(name)
    if value is not None:
        return value
    items = headers.items() if hasattr(headers, "items") else ()
    return next((v for k, v in items if isinstance(k, str) and k.lower() == name), None)


def _seconds(value: Any) -> float | None:
    """A finite, non-negative number of ``value``, else ``None``."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, number) if math.isfinite(number) else None
