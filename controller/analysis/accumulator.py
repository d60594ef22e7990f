"""Per-rule sufficient statistics: samples in, per cohort × slice × measure stats out.

Metric definitions per sample (the README's metric table says the same in prose);
"does not count" means the sample is left out of that metric's denominator:

- ``taskSuccess``: judged samples only (an unjudged sample is neither a success nor a
  failure): ``judge.score >= threshold``, the threshold from
  :func:`controller.models.success_threshold` (per task/queue, else ``judge.threshold``,
  else 0.7). Weighted by the verdict's ``sampling_weight`` (Hájek).
- ``trustedCompletion``: judged samples only: success AND the policy check passed AND
  not served by the fallback path (unless ``trusted.allowFallback``) AND correction
  minutes absent or ``<= trusted.maxCorrectionMinutes`` AND latency and cost within the
  budgets for the sample's task/queue/risk (most specific wins; unset budgets are not
  checked, and ``validate`` warns). An unknown policy result (neither the sample nor
  the judge says) is untrusted by default; ``trusted.unknownPolicy`` may count it as
  trusted or leave the sample out. An unknown cost (``cost_usd`` null: no price for the
  model) under a cost budget leaves the sample out, like an unjudged one: it cannot be
  shown to be within budget, and counting it either way would bias the cohort whose
  model has no price. Weighted like task success.
- ``correctionBurden``: human edit minutes **per output**. An output's burden is known
  once its feedback window closed (``feedback_closed``, set by the controller, or by
  the replay, ``analysis.feedbackWindow`` after ``ts``): its ``correction_minutes``,
  or 0 when no correction came. Outputs still inside their window are pending and do
  not count, even when an edit already arrived: services usually report only edits,
  and counting those early would weigh the edited minority. With
  ``analysis.feedbackComplete`` (services send feedback for every output, 0 included)
  an output counts as soon as ``correction_minutes`` is known. ``per:
  acceptedOutput``: the same over outputs not discarded (``accepted`` is not false).
- ``fallbackRate``: every sample, 1 if the fallback path served it.
- ``policyFailureRate``: ``sample.policy_violation``, else the judge's flag (weighted
  by the verdict's sampling weight); samples where both are unknown do not count.
- ``f1``, ``precision``, ``recall``, ``fbeta``: samples with a label and a decision
  (``sample.decision``, else the judge's, then weighted), kept as one confusion matrix
  per task kind (:mod:`.classification` averages per-task values).
- ``latency`` / ``cost``: ``latency_ms`` / ``cost_usd`` of every sample; for a mean,
  clipped at ``analysis.plausibilityCap`` (winsorised; clipped values are counted); for
  a quantile, binned in a log-spaced histogram. Samples of unknown cost are left out of
  ``cost`` (a cohort with none known is ``no_data``: the cost guard holds the rollout,
  it never passes on missing prices).
- ``prometheus``: not from samples; the controller feeds cohort counts with
  :meth:`RuleStatistics.set_counts` and resets them at every traffic step.

Measures. Cells are kept per *measure* — what the guards need stored — rather than per
metric: ``latency`` (moments) and ``latency:hist`` (histogram) for mean and quantile
guards, ``correctionBurden`` and ``correctionBurden:accepted``, and one ``decisions``
measure (per-task confusion matrices) shared by F1, precision, recall and F-beta.

Slices: ``all``, plus ``queue=<q>`` / ``risk=<r>`` for each ``groupBy`` dimension of a
guard on that measure, plus ``task=<t>`` for the decision metrics (read from the
per-task matrices, not stored twice). Values are ranked by first appearance and the
rank is stored with the statistics (``groups``), so it survives
``to_dict``/``from_dict``. The first ``analysis.maxGroups`` values of a dimension are
tested as their own slices; every later value is pooled into ``<dim>=(other)`` when
the statistics are read. A value's rank never changes, so each tested slice is one
fixed stream (which the sequential tests need) and the pooling is deterministic.
Statistics are stored per value for up to ``MAX_TRACKED`` (64, the largest
``maxGroups``) values per dimension, which keeps ``merge`` exact and associative
(the merged rank order is the left order followed by the right's new values);
values beyond that are stored pooled.

Steps. The caller says which traffic step the rollout is at with
:meth:`RuleStatistics.enter_step` (its index, its start time and the rollout's); the
history is kept (:mod:`.steps`). The moments measures (rates and means) are stored per
**stratum**: the step a sample's timestamp falls in (samples without a time count as
current; without any step, one stratum). The pooled moments are their sum; the
comparisons are stratified (:mod:`.strata`), so a base rate that drifts while the
canary's share changes between steps cannot bias them. Besides, for the current step
only: its histograms (the quantile guards' step window), the number of samples per
cohort (``minSamplesPerStep``), and per analysis interval of the step (a **bucket**:
``floor((ts − step start)/interval)``, the last ``MAX_STARTS`` kept) the all-traffic
moments, the start times of the change detector (:mod:`.changes`). A new step index
clears these. Delayed feedback swaps a contribution in its own stratum and bucket
(the same timestamp), exactly; a bucket already forgotten is not touched. Statistics
rebuilt in the middle of a rollout know only the current step: earlier samples share
one ``pre`` stratum.

Traffic mix: per dimension of ``analysis.trafficMix``, the samples per cohort and value
of the current step's window (every sample when no step is known, as in a replay); a
new step clears them (the canary's share changes with the weight), and so does
:meth:`RuleStatistics.reset_mix`. Feedback (``replace``) leaves them unchanged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from controller.models import (
    CanaryRuleSpec,
    Cohort,
    Guard,
    Metric,
    Sample,
    guard_dimensions,
    parse_duration,
    success_threshold,
)
from controller.models.rule import QUANTILE_METRICS

from .changes import MAX_STARTS
from .stats import NO_TASK, Confusion, Histogram, Moments, TaskConfusions
from .steps import NO_STEP, PRE, StepClock

OTHER = "(other)"
MAX_TRACKED = 64
ALL = "all"
FORMAT_VERSION = 3
COHORTS = (Cohort.BASELINE.value, Cohort.CANARY.value)
BASE, CAN = COHORTS
DIMENSIONS = ("queue", "risk", "task")
DECISIONS = "decisions"
HIST = ":hist"
ACCEPTED = "correctionBurden:accepted"
TOTAL = "*"  # the traffic-mix counts' key for all samples


class StatisticsMismatch(ValueError):
    """Stored statistics were computed under different metric definitions (the rule's
    threshold, budgets or slicing changed): rebuild them from the samples."""


@dataclass(frozen=True)
class Counts:
    """Event counts per cohort for a Prometheus guard, for the current traffic step."""

    canary_events: float
    baseline_events: float
    share: float | None = None
    canary_total: float | None = None
    baseline_total: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "canaryEvents": self.canary_events,
            "baselineEvents": self.baseline_events,
            "share": self.share,
            "canaryTotal": self.canary_total,
            "baselineTotal": self.baseline_total,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        def opt(key: str) -> float | None:
            v = d.get(key)
            return None if v is None else float(v)

        return cls(float(d["canaryEvents"]), float(d["baselineEvents"]), opt("share"),
                   opt("canaryTotal"), opt("baselineTotal"))


def slice_key(dim: str | None, value: str | None) -> str:
    return ALL if dim is None else f"{dim}={value}"


def parse_slice(key: str) -> tuple[str | None, str | None]:
    """``"queue=billing"`` → ("queue", "billing"); ``"all"`` → (None, None)."""
    if key == ALL:
        return None, None
    dim, _, value = key.partition("=")
    return dim, value


# ---- per-sample definitions -------------------------------------------------------------

def measure_of(g: Guard) -> str:
    """The stored measure a guard reads."""
    if g.metric.from_decisions:
        return DECISIONS
    if g.metric in QUANTILE_METRICS and g.quantile is not None:
        return g.metric.value + HIST
    if g.metric is Metric.CORRECTION_BURDEN and g.per == "acceptedOutput":
        return ACCEPTED
    return g.metric.value


def _kind(measure: str) -> type[Cell]:
    if measure == DECISIONS:
        return TaskConfusions
    return Histogram if measure.endswith(HIST) else Moments


def policy_violation(s: Sample) -> bool | None:
    if s.policy_violation is not None:
        return s.policy_violation
    return s.judge.policy_violation if s.judge is not None else None


def is_success(spec: CanaryRuleSpec, s: Sample) -> bool | None:
    """Task success of a judged sample (None when unjudged)."""
    if s.judge is None:
        return None
    return s.judge.score >= success_threshold(spec.judge, s.task, s.queue)


def trusted_completion(spec: CanaryRuleSpec, s: Sample) -> bool | None:
    """Trusted task completion (None: the sample does not count)."""
    success = is_success(spec, s)
    if success is None:
        return None
    t = spec.analysis.trusted
    violation = policy_violation(s)
    if violation is None:
        if t.unknown_policy == "exclude":
            return None
        policy_ok = t.unknown_policy == "trusted"
    else:
        policy_ok = not violation
    latency, cost = t.budgets_for(s.task, s.queue, s.risk.value)
    if cost is not None and s.cost_usd is None:
        return None  # unknown cost under a cost budget: cannot be shown within it
    return (
        success
        and policy_ok
        and (t.allow_fallback or not s.fallback)
        and (s.correction_minutes is None or s.correction_minutes <= t.max_correction_minutes)
        and (latency is None or s.latency_ms <= latency)
        and (cost is None or (s.cost_usd or 0.0) <= cost)
    )


def correction_burden(spec: CanaryRuleSpec, s: Sample) -> float | None:
    """Correction minutes of one output once known (see the module docstring)."""
    if s.feedback_closed:
        return s.correction_minutes if s.correction_minutes is not None else 0.0
    if spec.analysis.feedback_complete and s.correction_minutes is not None:
        return s.correction_minutes
    return None


def _judge_weight(s: Sample) -> float:
    return s.judge.sampling_weight if s.judge is not None else 1.0


def _capped(x: float | None, cap: float | None) -> tuple[float, float, bool] | None:
    if x is None:
        return None
    if cap is not None and not x <= cap:
        return cap, 1.0, True
    return x, 1.0, False


_FALLBACK, _LATENCY, _COST = "fallbackRate", "latency", "cost"
_BURDEN, _POLICY = "correctionBurden", "policyFailureRate"
_SUCCESS, _TRUSTED = "taskSuccess", "trustedCompletion"


def measure_value(
    spec: CanaryRuleSpec, measure: str, s: Sample
) -> tuple[float, float, bool] | None:
    """(value, weight, clipped) of a sample for a moments measure, or None when the
    sample does not count. Pure: a function of the sample and the rule alone."""
    caps = spec.analysis.plausibility_cap
    if measure == _FALLBACK:
        return float(s.fallback), 1.0, False
    if measure == _LATENCY:
        return _capped(s.latency_ms, caps.latency_ms)
    if measure == _COST:
        return _capped(s.cost_usd, caps.cost_usd)
    if measure in (_BURDEN, ACCEPTED):
        if measure == ACCEPTED and s.accepted is False:
            return None
        return _capped(correction_burden(spec, s), caps.correction_minutes)
    if measure == _POLICY:
        if s.policy_violation is not None:
            return float(s.policy_violation), 1.0, False
        v = policy_violation(s)
        return None if v is None else (float(v), _judge_weight(s), False)
    if measure == _SUCCESS:
        ok = is_success(spec, s)
    elif measure == _TRUSTED:
        ok = trusted_completion(spec, s)
    else:
        raise ValueError(f"{measure} is not a scalar sample measure")
    return None if ok is None else (float(ok), _judge_weight(s), False)


def metric_value(spec: CanaryRuleSpec, metric: Metric, s: Sample) -> float | None:
    """The sample's contribution to a scalar metric (its default variant), or None when
    it does not count."""
    got = measure_value(spec, metric.value, s)
    return None if got is None else got[0]


def f1_pair(s: Sample) -> tuple[str, str] | None:
    """(label, decision) when both are known."""
    decision = s.decision if s.decision is not None else (s.judge.decision if s.judge else None)
    if s.label is None or decision is None:
        return None
    return s.label, decision


def _decision_weight(s: Sample) -> float:
    """A decision the judge extracted carries the verdict's sampling weight."""
    return 1.0 if s.decision is not None else _judge_weight(s)


