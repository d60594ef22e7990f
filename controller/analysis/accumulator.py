"""Per-rule sufficient statistics: samples in, per cohort × slice × metric stats out.

Metric definitions per sample (DESIGN §2); ``None`` means "this sample does not count":

- ``taskSuccess``: judged samples only; ``judge.score >= judge.threshold`` (0.7 without
  a judge spec).
- ``trustedCompletion``: judged samples only (an unjudged sample is never a success nor
  a failure): success AND no policy violation AND correction minutes absent or
  ``<= trusted.maxCorrectionMinutes`` AND latency within ``latencyBudgetMs`` AND cost
  within ``costBudgetUsd`` (budgets only when set). An unknown policy flag counts as
  "no violation" here — the judge checked the answer and did not flag it — whereas the
  policy metric below excludes such samples. An unknown cost (``cost_usd`` null: no
  price for the model) under a cost budget leaves the sample out, like an unjudged one:
  it cannot be shown to be within budget, and counting it either way would bias the
  cohort whose model has no price.
- ``correctionBurden``: samples with ``correction_minutes``: mean minutes.
- ``fallbackRate``: every sample, 1 if the fallback path served it.
- ``policyFailureRate``: ``sample.policy_violation``, else the judge's flag; samples
  where both are unknown are excluded (unknown is not "no violation").
- ``f1``: samples with a label and a decision (``sample.decision``, else the judge's).
- ``latency`` / ``cost``: ``latency_ms`` / ``cost_usd`` of every sample; samples of
  unknown cost are left out of ``cost`` (a cohort with none known is ``no_data``: the
  cost guard holds the rollout, it never passes on missing prices).
- ``prometheus``: not from samples; the controller feeds cohort counts with
  :meth:`RuleStatistics.set_counts` and resets them at every traffic step.

Slices: ``all``, plus ``queue=<q>`` / ``risk=<r>`` for each ``groupBy`` dimension of a
guard on that metric, plus ``task=<t>`` for F1. Values are ranked by first appearance
and the rank is stored with the statistics (``groups``), so it survives
``to_dict``/``from_dict``. The first ``analysis.maxGroups`` values of a dimension are
tested as their own slices; every later value is pooled into ``<dim>=(other)`` when
the statistics are read. A value's rank never changes, so each tested slice is one
fixed stream (which the sequential tests need) and the pooling is deterministic.
Per-step window: the caller says which traffic step the rollout is at with
:meth:`RuleStatistics.enter_step` (its index and start time). Beside the cumulative
cells, the statistics then keep the all-traffic moments of every sample metric over
the samples of the current step only (``ts`` at or after the step's start; a sample
without a time counts as current), and the number of samples per cohort in that
window. A new step index clears the window. The window serves two purposes in
:mod:`.decide`: advancing past a step needs new evidence gathered at that step's
weight (``minSamplesPerStep``), and a regression that only appears at a higher
weight is tested on that step's own samples, undiluted by the healthy history.
Without ``enter_step`` there is no window and the decision is today's.

Statistics are stored per value for up to ``MAX_TRACKED`` (64, the largest
``maxGroups``) values per dimension, which keeps ``merge`` exact and associative
(the merged rank order is the left order followed by the right's new values);
values beyond that are stored pooled.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.models import DEFAULT_THRESHOLD, CanaryRuleSpec, Cohort, Metric, Sample

from .stats import Confusion, Moments

OTHER = "(other)"
MAX_TRACKED = 64
ALL = "all"
FORMAT_VERSION = 1
COHORTS = (Cohort.BASELINE.value, Cohort.CANARY.value)
DIMENSIONS = ("queue", "risk", "task")


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


def metric_value(spec: CanaryRuleSpec, metric: Metric, s: Sample) -> float | None:
    """The sample's contribution to a scalar metric, or None when it does not count."""
    threshold = spec.judge.threshold if spec.judge is not None else DEFAULT_THRESHOLD
    if metric is Metric.FALLBACK_RATE:
        return float(s.fallback)
    if metric is Metric.LATENCY:
        return s.latency_ms
    if metric is Metric.COST:
        return s.cost_usd
    if metric is Metric.CORRECTION_BURDEN:
        return s.correction_minutes
    if metric is Metric.POLICY_FAILURE_RATE:
        v = policy_violation(s)
        return None if v is None else float(v)
    if s.judge is None:
        return None
    success = s.judge.score >= threshold
    if metric is Metric.TASK_SUCCESS:
        return float(success)
    if metric is Metric.TRUSTED_COMPLETION:
        t = spec.analysis.trusted
        if t.cost_budget_usd is not None and s.cost_usd is None:
            return None
        ok = (
            success
            and not policy_violation(s)
            and (s.correction_minutes is None or s.correction_minutes <= t.max_correction_minutes)
            and (t.latency_budget_ms is None or s.latency_ms <= t.latency_budget_ms)
            and (t.cost_budget_usd is None or (s.cost_usd or 0.0) <= t.cost_budget_usd)
        )
        return float(ok)
    raise ValueError(f"metric {metric} is not a scalar sample metric")


