"""What the engine is told about the cluster, and what it asks for: plain values.

The cluster adapter (:mod:`controller.actuator`) fills :class:`Observed` from the
Deployments and the HorizontalPodAutoscaler, and carries out :class:`Operation` s; the
engine never sees a Kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from controller.models import CanaryRuleStatus
from controller.models.base import JSON


@dataclass(frozen=True)
class Workload:
    """One Deployment as observed: its desired size and what its pods are doing."""

    replicas: int = 0
    """``spec.replicas``."""
    pods: int = 0
    """``status.replicas``: pods that exist, of any template."""
    available: int = 0
    """``status.availableReplicas``: pods serving (of any template)."""
    updated: int = 0
    """``status.updatedReplicas``: pods of the current template."""
    current: bool = True
    """The Deployment controller has seen the latest spec (observedGeneration)."""
    revision: str | None = None
    """Revision id of the template it runs."""
    problem: str = ""
    """Why it is not progressing, as its conditions say (e.g. ProgressDeadlineExceeded)."""

    @property
    def rolled_out(self) -> bool:
        """Every desired pod runs the current template and is available; no old pods."""
        return (self.current and self.updated >= self.replicas
                and self.available >= self.replicas and self.pods <= self.replicas)

    @property
    def idle(self) -> bool:
        """Scaled to zero and no pod left."""
        return self.replicas == 0 and self.pods == 0


@dataclass(frozen=True)
class Observed:
    """The cluster as this reconcile saw it."""

    target: Workload | None = None
    """The target Deployment; None when it does not exist."""
    target_template: JSON = field(default_factory=dict)
    canary: Workload | None = None
    holdback: Workload | None = None
    autoscaler: str | None = None
    """Name of a HorizontalPodAutoscaler whose scaleTargetRef is the target."""
    max_surge: int | str | None = None
    """The target's ``strategy.rollingUpdate.maxSurge`` (int or percent string)."""
    progress_deadline_seconds: int = 600
    """The target's ``progressDeadlineSeconds`` (Kubernetes' default 600)."""


class Role(StrEnum):
    TARGET = "target"
    CANARY = "canary"
    HOLDBACK = "holdback"


class Op(StrEnum):
    """Idempotent cluster operations ("make it so", never "do it again")."""

    ENSURE = "ensure"  # a canary/holdback Deployment exists running ``template``
    SCALE = "scale"  # a Deployment's replicas (through /scale)
    PROMOTE = "promote"  # the target runs the canary's template (of ``revision``)
    RESTORE = "restore"  # the target runs ``template`` (the stable one) again


@dataclass(frozen=True)
class Operation:
    op: Op
    role: Role
    replicas: int | None = None
    revision: str | None = None
    template: JSON | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        parts = [f"{self.op.value} {self.role.value}"]
        if self.replicas is not None:
            parts.append(f"to {self.replicas}")
        if self.revision is not None:
            parts.append(f"at {self.revision}")
        return " ".join(parts)


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass
class Plan:
    status: CanaryRuleStatus
    operations: list[Operation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finalizer: bool | None = None
    """Whether the rule should carry the finalizer (None: leave it as it is)."""
    waiting: bool = False
    """The rollout waits on pods: reconcile again soon instead of at the next event."""
