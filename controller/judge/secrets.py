"""API keys: where they come from and how they are kept out of every message.

A key comes from an environment variable (``OPENAI_API_KEY`` or one the user names) or,
in the controller, from the Kubernetes Secret the rule references (read by the actuator
and passed in as a string). It is held only by the openai client; every text the judge
produces from an endpoint's answer (error details, log lines) goes through a
:class:`Redactor` first, because some servers echo the key back in auth errors.
"""

from __future__ import annotations

import os

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "no-key"
"""Sent when no key is configured: keyless local servers (Ollama, vLLM) accept anything."""

_MASK = "***"


class MissingApiKey(Exception):
    """A named environment variable was asked for but is not set (the value is never shown)."""


def api_key_from_env(name: str | None = None) -> str | None:
    """The key in ``name`` (required when named) or in ``OPENAI_API_KEY`` (optional)."""
    if name:
        value = os.environ.get(name)
        if not value:
            raise MissingApiKey(f"environment variable {name} is not set or empty")
        return value
    return os.environ.get(DEFAULT_KEY_ENV) or None


class Redactor:
    """Replaces every occurrence of the secret (and of its long prefixes, which servers
    sometimes show truncated) with ``***``."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret if secret and secret != NO_KEY and len(secret) >= 4 else None

    def __call__(self, text: str) -> str:
        if not self._secret:
            return text
        out = text.replace(self._secret, _MASK)
        # A truncated echo such as "sk-abc...xyz": hide any 8+ character prefix too.
        if len(self._secret) >= 12:
            for n in range(len(self._secret) - 1, 7, -1):
                prefix = self._secret[:n]
                if prefix in out:
                    out = out.replace(prefix, _MASK)
                    break
        return out
