"""Which samples are evidence for the rollout now in status, and under which cohort.

Evidence belongs to the revision and the baseline that earned it:

- nothing stamped before the rollout (re)started counts (a restart after a canary
  change, a drift of the target or a retry starts from fresh evidence);
- a **canary sample that names its revision** counts only for that revision: samples of
  an old canary, even stamped after the change, never touch the new one;
- a **canary sample without a revision** (an application that does not report
  ``CANARY_REVISION``) is attributed by time: it counts only from ``settle`` after the
  current revision's canary was first fully available (every old pod gone), never before;
- a **baseline sample** counts from when the baseline's pods were all current (after a
  drift of the target, from its rollout plus ``settle``): evidence never mixes baselines;
- during a **bake** the new version runs in the target and the previous one in the
  holdback, so cohorts are told apart by revision only: a sample of the promoted
  revision is canary, a sample of the holdback's revision is baseline, anything else
  (unrevisioned included) is ignored.

The window is fixed once analysis starts for a revision (``canaryEvidenceSince`` and
``baselineEvidenceSince`` are set once), so a sample is admitted or not for good, and the
statistics' ``replace`` of a judged sample always matches its ``add``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.models import CanaryRuleStatus, Cohort, Phase, Sample


@dataclass(frozen=True)
class Evidence:
    since: datetime
    revision: str
    canary_since: datetime | None
    """Unrevisioned canary samples count from here; None: never."""
    baseline_since: datetime
    baseline_revision: str | None = None
    """During a bake: baseline samples must carry this revision (the holdback's)."""
    by_revision: bool = False
    """During a bake: cohorts are told apart by revision, whatever a sample reports."""
    step: int = 0
    step_since: datetime | None = None
    """When the current step's pods were all available (its own window starts there)."""

    def admit(self, sample: Sample) -> Sample | None:
        """The sample as it counts (its cohort possibly reassigned), or None."""
        if sample.ts < self.since:
            return None
        if self.by_revision:
            return self._by_revision(sample)
        if sample.cohort is Cohort.CANARY:
            if sample.revision is not None:
                return sample if sample.revision == self.revision else None
            ok = self.canary_since is not None and sample.ts >= self.canary_since
            return sample if ok else None
        return sample if sample.ts >= self.baseline_since else None

    def _by_revision(self, sample: Sample) -> Sample | None:
        if sample.revision == self.revision:
            return _as(sample, Cohort.CANARY)
        if self.baseline_revision is not None and sample.revision == self.baseline_revision \
                and sample.ts >= self.baseline_since:
            return _as(sample, Cohort.BASELINE)
        return None


def _as(sample: Sample, cohort: Cohort) -> Sample:
    return sample if sample.cohort is cohort else sample.model_copy(update={"cohort": cohort})


def evidence(status: CanaryRuleStatus) -> Evidence | None:
    """The evidence window for the rollout in ``status``; None while nothing may be
    analysed (not progressing or baking, or the pods it compares are not all there)."""
    s = status
    if s.canary_revision is None:
        return None
    if s.phase is Phase.PROGRESSING:
        if s.started_at is None or s.canary_ready_at is None or \
                s.baseline_evidence_since is None:
            return None
        return Evidence(since=s.started_at, revision=s.canary_revision,
                        canary_since=s.canary_evidence_since,
                        baseline_since=max(s.started_at, s.baseline_evidence_since),
                        step=s.current_step, step_since=s.step_ready_at or s.step_started_at)
    if s.phase is Phase.BAKING:
        if s.bake_started_at is None or s.baseline_evidence_since is None:
            return None
        return Evidence(since=s.bake_started_at, revision=s.canary_revision,
                        canary_since=None, baseline_since=s.baseline_evidence_since,
                        baseline_revision=s.stable_revision, by_revision=True,
                        step=0, step_since=s.bake_started_at)
    return None
