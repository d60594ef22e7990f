"""F1, precision, recall and F-beta of decisions against labels: per task, then averaged.

What is estimated (per cohort and slice):

- Per task kind t, the ratio metric ``F_t`` of the task's confusion matrix: macro over
  the task's classes (every ground-truth label seen in the task in either cohort, plus
  the guard's ``label``), or of one class when the guard names a ``label`` (e.g. recall
  of ``escalate``). Forms: :data:`.stats.RATIO_FORMS`.
- ``acrossTasks: mean`` (default): the plain mean of ``F_t`` over the tasks where the
  metric is defined in every cohort compared (a task present in one cohort only cannot
  be compared yet, so it waits). Samples without a task form one group. ``pooled``: one
  confusion matrix over all tasks (what the guard computed before per-task averaging;
  a small task collapsing then barely moves it).

Variance. Given the tasks' sample sizes the per-task estimates are independent, so by
the delta method ``Var(mean) = (1/T²)·Σ_t Var₁(F_t)/n_t`` with ``Var₁`` from
:func:`.stats.ratio_metric_unit_variance` (computed with half a pseudo-count per cell of
the task's class support, so a perfect classifier has no zero variance) and ``n_t``
the task's (effective, with judge weights) sample size. The contrast
``θ = F_c − k·F_b`` then uses the normal-mixture CS like every asymptotic test here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from controller.models import Guard, Metric

from .sequential import CS, normal_mixture_cs
from .stats import (
    Confusion,
    FloatArray,
    TaskConfusions,
    ratio_form,
    ratio_metric,
    ratio_metric_unit_variance,
)

KIND = {Metric.F1: "f1", Metric.PRECISION: "precision", Metric.RECALL: "recall",
        Metric.FBETA: "fbeta"}


@dataclass(frozen=True)
class Estimate:
    """One cohort's estimate: value, its variance, and the total (effective) n."""

    value: float
    variance: float
    n: int
    n_eff: float


def _support(counts: FloatArray) -> FloatArray:
    rows = counts.sum(axis=-1) > 0
    cols = counts.sum(axis=-2) > 0
    present = rows | cols
    return np.asarray(present[..., :, None] & present[..., None, :], dtype=float)


def _task_estimate(
    conf: Confusion, classes: list[str], g: Guard
) -> tuple[float, float] | None:
    """(F_t, Var₁) of one task in one cohort, or None when undefined."""
    if conf.n == 0:
        return None
    form = ratio_form(KIND[g.metric], g.beta)
    only = classes.index(g.label) if g.label is not None else None
    m, miss = conf.matrix(classes), conf.miss_counts(classes)
    if m.sum() + miss.sum() <= 0:
        return None
    value, defined = ratio_metric(m, miss, form, only)
    if not bool(defined):
        return None
    var1 = ratio_metric_unit_variance(m + 0.5 * _support(m), miss, form, only)
    return float(value), float(var1)


def _groups(cell: TaskConfusions, g: Guard) -> dict[str, Confusion]:
    if g.across_tasks == "pooled":
        return {"all": cell.pooled()} if cell.tasks else {}
    return dict(cell.tasks)


def _classes(task_cells: list[Confusion], g: Guard) -> list[str]:
    labels = {lab for c in task_cells for lab in c.labels()}
    if g.label is not None:
        labels.add(g.label)
    return sorted(labels)


def estimates(
    cohorts: Mapping[str, TaskConfusions], g: Guard
) -> dict[str, Estimate] | None:
    """Each cohort's estimate over the tasks defined in every cohort given (None when
    no task is)."""
    groups = {c: _groups(cell, g) for c, cell in cohorts.items()}
    tasks = sorted(set.intersection(*(set(gr) for gr in groups.values()))) if groups else []
    per_task: dict[str, dict[str, tuple[float, float, float]]] = {c: {} for c in groups}
    for t in tasks:
        classes = _classes([gr[t] for gr in groups.values()], g)
        got = {c: _task_estimate(gr[t], classes, g) for c, gr in groups.items()}
        if any(v is None for v in got.values()):
            continue
        for c, v in got.items():
            assert v is not None
            per_task[c][t] = (v[0], v[1], groups[c][t].n_eff)
    used = [t for t in tasks if all(t in per_task[c] for c in groups)]
    if not used:
        return None
    out = {}
    for c, cell in cohorts.items():
        vals = np.asarray([per_task[c][t] for t in used])
        value, variance = task_mean(vals[:, 0], vals[:, 1], vals[:, 2])
        out[c] = Estimate(float(value), float(variance), cell.n, float(vals[:, 2].sum()))
    return out


def task_mean(values: FloatArray, unit_variances: FloatArray,
              n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mean over tasks (last axis) and its variance ``Σ Var₁_t/n_t / T²``; vectorised
    over leading axes (the Monte Carlo tests call it on thousands of streams)."""
    big_t = values.shape[-1]
    mean = values.sum(axis=-1) / big_t
    var = (unit_variances / np.maximum(n, 1e-12)).sum(axis=-1) / (big_t * big_t)
    return np.asarray(mean), np.asarray(var)


def difference_cs(
    canary: Estimate, baseline: Estimate, k: float, alpha: float, target_n: float,
    scale: FloatArray | float = 1.0,
) -> CS:
    """Normal-mixture CS for ``F_c − k·F_b``; ``scale`` multiplies both sample sizes."""
    f = np.asarray(scale, float)
    v = canary.variance + k * k * baseline.variance
    unit = canary.variance * canary.n_eff + k * k * baseline.variance * baseline.n_eff
    est = np.full(f.shape, canary.value - k * baseline.value)
    return normal_mixture_cs(est, v / f, unit, alpha, target_n)


def one_sample_cs(
    canary: Estimate, alpha: float, target_n: float, scale: FloatArray | float = 1.0
) -> CS:
    """Normal-mixture CS for the canary's own value (floors and ceilings)."""
    f = np.asarray(scale, float)
    est = np.full(f.shape, canary.value)
    return normal_mixture_cs(est, canary.variance / f, canary.variance * canary.n_eff,
                             alpha, target_n)
