"""Reading one key of a Secret (the judge's API key). The value is never logged."""

from __future__ import annotations

import base64
import binascii

from .client import Kube, path_of
from .errors import Invalid, NotFound


def read_secret_key(kube: Kube, namespace: str, name: str, key: str) -> str:
    """The decoded value of ``data[key]``; ``NotFound`` when the Secret or key is missing."""
    secret = kube.request("GET", path_of("v1", "secrets", namespace, name))
    data = secret.get("data") or {}
    if key not in data:
        raise NotFound(f"Secret {namespace}/{name} has no key {key!r}", reason="KeyMissing",
                       status=404)
    try:
        return base64.b64decode(data[key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        # ``from None``: the decode error would carry bytes of the secret into tracebacks
        raise Invalid(f"Secret {namespace}/{name} key {key!r} is not base64 UTF-8 text",
                      reason="BadSecret") from None
