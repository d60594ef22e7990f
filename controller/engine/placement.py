"""How many pods each Deployment runs: availability-gated replica ratio, as pure functions.

Traffic follows ready pods (the target's Service selects both cohorts), so a step's
weight is a share of pods. The rules, as Argo Rollouts' basic canary applies them:

- **Grow first, shrink by what is available.** The canary grows toward its share; the
  target shrinks only by the number of *available* canary pods, so the pods serving never
  drop below the rollout's total (nor below the target's availability before the
  rollout). A canary that never becomes ready (ImagePullBackOff, CrashLoop, GPU Pending,
  minutes of model loading) leaves the target at full size.
- **Surge bounded by the target's maxSurge.** The canary never makes the two Deployments
  exceed ``total + maxSurge`` desired pods (at least one pod of surge, so a rollout can
  always progress); a step beyond it is reached in several moves as pods become available.
- **Autoscaled target** (an HPA owns its replicas): the target's replicas are never
  written; the canary is *surge* sized as a share of the target's current replicas
  (``c / (t + c) ≈ weight``), at most as many pods as the target has (so at most 50% of
  the traffic: a step above 50% is not honoured, and ``status.effectiveWeight`` says so).
- **Drain** (rollback, end of a bake, deletion): the target goes back to the total at
  once; a canary/holdback pod goes as soon as the target's available pods cover the
  floor without it, unavailable ones at once. Past the deadline everything goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .world import Workload

DEFAULT_MAX_SURGE = "25%"


def split(weight: int, total: int) -> tuple[int, int]:
    """``(target, canary)`` replicas for a canary ``weight`` in percent of ``total``.

    The canary gets ``total * weight / 100`` rounded to the nearest pod (halves round
    up), then clamped so that while ``0 < weight < 100`` there is at least one canary pod
    and the target keeps at least one; ``target + canary == total``. With ``total == 1``
    and ``0 < weight < 100`` both cohorts need a pod, so the split is 1 + 1 (one pod
    more than ``total``). ``weight <= 0`` is all target; ``weight >= 100`` all canary.
    """
    total = max(0, total)
    if weight <= 0:
        return total, 0
    if weight >= 100:
        return 0, total
    if total <= 1:
        return 1, 1
    canary = min(max((total * weight + 50) // 100, 1), total - 1)
    return total - canary, canary


def effective_weight(canary_available: int, others_available: int) -> float | None:
    """The canary's share of serving pods in percent (one decimal), None with none."""
    serving = canary_available + others_available
    if serving <= 0:
        return None
    return round(100.0 * canary_available / serving, 1)


def resolve_surge(value: int | str | None, total: int) -> int:
    """A maxSurge (int or percent, rounded up as Kubernetes does) as pods, at least 1."""
    if value is None:
        value = DEFAULT_MAX_SURGE
    if isinstance(value, str):
        text = value.strip()
        try:
            pods = math.ceil(total * float(text[:-1]) / 100) if text.endswith("%") \
                else int(text)
        except ValueError:
            pods = 1
    else:
        pods = int(value)
    return max(1, pods)


def surge_share(weight: int, base: int) -> int:
    """Canary pods beside ``base`` untouched target pods for a ``weight`` share: the
    nearest count to ``base·w/(100−w)``, at least 1 and at most ``base``."""
    base = max(1, base)
    if weight >= 100:
        return base
    want = (base * weight * 2 + (100 - weight)) // (2 * (100 - weight))  # halves up
    return min(base, max(1, want))


@dataclass(frozen=True)
class Placement:
    target: int | None
    """Desired target replicas; None: not ours to write (an autoscaler owns them)."""
    side: int
    """Desired canary (or holdback) replicas."""
    ready: bool
    """The step is reached: the side runs ``revision`` at its full size, all available,
    and the target is at its size."""


def progress(weight: int, total: int, target: Workload, side: Workload | None, *,
             revision: str | None, autoscaled: bool, surge: int) -> Placement:
    """Where a step at ``weight`` is headed from what is observed now."""
    side = side or Workload()
    current = side.revision == revision
    if autoscaled:
        want = surge_share(weight, target.replicas)
        return Placement(None, want, current and side.replicas == want and side.rolled_out)
    t_n, c_n = split(weight, total)
    if c_n <= side.replicas:
        want_side = c_n
    else:
        want_side = min(c_n, max(side.replicas, total + surge - target.replicas))
    want_target = min(total, max(t_n, total - side.available))
    ready = current and side.replicas == c_n and side.rolled_out and target.replicas == t_n
    return Placement(want_target, want_side, ready)


def drain(total: int, floor: int, target: Workload, sides: list[Workload | None], *,
          autoscaled: bool, force: bool) -> tuple[int | None, list[int]]:
    """Target back to ``total``; each side (in the order given: kept first) keeps only
    the available pods the target's available pods do not yet cover up to ``floor``."""
    want_target = None if autoscaled else total
    if autoscaled or force:
        return want_target, [0 for _ in sides]
    covered = target.available
    keeps: list[int] = []
    for side in sides:
        if side is None:
            keeps.append(0)
            continue
        keep = min(side.replicas, side.available, max(0, floor - covered))
        covered += keep
        keeps.append(keep)
    return want_target, keeps


TOLERATED_RATIO_ERROR = 0.2
"""A step whose effective share differs from its weight by more than this (relative) is
reported as not honoured by replica ratio."""


def ratio_warnings(weights: list[int], replicas: int, *, autoscaled: bool = False
                   ) -> list[tuple[int, str]]:
    """``(step index, message)`` for each step whose weight cannot be honoured by replica
    ratio with ``replicas`` target pods (what ``canaryctl apply`` and ``validate
    --replicas`` say)."""
    out: list[tuple[int, str]] = []
    for i, weight in enumerate(weights):
        if autoscaled:
            canary = surge_share(weight, replicas)
            pods = replicas + canary
        else:
            target, canary = split(weight, replicas)
            pods = target + canary
        effective = 100.0 * canary / pods if pods else 0.0
        if abs(effective - weight) > TOLERATED_RATIO_ERROR * weight:
            how = "beside the autoscaled target's" if autoscaled else "of"
            out.append((i, f"step {i + 1} (weight {weight}%) runs {canary} canary pod(s) "
                           f"{how} {pods if not autoscaled else replicas} pods: "
                           f"{effective:.0f}% of the traffic by replica ratio"))
    return out
