"""The rollout engine: a pure state machine over plain values (no clock, no network).

- :mod:`.machine`: ``plan(spec, status, observed, decision, now) -> Plan``, the phases;
- :mod:`.templates`: stable, canary, holdback and promoted pod templates, revision ids;
- :mod:`.placement`: how many pods each Deployment runs (availability-gated ratio);
- :mod:`.evidence`: which samples count for the rollout in status, under which cohort;
- :mod:`.manual`: manual actions and the phases they are allowed in;
- :mod:`.ownership`: which of several rules on one Deployment manages it;
- :mod:`.world`: what the cluster adapter observes and the operations it carries out.
"""

from .evidence import Evidence, evidence
from .machine import deadline_reached, invalid, plan
from .manual import ALLOWED, ManualAction, ManualError, ManualRequest, manual_request
from .ownership import Claim, owner
from .placement import effective_weight, ratio_warnings, split, surge_share
from .templates import (
    TemplateError,
    canary_template,
    describe_change,
    holdback_template,
    promoted_template,
    revision_of,
    spec_hash,
    strip_marks,
    template_revision,
)
from .world import Event, Observed, Op, Operation, Plan, Role, Workload

__all__ = [
    "ALLOWED",
    "Claim",
    "Event",
    "Evidence",
    "ManualAction",
    "ManualError",
    "ManualRequest",
    "Observed",
    "Op",
    "Operation",
    "Plan",
    "Role",
    "TemplateError",
    "Workload",
    "canary_template",
    "deadline_reached",
    "describe_change",
    "effective_weight",
    "evidence",
    "holdback_template",
    "invalid",
    "manual_request",
    "owner",
    "plan",
    "promoted_template",
    "ratio_warnings",
    "revision_of",
    "spec_hash",
    "split",
    "strip_marks",
    "surge_share",
    "template_revision",
]
