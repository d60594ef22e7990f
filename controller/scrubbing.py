"""Secret scrubbing: our own secrets (API keys, tokens) out of every text we emit.

Not to be confused with :mod:`controller.judge.redaction`, which hides *users' data*
from the judge endpoint. A :class:`SecretScrubber` knows a set of secret values and
replaces each occurrence, and any long prefix of one (servers echo keys truncated, e.g.
``sk-abc...xyz``), with ``***``. The process-wide one for log lines lives in
:mod:`controller.observability`; the judge keeps one per client for error details,
because some servers echo the key back in authentication errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not treated as secrets (they would mask ordinary words)."""
MIN_PREFIX_LENGTH = 8
"""A truncated echo is hidden down to this many leading characters."""
PREFIX_FROM_LENGTH = 12
"""Only secrets at least this long have their prefixes hidden too."""


class SecretScrubber:
    """A thread-safe set of secret values and the function that hides them in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            with self._lock:
                self._secrets.add(secret)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._secrets)

    def __call__(self, text: str) -> str:
        return self.scrub(text)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
            if len(secret) >= PREFIX_FROM_LENGTH:
                text = _hide_prefix(text, secret)
        return text


def _hide_prefix(text: str, secret: str) -> str:
    """Hide the longest prefix (of at least MIN_PREFIX_LENGTH characters) that appears."""
    for n in range(len(secret) - 1, MIN_PREFIX_LENGTH - 1, -1):
        prefix = secret[:n]
        if prefix in text:
            return text.replace(prefix, MASK)
    return text
