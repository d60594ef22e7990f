"""API keys: where they come from.

A key comes from an environment variable (``OPENAI_API_KEY`` or one the user names) or,
in the controller, from the Kubernetes Secret the rule references (read by the actuator
and passed in as a string). It is held only by the openai client; every text the judge
produces from an endpoint's answer (error details, log lines) goes through a
:class:`controller.scrubbing.SecretScrubber` first, because some servers echo the key
back in auth errors.
"""

from __future__ import annotations

import os

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
NO_KEY = "no-key"
"""Sent when no key is configured: keyless local servers (Ollama, vLLM) accept anything."""
PLACEHOLDER_KEYS = frozenset({NO_KEY, "none"})
"""Stand-ins for "no key", never treated as secrets (they would mask ordinary words)."""


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