def _sample_dim_value(s: Sample, dim: str) -> str | None:
    if dim == "queue":
        return s.queue
    if dim == "risk":
        return s.risk.value
    return s.task


def _measure_dims(spec: CanaryRuleSpec) -> dict[str, list[str]]:
    """Slicing dimensions stored per measure, in a fixed order. The decisions measure
    keeps tasks inside its cells, so ``task`` is not a stored dimension."""
    dims: dict[str, list[str]] = {}
    for g in spec.analysis.guards:
        if g.metric is Metric.PROMETHEUS:
            continue
        cur = dims.setdefault(measure_of(g), [])
        cur.extend(d for d in guard_dimensions(g) if d not in cur and d != "task")
    return {m: [d for d in DIMENSIONS if d in ds] for m, ds in sorted(dims.items())}


def _mix_dims(spec: CanaryRuleSpec) -> list[str] | None:
    """Dimensions of the traffic-mix check; None when the check is off."""
    mix = spec.analysis.traffic_mix
    return [d for d in DIMENSIONS if d in mix.dimensions] if mix.enabled else None


def config_of(spec: CanaryRuleSpec) -> dict[str, Any]:
    """What the stored statistics depend on; a change invalidates them."""
    a = spec.analysis
    judge = spec.judge
    return {
        "threshold": success_threshold(judge),
        "thresholds": [o.model_dump(mode="json") for o in judge.thresholds] if judge else [],
        "trusted": a.trusted.model_dump(mode="json"),
        "feedbackComplete": a.feedback_complete,
        "plausibilityCap": a.plausibility_cap.model_dump(mode="json"),
        "maxGroups": a.max_groups,
        "measures": _measure_dims(spec),
        "mix": _mix_dims(spec),
    }


