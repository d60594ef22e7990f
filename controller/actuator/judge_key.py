"""Reading one key of a Secret (the judge's API key). The value is never logged.

Only Secrets marked for llm-canary (label ``canary.llmops.dev/judge-key: "true"``) are
used: whoever may create a CanaryRule names the Secret, but only someone who may label
Secrets in that namespace decides that its value may travel to a judge endpoint. The
label is checked after the read (RBAC cannot select by label), before the value is
decoded or used; namespaced installs also pin ``resourceNames`` in the Role.
"""

from __future__ import annotations

import base64
import binascii

from controller.conventions import JUDGE_KEY_LABEL

from .client import Kube, path_of
from .errors import Forbidden, Invalid, NotFound


def read_secret_key(kube: Kube, namespace: str, name: str, key: str) -> str:
    """The decoded value of ``data[key]``; ``NotFound`` when the Secret or key is missing,
    ``Forbidden`` when the Secret is not marked for llm-canary."""
    secret = kube.request("GET", path_of("v1", "secrets", namespace, name))
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(JUDGE_KEY_LABEL) != "true":
        raise Forbidden(f"Secret {namespace}/{name} is not marked for llm-canary: label it "
                        f"{JUDGE_KEY_LABEL}=true to let rules use it as a judge key",
                        reason="SecretNotMarked", status=403)
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
