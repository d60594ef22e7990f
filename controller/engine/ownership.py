"""One rule per target: which of several CanaryRules on one Deployment manages it.

Two rules on one target would overwrite each other's canary (its ownerReference, its
template, its replicas). The rule that manages the target is the one with a rollout in
flight, else the oldest (creation time, then name): a rule created later waits, with a
condition naming the owner, until the owner is deleted; it never takes over a rollout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """A rule that names a target, as the rule watch saw it."""

    name: str
    created: str
    """``metadata.creationTimestamp`` (RFC 3339 sorts by time)."""
    active: bool = False
    """It has a rollout in flight (or something left to undo)."""


def owner(claims: list[Claim]) -> str | None:
    """The name of the rule that manages the target among ``claims`` (None if empty)."""
    if not claims:
        return None
    best = min(claims, key=lambda c: (not c.active, c.created, c.name))
    return best.name
