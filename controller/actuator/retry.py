"""The one retry policy of the Kubernetes layer: what is retried, how soon, how often.

- **Conflict** (409 on a stale resourceVersion): re-read and decide again at once, a few
  times with a short jittered backoff (:func:`on_conflict`); a blind overwrite never
  happens. ``AlreadyExists`` is not a stale version and is not retried here.
- **Transient** (connection errors, timeouts, 429, 5xx): the operation is retried by the
  caller's loop after :data:`FAILURE` backoff, never behind its back (urllib3 does not
  retry a request whose answer may have been lost).
- **Permanent** (403, 422, 404 of something we need): retried too - RBAC gets fixed,
  a Deployment gets created - but with the same capped backoff, and made visible (a
  condition and an Event on the rule, by the reconciler).
- ``Retry-After`` (429, 503, or the Status' ``retryAfterSeconds``) is a floor on the delay.

Delays grow exponentially from ``base`` to ``cap`` with ±25% jitter, so replicas and
rules that failed together do not retry in lockstep. The judge has its own policy
(:mod:`controller.judge.client`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import AlreadyExists, Conflict, KubeError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        raw = min(self.cap, self.base * self.factor ** max(0, attempt))
        value = raw * (1 - self.jitter / 2 + self.jitter * random.random())
        after = getattr(error, "retry_after", None) if isinstance(error, KubeError) else None
        if after is not None and after > 0:
            value = max(value, min(float(after), self.cap))
        return min(value, self.cap)


CONFLICT = Backoff(base=0.02, cap=0.5)
"""Between re-reads after a 409."""
FAILURE = Backoff(base=1.0, cap=300.0)
"""Before reconciling a rule again after a failed reconcile (any KubeError)."""
WATCH = Backoff(base=0.5, cap=30.0)
"""Before re-opening a failed watch."""
CONFLICT_ATTEMPTS = 5


def on_conflict(fn: Callable[[], T], *, what: str, attempts: int = CONFLICT_ATTEMPTS,
                sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn`` (a read-modify-write) again after each stale-version conflict, at most
    ``attempts`` times; the last conflict is raised."""
    for attempt in range(attempts):
        try:
            return fn()
        except AlreadyExists:
            raise
        except Conflict:
            if attempt + 1 >= attempts:
                log.warning("%s: still conflicting after %d attempts", what, attempts)
                raise
            log.info("%s: conflict, re-reading (attempt %d)", what, attempt + 1)
            sleep(CONFLICT.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
