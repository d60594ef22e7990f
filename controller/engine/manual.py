"""Manual controls, read from the rule's annotations (kubectl and GitOps friendly).

``ALLOWED`` is the one table of which action does something in which phase; the engine
acts by it and ``canaryctl`` refuses by it (exit 8), so the two never disagree:

- ``rollback``: while a rollout is in flight (progressing, paused, promoting, baking),
  from ``Failed`` (the target is restored and the canary drained), and from
  ``Succeeded`` as an *undo* (the previous template, kept in status, is written back into
  the target) while the previous template is known and the target still runs the
  promoted revision;
- ``promote``: one step, while progressing or paused; ``promote-full``: skip the remaining
  steps (progressing, paused) or end a bake now, keeping the new version (baking);
- ``pause`` / ``resume``;
- ``retry``: restart a ``RolledBack`` or ``Failed`` rule from step 1 with fresh evidence
  (not while the target still runs a template the rollout wrote: roll back first).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.conventions import (
    ACTION_ANNOTATION,
    ACTION_ID_ANNOTATION,
    ACTION_REASON_ANNOTATION,
)
from controller.models import Phase


class ManualAction(StrEnum):
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


ALLOWED: dict[ManualAction, tuple[Phase, ...]] = {
    ManualAction.ROLLBACK: (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.BAKING,
                            Phase.SUCCEEDED, Phase.FAILED),
    ManualAction.PROMOTE: (Phase.PROGRESSING, Phase.PAUSED),
    ManualAction.PROMOTE_FULL: (Phase.PROGRESSING, Phase.PAUSED, Phase.BAKING),
    ManualAction.PAUSE: (Phase.PROGRESSING,),
    ManualAction.RESUME: (Phase.PAUSED,),
    ManualAction.RETRY: (Phase.ROLLED_BACK, Phase.FAILED),
}


@dataclass(frozen=True)
class ManualRequest:
    """A manual control read from the resource's annotations."""

    action: ManualAction
    id: str
    reason: str = ""


@dataclass(frozen=True)
class ManualError:
    message: str


def manual_request(annotations: dict[str, str]) -> ManualRequest | ManualError | None:
    """The manual action in ``annotations``, an error for an unknown one, or None."""
    raw = annotations.get(ACTION_ANNOTATION)
    if not raw:
        return None
    try:
        action = ManualAction(raw.strip())
    except ValueError:
        known = ", ".join(a.value for a in ManualAction)
        return ManualError(f"unknown action {raw!r} in {ACTION_ANNOTATION} (known: {known})")
    action_id = annotations.get(ACTION_ID_ANNOTATION) or f"{action.value}"
    return ManualRequest(action, action_id, annotations.get(ACTION_REASON_ANNOTATION, ""))
