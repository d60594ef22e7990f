"""A tiny, pure model of three Deployments for driving the engine over many reconciles.

Not a mock of the engine: it plays the cluster's part (the Deployment controller and the
kubelet) as a sequence of states, so engine tests can assert invariants over time
(capacity never below the floor, the target never shrunk for an unready canary). Each
Deployment's pods follow its spec one :meth:`Sim.tick` later; a pod becomes available
``delay`` ticks after it was created, or never (``never_ready``). A template change
replaces every pod. The controller's real actuation is tested against the emulator.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from controller.engine import (
    Observed,
    Op,
    Plan,
    Role,
    Workload,
    promoted_template,
    revision_of,
    template_revision,
)

JSON = dict[str, Any]

TEMPLATE: JSON = {
    "metadata": {"labels": {"app": "bot"}},
    "spec": {"containers": [{"name": "app", "image": "bot:1",
                             "env": [{"name": "MODEL", "value": "small"}]}]},
}


@dataclass
class Deployment:
    replicas: int = 0
    template: JSON = field(default_factory=dict)
    delay: int = 0
    never_ready: bool = False
    pods: list[int] = field(default_factory=list)  # age in ticks of each current pod
    old_pods: int = 0  # pods of a previous template still running (available)
    revision_label: bool = True  # canary/holdback: revision from the label

    def revision(self) -> str | None:
        if not self.template:
            return None
        return revision_of(self.template) if self.revision_label else \
            template_revision(self.template)

    def available(self) -> int:
        if self.never_ready:
            return self.old_pods
        return self.old_pods + sum(1 for age in self.pods if age >= self.delay)

    def workload(self) -> Workload:
        return Workload(replicas=self.replicas, pods=len(self.pods) + self.old_pods,
                        available=self.available(), updated=len(self.pods),
                        revision=self.revision(),
                        problem="never ready" if self.never_ready and self.pods else "")

    def tick(self) -> None:
        self.pods = [age + 1 for age in self.pods][: self.replicas]
        while len(self.pods) < self.replicas:
            self.pods.append(0)
        if self.available() - self.old_pods >= self.replicas:
            self.old_pods = 0  # the rolling update finished
        self.old_pods = min(self.old_pods, max(0, self.replicas))

    def set_template(self, template: JSON) -> None:
        if template != self.template:
            ready_now = self.available() - self.old_pods
            self.old_pods = min(self.replicas, self.old_pods + ready_now)
            self.template = copy.deepcopy(template)
            self.pods = []


@dataclass
class Sim:
    target: Deployment
    canary: Deployment | None = None
    holdback: Deployment | None = None
    autoscaler: str | None = None
    max_surge: int | str | None = None
    canary_delay: int = 0
    canary_never_ready: bool = False
    history: list[dict[str, int]] = field(default_factory=list)

    @classmethod
    def with_target(cls, replicas: int = 10, **kw: Any) -> Sim:
        target = Deployment(replicas=replicas, template=copy.deepcopy(TEMPLATE),
                            revision_label=False)
        target.pods = [99] * replicas
        return cls(target=target, **kw)

    def observed(self) -> Observed:
        return Observed(
            target=self.target.workload(), target_template=copy.deepcopy(self.target.template),
            canary=self.canary.workload() if self.canary else None,
            holdback=self.holdback.workload() if self.holdback else None,
            autoscaler=self.autoscaler, max_surge=self.max_surge)

    def _side(self, role: Role) -> Deployment:
        if role is Role.CANARY:
            if self.canary is None:
                self.canary = Deployment(delay=self.canary_delay,
                                         never_ready=self.canary_never_ready)
            return self.canary
        if self.holdback is None:
            self.holdback = Deployment()
        return self.holdback

    def apply(self, plan: Plan) -> None:
        for op in plan.operations:
            if op.op is Op.ENSURE:
                assert op.template is not None
                self._side(op.role).set_template(op.template)
            elif op.op is Op.SCALE:
                assert op.replicas is not None
                dep = self.target if op.role is Role.TARGET else self._side(op.role)
                if op.role is Role.TARGET:
                    assert self.autoscaler is None, "wrote the replicas of an autoscaled target"
                dep.replicas = op.replicas
            elif op.op is Op.PROMOTE:
                assert self.canary is not None and self.canary.revision() == op.revision
                self.target.set_template(promoted_template(self.canary.template))
            elif op.op is Op.RESTORE:
                assert op.template is not None
                self.target.set_template(op.template)

    def tick(self) -> None:
        for dep in (self.target, self.canary, self.holdback):
            if dep is not None:
                dep.tick()
        self.history.append({
            "target": self.target.available(),
            "canary": self.canary.available() if self.canary else 0,
            "holdback": self.holdback.available() if self.holdback else 0,
            "target_replicas": self.target.replicas,
            "pods": sum(len(d.pods) + d.old_pods for d in (self.target, self.canary,
                                                           self.holdback) if d),
        })

    def serving(self) -> int:
        last = self.history[-1]
        return last["target"] + last["canary"] + last["holdback"]