def policy_violation(s: Sample) -> bool | None:
    if s.policy_violation is not None:
        return s.policy_violation
    return s.judge.policy_violation if s.judge is not None else None


def f1_pair(s: Sample) -> tuple[str, str] | None:
    """(label, decision) when both are known."""
    decision = s.decision if s.decision is not None else (s.judge.decision if s.judge else None)
    if s.label is None or decision is None:
        return None
    return s.label, decision


def _sample_dim_value(s: Sample, dim: str) -> str | None:
    if dim == "queue":
        return s.queue
    if dim == "risk":
        return s.risk.value
    return s.task


def _metric_dims(spec: CanaryRuleSpec) -> dict[str, list[str]]:
    """Slicing dimensions to keep per sample metric, in a fixed order."""
    dims: dict[str, list[str]] = {}
    for g in spec.analysis.guards:
        if g.metric is Metric.PROMETHEUS:
            continue
        wanted = list(g.group_by) + (["task"] if g.metric is Metric.F1 else [])
        cur = dims.setdefault(g.metric.value, [])
        cur.extend(d for d in wanted if d not in cur)
    return {m: [d for d in DIMENSIONS if d in ds] for m, ds in sorted(dims.items())}


def config_of(spec: CanaryRuleSpec) -> dict[str, Any]:
    """What the stored statistics depend on; a change invalidates them."""
    t = spec.analysis.trusted
    return {
        "threshold": spec.judge.threshold if spec.judge is not None else DEFAULT_THRESHOLD,
        "maxCorrectionMinutes": t.max_correction_minutes,
        "latencyBudgetMs": t.latency_budget_ms,
        "costBudgetUsd": t.cost_budget_usd,
        "maxGroups": spec.analysis.max_groups,
        "metrics": _metric_dims(spec),
    }


Cell = Moments | Confusion