Cell = Moments | Histogram | TaskConfusions
_DECISION_METRICS = frozenset(m.value for m in Metric if m.from_decisions)


class _Where(NamedTuple):
    """Where one sample's moments go besides the cumulative cells."""

    stratum: str  # its step (see .steps)
    in_window: bool  # in the current step
    bucket: int | None  # the current step's interval (change detector), if kept


class RuleStatistics:
    """Sufficient statistics for every guard of one rule, per cohort and slice."""

    def __init__(self, spec: CanaryRuleSpec) -> None:
        self.spec = spec
        self.config = config_of(spec)
        self.metric_dims: dict[str, list[str]] = self.config["measures"]
        self.mix_on = self.config["mix"] is not None
        self.mix_dims: list[str] = list(self.config["mix"] or [])
        self.max_groups = spec.analysis.max_groups
        self.groups: dict[str, list[str]] = {}
        self.cells: dict[str, dict[str, dict[str, Cell]]] = {}
        self.n_samples: dict[str, int] = {c: 0 for c in COHORTS}
        self.counts: dict[str, Counts] = {}
        # dim → value slot → [baseline, canary], since the last reset_mix()
        self.mix: dict[str, dict[str, list[int]]] = {}
        used = {d for ds in self.metric_dims.values() for d in ds} | set(self.mix_dims)
        if DECISIONS in self.metric_dims:
            used.add("task")
        self._used = [d for d in DIMENSIONS if d in used]
        self._kinds = {m: _kind(m) for m in self.metric_dims}
        self.clock = StepClock(parse_duration(spec.analysis.interval))
        # moments measures: step key → measure → slice → cohort (the strata)
        self.strata: dict[str, dict[str, dict[str, dict[str, Moments]]]] = {}
        # the current step: histograms of its own samples (the quantile window), and
        # per interval bucket the all-traffic moments (the change detector's starts)
        self.window: dict[str, dict[str, Cell]] = {}
        self.window_samples: dict[str, int] = {c: 0 for c in COHORTS}
        self.buckets: dict[int, dict[str, dict[str, Moments]]] = {}

    @property
    def step(self) -> int | None:
        """The current step (0-based), None when never told."""
        return self.clock.step

    @property
    def step_started(self) -> datetime | None:
        return self.clock.started

    # ---- traffic steps ----------------------------------------------------------------
    def enter_step(self, index: int, started_at: datetime | None = None, *,
                   rollout_started_at: datetime | None = None) -> bool:
        """The rollout is at step ``index`` (0-based) since ``started_at`` (the rollout
        itself since ``rollout_started_at``); a new index starts a fresh window, fresh
        change-detector buckets and fresh traffic-mix counts, and opens a new stratum.
        Idempotent: call it every analysis with the status's current step. Returns True
        when a new window began."""
        if index < 0:
            raise ValueError("step index must be >= 0")
        if not self.clock.enter(index, started_at, rollout_started_at):
            return False
        self.window = {}
        self.window_samples = {c: 0 for c in COHORTS}
        self.buckets = {}
        self.reset_mix()
        return True

    def _in_window(self, s: Sample) -> bool:
        return self.clock.in_current(s.ts)

    def window_moments(self, metric: Metric | str, cohort: Cohort | str) -> Moments:
        """All-traffic moments of a metric over the current step's samples."""
        if self.step is None:
            return Moments()
        cell = self.strata.get(str(self.step), {}).get(self._measure(metric), {}).get(
            ALL, {}).get(str(cohort))
        return cell if cell is not None else Moments()

    def window_statistics(self) -> RuleStatistics:
        """The current step's own samples as statistics of their own (all-traffic cells
        only), so the same tests run on them."""
        out = RuleStatistics(self.spec)
        for measure, by_cohort in self.window.items():
            out.cells[measure] = {ALL: {c: _merge_cells(_kind(measure)(), cell)
                                        for c, cell in by_cohort.items()}}
        if self.step is not None:
            own = self.strata.get(str(self.step), {})
            out.strata = {NO_STEP: {m: {ALL: {c: Moments().merge(cell)
                                              for c, cell in bk.get(ALL, {}).items()}}
                                    for m, bk in own.items()}}
        out.n_samples = dict(self.window_samples)
        return out

    def strata_moments(self, metric: Metric | str, key: str) -> list[tuple[Moments, Moments]]:
        """(canary, baseline) moments of one tested slice per stratum (step), in step
        order, for the strata where both cohorts have observations."""
        measure = self._measure(metric)
        out = []
        for sk in self._strata_order():
            c = self._moments_view(self.strata[sk].get(measure, {}), key, CAN)
            b = self._moments_view(self.strata[sk].get(measure, {}), key, BASE)
            if c.n and b.n:
                out.append((c, b))
        return out

    def _strata_order(self) -> list[str]:
        order = [PRE, NO_STEP] + [str(i) for i, _ in self.clock.history]
        seen = [k for k in dict.fromkeys(order) if k in self.strata]
        return seen + sorted(k for k in self.strata if k not in seen)

    def change_buckets(self, metric: Metric | str) -> list[tuple[int, int, Moments, Moments]]:
        """The current step's buckets for a moments measure: (bucket, slot, canary,
        baseline) moments of all traffic, oldest first (the detector's start times)."""
        measure = self._measure(metric)
        out = []
        for b in sorted(self.buckets):
            cells = self.buckets[b].get(measure, {})
            out.append((b, self.clock.slot(b), cells.get(CAN, Moments()),
                        cells.get(BASE, Moments())))
        return out

    # ---- samples -------------------------------------------------------------------
    def add(self, sample: Sample) -> None:
        self._apply(sample, +1)

    def remove(self, sample: Sample) -> None:
        """Retract a sample added earlier (pass the exact old version)."""
        self._apply(sample, -1)

    def replace(self, old: Sample, new: Sample) -> None:
        """Delayed feedback (or a closed feedback window): swap a sample's old
        contribution for its new one. The traffic-mix counts are left alone."""
        self._apply(old, -1, mix=False)
        self._apply(new, +1, mix=False)

    def _slot(self, dim: str, value: str, assign: bool) -> str:
        """Storage slot of a value: itself while tracked, else the stored pool."""
        values = self.groups.setdefault(dim, [])
        if value in values:
            return value
        if assign and len(values) < MAX_TRACKED:
            values.append(value)
            return value
        return OTHER

    def _apply(self, s: Sample, sign: int, mix: bool = True) -> None:
        cohort = s.cohort.value
        if sign < 0 and self.n_samples[cohort] <= 0:
            raise ValueError(f"cannot remove sample {s.id!r}: no {cohort} samples")
        in_window = self._in_window(s)
        if in_window and sign < 0 and self.window_samples[cohort] <= 0:
            in_window = False  # added before the window began (delayed feedback)
        slots: dict[str, str | None] = dict.fromkeys(DIMENSIONS)
        for dim in self._used:
            v = _sample_dim_value(s, dim)
            slots[dim] = None if v is None else self._slot(dim, v, assign=sign > 0)
        where = _Where(self.clock.stratum(s.ts), in_window,
                       self._bucket_for(s.ts, sign) if in_window else None)
        for measure, dims in self.metric_dims.items():
            keys = [ALL] + [slice_key(d, slots[d]) for d in dims if slots[d] is not None]
            self._apply_measure(measure, keys, cohort, s, slots["task"], sign, where)
        if mix and self.mix_on and (self.step is None or in_window):
            self._apply_mix(slots, cohort, sign)
        self.n_samples[cohort] += sign
        if in_window:
            self.window_samples[cohort] += sign

    def _bucket_for(self, ts: datetime | None, sign: int) -> int | None:
        """The detector bucket of a current-step sample (creating it for a new sample,
        forgetting buckets older than :data:`.changes.MAX_STARTS`); None when the
        bucket was already forgotten."""
        b = self.clock.bucket(ts)
        if b is None:  # no time: the latest bucket
            b = max(self.buckets, default=0)
        newest = max(self.buckets, default=b)
        if b < newest - MAX_STARTS + 1 or (sign < 0 and b not in self.buckets):
            return None
        if b > newest:
            for old in [k for k in self.buckets if k < b - MAX_STARTS + 1]:
                del self.buckets[old]
        self.buckets.setdefault(b, {})
        return b

    def _apply_measure(self, measure: str, keys: list[str], cohort: str, s: Sample,
                       task: str | None, sign: int, where: _Where) -> None:
        kind = self._kinds[measure]
        if kind is TaskConfusions:
            pair = f1_pair(s)
            if pair is None:
                return
            w = _decision_weight(s)
            for key in keys:
                tc = self._cell(measure, key, cohort, TaskConfusions)
                assert isinstance(tc, TaskConfusions)
                (tc.add if sign > 0 else tc.remove)(task or NO_TASK, *pair, w)
            return
        if kind is Histogram:
            x = s.latency_ms if measure.startswith(_LATENCY) else s.cost_usd
            if x is None:  # unknown cost
                return
            cells = [self._cell(measure, key, cohort, Histogram) for key in keys]
            if where.in_window:
                cells.append(self.window.setdefault(measure, {}).setdefault(cohort, Histogram()))
            for h in cells:
                assert isinstance(h, Histogram)
                (h.add if sign > 0 else h.remove)(x)
            return
        got = measure_value(self.spec, measure, s)
        if got is None:
            return
        by_key = self.strata.setdefault(where.stratum, {}).setdefault(measure, {})
        moms = [by_key.setdefault(key, {}).setdefault(cohort, Moments()) for key in keys]
        if where.bucket is not None:
            moms.append(self.buckets[where.bucket].setdefault(measure, {}).setdefault(
                cohort, Moments()))
        for mom in moms:
            (mom.add if sign > 0 else mom.remove)(*got)

    def fold(self, cohort: Cohort | str, n_samples: int, cells: dict[str, Cell],
             at: datetime | None = None) -> None:
        """Add pre-aggregated all-traffic statistics of ``n_samples`` samples of one
        cohort stamped ``at``, keyed by measure (planning and simulation: the same
        decision without building samples). Only the ``all`` slice, the stratum and,
        in the current step, the window and the detector bucket receive them."""
        c = str(cohort)
        current = self.step is not None and self.clock.in_current(at)
        bucket = self._bucket_for(at, +1) if current else None
        for measure, cell in cells.items():
            if isinstance(cell, Moments):
                by_key = self.strata.setdefault(self.clock.stratum(at), {}).setdefault(
                    measure, {}).setdefault(ALL, {})
                by_key[c] = by_key[c].merge(cell) if c in by_key else Moments().merge(cell)
                if bucket is not None:
                    mine = self.buckets[bucket].setdefault(measure, {})
                    mine[c] = mine[c].merge(cell) if c in mine else Moments().merge(cell)
                continue
            old = self._cell(measure, ALL, c, type(cell))
            self.cells[measure][ALL][c] = _merge_cells(old, cell)
            if current and isinstance(cell, Histogram):
                win = self.window.setdefault(measure, {}).get(c)
                self.window[measure][c] = cell if win is None else _merge_cells(win, cell)
        self.n_samples[c] += n_samples
        if current:
            self.window_samples[c] += n_samples

    def _apply_mix(self, slots: dict[str, str | None], cohort: str, sign: int) -> None:
        col = COHORTS.index(cohort)
        total = self.mix.setdefault(TOTAL, {}).setdefault(ALL, [0, 0])
        total[col] = max(0, total[col] + sign)
        for dim in self.mix_dims:
            value = slots[dim]
            row = self.mix.setdefault(dim, {}).setdefault(value or NO_TASK, [0, 0])
            row[col] = max(0, row[col] + sign)  # a sample counted before a reset

    def _cell(self, measure: str, key: str, cohort: str, kind: type[Cell]) -> Cell:
        by_cohort = self.cells.setdefault(measure, {}).setdefault(key, {})
        cell = by_cohort.get(cohort)
        if cell is None:
            cell = by_cohort[cohort] = kind()
        return cell

    # ---- traffic mix --------------------------------------------------------------------
    def reset_mix(self) -> None:
        """Start counting the traffic mix afresh: call at every traffic step (the
        canary's share changes with the weight)."""
        self.mix = {}

    def mix_total(self) -> tuple[int, int]:
        """(baseline, canary) samples since the last reset (the share check's counts)."""
        b, c = self.mix.get(TOTAL, {}).get(ALL, [0, 0])
        return b, c

    def mix_counts(self, dim: str) -> dict[str, tuple[int, int]]:
        """(baseline, canary) samples per tested value of a dimension since the last
        reset, values ranked after ``maxGroups`` pooled into ``(other)``."""
        ranked = self.groups.get(dim, [])[: self.max_groups]
        out: dict[str, tuple[int, int]] = {}
        for value, (b, c) in self.mix.get(dim, {}).items():
            key = value if value in ranked or value == NO_TASK else OTHER
            ob, oc = out.get(key, (0, 0))
            out[key] = (ob + b, oc + c)
        return out

    # ---- Prometheus counts ------------------------------------------------------------
    def set_counts(
        self,
        guard: str,
        *,
        canary_events: float,
        baseline_events: float,
        share: float | None = None,
        canary_total: float | None = None,
        baseline_total: float | None = None,
    ) -> None:
        """Event counts for a ``prometheus`` guard since the current traffic step began.

        ``share`` is the canary's traffic share (0..1), needed when totals are unknown.
        Counts are cumulative for the step; call :meth:`clear_counts` on a step change.
        """
        names = {g.name for g in self.spec.analysis.guards if g.metric is Metric.PROMETHEUS}
        if guard not in names:
            raise KeyError(f"no prometheus guard named {guard!r}")
        if min(canary_events, baseline_events) < 0:
            raise ValueError("event counts must be >= 0")
        if (canary_total is None) != (baseline_total is None):
            raise ValueError("give both totals or neither")
        if canary_total is None and (share is None or not 0.0 < share < 1.0):
            raise ValueError("without totals a traffic share in (0, 1) is required")
        self.counts[guard] = Counts(canary_events, baseline_events, share, canary_total,
                                    baseline_total)

    def clear_counts(self, guard: str | None = None) -> None:
        """Forget Prometheus counts (all guards, or one): count tests restart per step."""
        if guard is None:
            self.counts.clear()
        else:
            self.counts.pop(guard, None)

    # ---- queries ------------------------------------------------------------------------
    def _measure(self, metric: Metric | str) -> str:
        name = str(metric)
        return DECISIONS if name in _DECISION_METRICS else name

    def _task_groups(self) -> dict[str, str]:
        """Task slot → tested task group (ranked after maxGroups → ``(other)``)."""
        return {t: OTHER for t in self.groups.get("task", [])[self.max_groups:]}

    def _view(self, measure: str, key: str, cohort: str) -> Cell | None:
        """A slice as tested: a named value, or ``(other)`` = every value ranked after
        ``maxGroups`` plus the stored pool. Task slices come from the all-traffic
        per-task matrices; per-task matrices are pooled the same way. Moments are the
        sum over the strata."""
        if self._kinds.get(measure) is Moments:
            out_m = Moments()
            for by_measure in self.strata.values():
                out_m = out_m.merge(self._moments_view(by_measure.get(measure, {}), key,
                                                       cohort))
            return out_m if out_m.n else None
        by_key = self.cells.get(measure, {})
        dim, value = parse_slice(key)
        if measure == DECISIONS and dim == "task":
            cell = by_key.get(ALL, {}).get(cohort)
            if not isinstance(cell, TaskConfusions):
                return None
            one = cell.regrouped(self._task_groups()).tasks.get(str(value))
            return None if one is None else TaskConfusions({str(value): one})
        out = self._pooled(by_key, key, cohort)
        if isinstance(out, TaskConfusions):
            return out.regrouped(self._task_groups())
        return out

    def _pooled(self, by_key: dict[str, Any], key: str, cohort: str) -> Any:
        """The stored cell of a slice, with ``(other)`` pooling every value ranked after
        ``maxGroups`` and the stored pool."""
        dim, value = parse_slice(key)
        if dim is None or value != OTHER:
            return by_key.get(key, {}).get(cohort)
        out = None
        parts = [by_key.get(slice_key(dim, v), {}).get(cohort)
                 for v in self.groups.get(dim, [])[self.max_groups:]]
        parts.append(by_key.get(key, {}).get(cohort))
        for part in parts:
            if part is not None:
                out = part if out is None else _merge_cells(out, part)
        return out

    def _moments_view(self, by_key: dict[str, Any], key: str, cohort: str) -> Moments:
        got = self._pooled(by_key, key, cohort)
        return Moments().merge(got) if isinstance(got, Moments) else Moments()

    def moments(self, metric: Metric | str, key: str, cohort: Cohort | str) -> Moments:
        """Moments of one tested slice, all strata pooled (empty when there is no data)."""
        cell = self._view(self._measure(metric), key, str(cohort))
        return cell if isinstance(cell, Moments) else Moments()

    def histogram(self, measure: str, key: str, cohort: Cohort | str) -> Histogram:
        cell = self._view(measure, key, str(cohort))
        return cell if isinstance(cell, Histogram) else Histogram()

    def task_confusions(self, key: str, cohort: Cohort | str) -> TaskConfusions:
        cell = self._view(DECISIONS, key, str(cohort))
        return cell if isinstance(cell, TaskConfusions) else TaskConfusions()

    def confusion(self, metric: Metric | str, key: str, cohort: Cohort | str) -> Confusion:
        """All tasks of a slice pooled into one confusion matrix."""
        return self.task_confusions(key, cohort).pooled()

    def slices(self, metric: Metric | str, dims: list[str] | None = None) -> list[str]:
        """Tested slice keys with data for a measure: ``all`` first, then each
        dimension's named values in rank order, then its ``(other)`` pool."""
        measure = self._measure(metric)
        have = set(self.cells.get(measure, {}))
        for by_measure in self.strata.values():
            have |= {k for k, bc in by_measure.get(measure, {}).items()
                     if any(c.n for c in bc.values())}
        if measure == DECISIONS:
            for cell in self.cells.get(measure, {}).get(ALL, {}).values():
                assert isinstance(cell, TaskConfusions)
                have |= {slice_key("task", t) for t in cell.tasks if t != NO_TASK}
        out = [ALL]
        stored = self.metric_dims.get(measure, [])
        for dim in dims if dims is not None else stored + (
                ["task"] if measure == DECISIONS else []):
            ranked = self.groups.get(dim, [])
            out.extend(slice_key(dim, v) for v in ranked[: self.max_groups]
                       if slice_key(dim, v) in have)
            pooled = [*ranked[self.max_groups:], OTHER]
            if any(slice_key(dim, v) in have for v in pooled):
                out.append(slice_key(dim, OTHER))
        return out

    # ---- merge / serialisation -------------------------------------------------------------
    def merge(self, other: RuleStatistics) -> RuleStatistics:
        """Statistics of both sample sets (a new object; inputs unchanged)."""
        if other.config != self.config:
            raise StatisticsMismatch("cannot merge statistics of different rule configurations")
        out = copy.deepcopy(self)
        remap: dict[str, dict[str, str]] = {}
        for gdim, values in other.groups.items():
            remap[gdim] = {OTHER: OTHER, NO_TASK: NO_TASK}
            for v in values:
                remap[gdim][v] = out._slot(gdim, v, assign=True)

        def new_key(key: str) -> str:
            sdim, value = parse_slice(key)
            return key if sdim is None else slice_key(
                sdim, remap.get(sdim, {}).get(str(value), OTHER))

        out._merge_cells_of(other, remap, new_key)
        out._merge_strata_of(other, new_key)
        out._merge_mix_of(other, remap)
        for c in COHORTS:
            out.n_samples[c] += other.n_samples[c]
        if other.step is not None and other.step == out.step:
            out._merge_step_of(other)
        for g, cnt in other.counts.items():
            mine_c = out.counts.get(g)
            out.counts[g] = cnt if mine_c is None else _add_counts(mine_c, cnt)
        return out

    def _merge_cells_of(self, other: RuleStatistics, remap: dict[str, dict[str, str]],
                        new_key: Callable[[str], str]) -> None:
        """``other``'s cumulative cells into ours, its group slots renamed to ours."""
        for measure, by_key in other.cells.items():
            for key, by_cohort in by_key.items():
                for cohort, cell in by_cohort.items():
                    if isinstance(cell, TaskConfusions):
                        cell = cell.regrouped(remap.get("task", {}))
                    mine = self._cell(measure, new_key(key), cohort, type(cell))
                    self.cells[measure][new_key(key)][cohort] = _merge_cells(mine, cell)

    def _merge_strata_of(self, other: RuleStatistics, new_key: Callable[[str], str]) -> None:
        """``other``'s per-step strata into ours."""
        for sk, by_measure in other.strata.items():
            for measure, by_key_m in by_measure.items():
                for key, by_cohort_m in by_key_m.items():
                    dest = self.strata.setdefault(sk, {}).setdefault(measure, {}).setdefault(
                        new_key(key), {})
                    for cohort, mom in by_cohort_m.items():
                        dest[cohort] = (dest[cohort] if cohort in dest else Moments()).merge(mom)

    def _merge_mix_of(self, other: RuleStatistics, remap: dict[str, dict[str, str]]) -> None:
        """``other``'s traffic-mix counts into ours."""
        for dim, rows in other.mix.items():
            for value, (nb, nc) in rows.items():
                slot = value if dim == TOTAL else remap.get(dim, {}).get(value, OTHER)
                row = self.mix.setdefault(dim, {}).setdefault(slot, [0, 0])
                row[0] += nb
                row[1] += nc

    def _merge_step_of(self, other: RuleStatistics) -> None:
        """``other``'s current-step window (and, for the same step start, the change
        detector's buckets) into ours; both are at the same step."""
        for wmeasure, wcells in other.window.items():
            for wcohort, wcell in wcells.items():
                mine_w = self.window.setdefault(wmeasure, {}).get(wcohort)
                self.window[wmeasure][wcohort] = _merge_cells(
                    type(wcell)() if mine_w is None else mine_w, wcell)
        for c in COHORTS:
            self.window_samples[c] += other.window_samples[c]
        if other.step_started != self.step_started:
            return
        for b, by_measure_b in other.buckets.items():
            for measure, cells_b in by_measure_b.items():
                dest_b = self.buckets.setdefault(b, {}).setdefault(measure, {})
                for cohort, mom in cells_b.items():
                    dest_b[cohort] = (dest_b[cohort] if cohort in dest_b
                                      else Moments()).merge(mom)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (for ``status.statistics``)."""
        return {
            "version": FORMAT_VERSION,
            "config": self.config,
            "groups": {d: list(v) for d, v in self.groups.items()},
            "samples": dict(self.n_samples),
            "cells": {
                m: {k: {c: cell.to_dict() for c, cell in bc.items()} for k, bc in bk.items()}
                for m, bk in self.cells.items()
            },
            "counts": {g: c.to_dict() for g, c in self.counts.items()},
            "mix": {d: {v: list(bc) for v, bc in rows.items()} for d, rows in self.mix.items()},
            "strata": {sk: {m: {k: {c: mom.to_dict() for c, mom in bc.items()}
                                for k, bc in bk.items()} for m, bk in bm.items()}
                       for sk, bm in self.strata.items()},
            "clock": self.clock.to_dict(),
            **({} if self.step is None else {"step": {
                "samples": dict(self.window_samples),
                "cells": {m: {c: cell.to_dict() for c, cell in bc.items()}
                          for m, bc in self.window.items()},
                "buckets": {str(b): {m: {c: mom.to_dict() for c, mom in bc.items()}
                                     for m, bc in bm.items()}
                            for b, bm in self.buckets.items()},
            }}),
        }

    @classmethod
    def from_dict(cls, spec: CanaryRuleSpec, data: dict[str, Any]) -> RuleStatistics:
        """Restore; raises :class:`StatisticsMismatch` if the rule's metric definitions
        changed since the statistics were stored."""
        out = cls(spec)
        if data.get("version") != FORMAT_VERSION:
            raise StatisticsMismatch(f"unknown statistics format {data.get('version')!r}")
        # compare through JSON so tuples/lists and int/float spellings agree
        if json.loads(json.dumps(data.get("config"))) != json.loads(json.dumps(out.config)):
            raise StatisticsMismatch("rule metric definitions changed; rebuild from samples")
        out.groups = {str(d): [str(v) for v in vs] for d, vs in data.get("groups", {}).items()}
        out.n_samples = {c: int(data.get("samples", {}).get(c, 0)) for c in COHORTS}
        for m, bk in data.get("cells", {}).items():
            kind = _kind(m)
            for k, bc in bk.items():
                for c, cell in bc.items():
                    out.cells.setdefault(m, {}).setdefault(k, {})[c] = kind.from_dict(cell)
        out.counts = {g: Counts.from_dict(c) for g, c in data.get("counts", {}).items()}
        out.strata = {str(sk): {str(m): {str(k): {str(c): Moments.from_dict(v)
                                                  for c, v in bc.items()}
                                          for k, bc in bk.items()} for m, bk in bm.items()}
                      for sk, bm in data.get("strata", {}).items()}
        out.clock = StepClock.from_dict(out.clock.interval_s, data.get("clock", {}))
        step = data.get("step")
        if step is not None and out.step is not None:
            out.window_samples = {c: int(step.get("samples", {}).get(c, 0)) for c in COHORTS}
            out.window = {m: {c: _kind(m).from_dict(v) for c, v in bc.items()}
                          for m, bc in step.get("cells", {}).items()}
            if data.get("clock", {}).get("intervalS") == out.clock.interval_s:
                out.buckets = {int(b): {str(m): {str(c): Moments.from_dict(v)
                                                 for c, v in bc.items()}
                                        for m, bc in bm.items()}
                               for b, bm in step.get("buckets", {}).items()}
        out.mix = {str(d): {str(v): [int(bc[0]), int(bc[1])] for v, bc in rows.items()}
                   for d, rows in data.get("mix", {}).items()}
        return out


def _merge_cells(a: Cell, b: Cell) -> Cell:
    if isinstance(a, Moments) and isinstance(b, Moments):
        return a.merge(b)
    if isinstance(a, Histogram) and isinstance(b, Histogram):
        return a.merge(b)
    if isinstance(a, TaskConfusions) and isinstance(b, TaskConfusions):
        return a.merge(b)
    raise TypeError("one measure always has one cell type")


def _add_counts(a: Counts, b: Counts) -> Counts:
    def opt_sum(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else x + y

    return Counts(
        a.canary_events + b.canary_events,
        a.baseline_events + b.baseline_events,
        a.share if a.share is not None else b.share,
        opt_sum(a.canary_total, b.canary_total),
        opt_sum(a.baseline_total, b.baseline_total),
    )
