"""The arithmetic of the Kubernetes deployment controller, as pure functions.

- ``maxSurge`` / ``maxUnavailable``: ints or percentages of ``spec.replicas``; surge rounds
  up, unavailable rounds down, and when both resolve to 0 unavailable becomes 1
  (``ResolveFenceposts``).
- the pod-template hash: FNV-1a (32 bit) of the template (and ``collisionCount``), written
  with the "safe" alphabet, as ``controller.ComputeHash`` + ``rand.SafeEncodeString`` do
  (the bytes hashed differ: Go hashes a spew dump of the struct, here canonical JSON).
- proportional scaling of several active ReplicaSets when a Deployment is resized
  mid-rollout (``getReplicaSetFraction`` / ``GetProportion``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import JSON

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Deployment annotations never copied to its ReplicaSets.
NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
              DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"}

_PERCENT = re.compile(r"^[0-9]+%$")
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def int_or_percent(value: Any) -> tuple[int, bool] | None:
    """``(number, is_percent)``; None if the value is neither an int nor ``"N%"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, False
    if isinstance(value, str) and _PERCENT.match(value):
        return int(value[:-1]), True
    return None


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    parsed = int_or_percent(value)
    if parsed is None:
        return 0
    number, percent = parsed
    if not percent:
        return number
    exact = number * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def fenceposts(spec: JSON) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` in pods for a RollingUpdate Deployment spec."""
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling(spec: JSON) -> bool:
    return (spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def max_surge(spec: JSON) -> int:
    return fenceposts(spec)[0] if is_rolling(spec) else 0


def max_unavailable(spec: JSON) -> int:
    replicas = int(spec.get("replicas", 1))
    if not is_rolling(spec) or replicas == 0:
        return 0
    return min(fenceposts(spec)[1], replicas)


def template_hash(template: JSON, collision_count: int | None = None) -> str:
    """``pod-template-hash``: FNV-1a 32 of the template, decimal, in the safe alphabet."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def without_hash(template: JSON) -> JSON:
    """A pod template minus the ``pod-template-hash`` label (``EqualIgnoreHash``)."""
    tpl = json.loads(json.dumps(template))
    labels = (tpl.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return tpl


def replicas(obj: JSON) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def status_count(obj: JSON, key: str) -> int:
    return int((obj.get("status") or {}).get(key) or 0)


def revision(obj: JSON) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def rs_fraction(rs: JSON, spec: JSON, status_replicas: int) -> int:
    """How many replicas ``rs`` gains (or loses) when the Deployment is resized."""
    want = int(spec.get("replicas", 1))
    if want == 0:
        return -replicas(rs)
    deployment_replicas = want + max_surge(spec)
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    try:
        annotated = int(annotations[MAX_REPLICAS])
    except (KeyError, ValueError):
        annotated = status_replicas
    if annotated <= 0:
        return 0
    size = replicas(rs) * deployment_replicas / annotated
    return math.floor(size + 0.5) - replicas(rs)


def proportion(rs: JSON, spec: JSON, status_replicas: int, to_add: int, added: int) -> int:
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = rs_fraction(rs, spec, status_replicas)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)