class RuleStatistics:
    """Sufficient statistics for every guard of one rule, per cohort and slice."""

    def __init__(self, spec: CanaryRuleSpec) -> None:
        self.spec = spec
        self.config = config_of(spec)
        self.metric_dims: dict[str, list[str]] = self.config["metrics"]
        self.max_groups = spec.analysis.max_groups
        self.groups: dict[str, list[str]] = {}
        self.cells: dict[str, dict[str, dict[str, Cell]]] = {}
        self.n_samples: dict[str, int] = {c: 0 for c in COHORTS}
        self.counts: dict[str, Counts] = {}
        self.step: int | None = None
        self.step_started: datetime | None = None
        self.window: dict[str, dict[str, Moments]] = {}
        self.window_samples: dict[str, int] = {c: 0 for c in COHORTS}

    # ---- traffic steps ----------------------------------------------------------------
    def enter_step(self, index: int, started_at: datetime | None = None) -> bool:
        """The rollout is at step ``index`` (0-based) since ``started_at``; a new index
        starts a fresh window. Idempotent: call it every analysis with the status's
        current step. Returns True when a new window began."""
        if index < 0:
            raise ValueError("step index must be >= 0")
        if index == self.step:
            return False
        self.step, self.step_started = index, started_at
        self.window = {}
        self.window_samples = {c: 0 for c in COHORTS}
        return True

    def _in_window(self, s: Sample) -> bool:
        if self.step is None:
            return False
        return self.step_started is None or s.ts is None or s.ts >= self.step_started

    def window_moments(self, metric: Metric | str, cohort: Cohort | str) -> Moments:
        """All-traffic moments of a metric over the current step's samples."""
        return self.window.get(str(metric), {}).get(str(cohort)) or Moments()

    def window_statistics(self) -> RuleStatistics:
        """The current step's window as statistics of its own (all-traffic cells only),
        so the same tests run on it."""
        out = RuleStatistics(self.spec)
        for metric, by_cohort in self.window.items():
            copied: dict[str, Cell] = {c: Moments(m.n, m.shift, m.s1, m.s2)
                                       for c, m in by_cohort.items()}
            out.cells[metric] = {ALL: copied}
        out.n_samples = dict(self.window_samples)
        return out

    # ---- samples -------------------------------------------------------------------
    def add(self, sample: Sample) -> None:
        self._apply(sample, +1)

    def remove(self, sample: Sample) -> None:
        """Retract a sample added earlier (pass the exact old version)."""
        self._apply(sample, -1)

    def replace(self, old: Sample, new: Sample) -> None:
        """Delayed feedback: swap a sample's old contribution for its new one."""
        self.remove(old)
        self.add(new)

    def _slot(self, dim: str, value: str, assign: bool) -> str:
        """Storage slot of a value: itself while tracked, else the stored pool."""
        values = self.groups.setdefault(dim, [])
        if value in values:
            return value
        if assign and len(values) < MAX_TRACKED:
            values.append(value)
            return value
        return OTHER

    def _apply(self, s: Sample, sign: int) -> None:
        cohort = s.cohort.value
        if sign < 0 and self.n_samples[cohort] <= 0:
            raise ValueError(f"cannot remove sample {s.id!r}: no {cohort} samples")
        in_window = self._in_window(s)
        if in_window and sign < 0 and self.window_samples[cohort] <= 0:
            in_window = False  # added before the window began (delayed feedback)
        slots: dict[str, str | None] = {}
        used = {d for ds in self.metric_dims.values() for d in ds}
        for dim in DIMENSIONS:
            v = _sample_dim_value(s, dim) if dim in used else None
            slots[dim] = None if v is None else self._slot(dim, v, assign=sign > 0)
        for metric, dims in self.metric_dims.items():
            m = Metric(metric)
            keys = [ALL] + [slice_key(d, slots[d]) for d in dims if slots[d] is not None]
            if m is Metric.F1:
                pair = f1_pair(s)
                if pair is None:
                    continue
                for key in keys:
                    conf = self._cell(metric, key, cohort, Confusion)
                    assert isinstance(conf, Confusion)
                    (conf.add if sign > 0 else conf.remove)(*pair)
                continue
            x = metric_value(self.spec, m, s)
            if x is None:
                continue
            for key in keys:
                mom = self._cell(metric, key, cohort, Moments)
                assert isinstance(mom, Moments)
                (mom.add if sign > 0 else mom.remove)(x)
            if in_window:
                win = self.window.setdefault(metric, {}).setdefault(cohort, Moments())
                (win.add if sign > 0 else win.remove)(x)
        self.n_samples[cohort] += sign
        if in_window:
            self.window_samples[cohort] += sign

    def _cell(self, metric: str, key: str, cohort: str, kind: type[Cell]) -> Cell:
        by_cohort = self.cells.setdefault(metric, {}).setdefault(key, {})
        cell = by_cohort.get(cohort)
        if cell is None:
            cell = by_cohort[cohort] = kind()
        return cell

    def fold(self, cohort: Cohort | str, n_samples: int, cells: dict[str, Cell]) -> None:
        """Add pre-aggregated all-traffic statistics of ``n_samples`` samples of one
        cohort (planning and simulation: the same decision without building samples).
        Only the ``all`` slice and the step window receive them."""
        c = str(cohort)
        for metric, cell in cells.items():
            mine = self._cell(metric, ALL, c, type(cell))
            self.cells[metric][ALL][c] = _merge_cells(mine, cell)
            if self.step is not None and isinstance(cell, Moments):
                win = self.window.setdefault(metric, {}).get(c) or Moments()
                self.window[metric][c] = win.merge(cell)
        self.n_samples[c] += n_samples
        if self.step is not None:
            self.window_samples[c] += n_samples

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
    def _view(self, metric: str, key: str, cohort: str) -> Cell | None:
        """A slice as tested: a named value, or ``(other)`` = every value ranked after
        ``maxGroups`` plus the stored pool."""
        by_key = self.cells.get(metric, {})
        dim, value = parse_slice(key)
        if dim is None or value != OTHER:
            return by_key.get(key, {}).get(cohort)
        parts = [by_key.get(slice_key(dim, v), {}).get(cohort)
                 for v in self.groups.get(dim, [])[self.max_groups:]]
        parts.append(by_key.get(key, {}).get(cohort))
        out: Cell | None = None
        for part in parts:
            if part is None:
                continue
            out = part if out is None else _merge_cells(out, part)
        return out

    def moments(self, metric: Metric | str, key: str, cohort: Cohort | str) -> Moments:
        """Moments of one tested slice (empty when there is no data)."""
        cell = self._view(str(metric), key, str(cohort))
        return cell if isinstance(cell, Moments) else Moments()

    def confusion(self, metric: Metric | str, key: str, cohort: Cohort | str) -> Confusion:
        cell = self._view(str(metric), key, str(cohort))
        return cell if isinstance(cell, Confusion) else Confusion()

    def slices(self, metric: Metric | str, dims: list[str] | None = None) -> list[str]:
        """Tested slice keys with data for a metric: ``all`` first, then each
        dimension's named values in rank order, then its ``(other)`` pool."""
        have = self.cells.get(str(metric), {})
        out = [ALL]
        for dim in dims if dims is not None else self.metric_dims.get(str(metric), []):
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
            remap[gdim] = {OTHER: OTHER}
            for v in values:
                remap[gdim][v] = out._slot(gdim, v, assign=True)
        for metric, by_key in other.cells.items():
            for key, by_cohort in by_key.items():
                sdim, value = parse_slice(key)
                new_key = (key if sdim is None
                           else slice_key(sdim, remap.get(sdim, {}).get(str(value), OTHER)))
                for cohort, cell in by_cohort.items():
                    mine = out._cell(metric, new_key, cohort, type(cell))
                    out.cells[metric][new_key][cohort] = _merge_cells(mine, cell)
        for c in COHORTS:
            out.n_samples[c] += other.n_samples[c]
        if other.step is not None and other.step == out.step:
            for wmetric, wcells in other.window.items():
                for wcohort, mom in wcells.items():
                    mine_w = out.window.setdefault(wmetric, {}).get(wcohort) or Moments()
                    out.window[wmetric][wcohort] = mine_w.merge(mom)
            for c in COHORTS:
                out.window_samples[c] += other.window_samples[c]
        for g, cnt in other.counts.items():
            mine_c = out.counts.get(g)
            if mine_c is None:
                out.counts[g] = cnt
            else:
                out.counts[g] = _add_counts(mine_c, cnt)
        return out

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
            **({} if self.step is None else {"step": {
                "index": self.step,
                "startedAt": None if self.step_started is None
                else self.step_started.isoformat(),
                "samples": dict(self.window_samples),
                "cells": {m: {c: mom.to_dict() for c, mom in bc.items()}
                          for m, bc in self.window.items()},
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
            kind: type[Cell] = Confusion if m == Metric.F1.value else Moments
            for k, bc in bk.items():
                for c, cell in bc.items():
                    out.cells.setdefault(m, {}).setdefault(k, {})[c] = kind.from_dict(cell)
        out.counts = {g: Counts.from_dict(c) for g, c in data.get("counts", {}).items()}
        step = data.get("step")
        if step is not None:
            started = step.get("startedAt")
            out.enter_step(int(step["index"]),
                           None if started is None else datetime.fromisoformat(started))
            out.window_samples = {c: int(step.get("samples", {}).get(c, 0)) for c in COHORTS}
            out.window = {m: {c: Moments.from_dict(v) for c, v in bc.items()}
                          for m, bc in step.get("cells", {}).items()}
        return out


def _merge_cells(a: Cell, b: Cell) -> Cell:
    if isinstance(a, Moments) and isinstance(b, Moments):
        return a.merge(b)
    if isinstance(a, Confusion) and isinstance(b, Confusion):
        return a.merge(b)
    raise TypeError("one metric always has one cell type")


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
