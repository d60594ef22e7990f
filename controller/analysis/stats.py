"""Mergeable sufficient statistics: what the controller keeps per cohort and slice.

State must be small, JSON-serialisable (it lives in the CanaryRule status) and support
retraction: delayed feedback (correction minutes, labels) replaces a sample's old
contribution with a new one, so every statistic has an exact ``remove``.

``Moments``
    n, Σ(x−c), Σ(x−c)² around a fixed shift ``c`` (the first value seen). Shifting
    keeps the textbook ``(S2 − S1²/n)/(n−1)`` variance free of catastrophic
    cancellation for values such as latencies of 1e3..1e4 ms, while add/remove stay
    exact inverses (unlike Welford's update, which does not invert cleanly). Two
    shifts are reconciled on merge with ``Σ(x−c')= S1 − n·d`` and
    ``Σ(x−c')² = S2 − 2d·S1 + n·d²`` for ``d = c' − c``.

    **Weights** (judge sampling: ``w`` = 1 / inclusion probability). The weighted sums
    are kept as *excess over unit weights* — Σ(w−1), Σ(w−1)(x−c), Σ(w−1)(x−c)² and the
    same with w²−1 — so a stream whose weights are all 1 stores and computes exactly
    what the unweighted statistics did. With weights the mean is Hájek's
    ``μ = Σwx/Σw``, its variance the linearisation (sandwich) estimator
    ``Var(μ) = n/(n−1)·Σw²(x−μ)²/(Σw)²`` (which is ``s²/n`` for unit weights), and the
    sample size Kish's effective ``n_eff = (Σw)²/Σw²``. :attr:`Moments.variance` is the
    per-observation variance ``Var(μ)·n_eff``, so ``variance/n_eff`` is the linearised
    variance and the t-test's degrees of freedom come from ``n_eff``.
    ``clipped`` counts values clipped at a plausibility cap before they were added.

``Histogram``
    counts per fixed log-spaced bin (``[γ^b, γ^(b+1))`` with ``γ = 1.005``, plus one bin
    for values below ``1e-9``): integer counts, so add, remove and merge are exact, and
    the state is a few hundred integers per cohort and slice for a latency distribution
    spanning a factor of ten (about 460 bins per factor of ten). Quantile bounds read from
    it are conservative by at most one bin (0.5%): an upper bound is a bin's upper edge, a
    lower bound a bin's lower edge. (1% bins cost a p95 guard at a 10% tolerance about
    60% more samples; 0.5% is the compromise with the status size.)

``Confusion``
    counts per (label, decision) cell, from which macro and per-class F1 follow
    (with judge sampling weights: the weighted counts, and Kish's effective n for the
    variance; unit weights reproduce the plain counts exactly).
    F1 helpers are vectorised over leading axes so simulations can use them too:
    ``F1_k = 2·p_kk / (r_k + c_k)`` with ``r_k`` the label (row) share and ``c_k``
    the decision (column) share; macro-F1 averages over the classes that occur in
    the cohort (``r_k + c_k > 0``), so a class nobody labelled or predicted does not
    count as a zero. Precision, recall and F-beta are the same ratio form
    ``F_k = w·p_kk / (u·r_k + v·c_k)`` — precision (1, 0, 1), recall (1, 1, 0),
    F-beta (1+β², β², 1), F1 (2, 1, 1) — so one delta-method gradient serves them all
    (:func:`ratio_metric_unit_variance`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _rebase3(n: float, s1: float, s2: float, d: float) -> tuple[float, float]:
    """(Σa(x−c'), Σa(x−c')²) from (Σa, Σa(x−c), Σa(x−c)²) for ``d = c' − c``."""
    return s1 - n * d, s2 - 2.0 * d * s1 + n * d * d


@dataclass
class Moments:
    """Count, mean and variance of a (weighted) stream that supports exact removal."""

    n: int = 0
    shift: float = 0.0
    s1: float = 0.0
    s2: float = 0.0
    # judge sampling weights, as excess over 1 (all zero for an unweighted stream)
    wn: int = 0  # observations whose weight is not 1
    ew: float = 0.0  # Σ(w−1)
    ew1: float = 0.0  # Σ(w−1)(x−c)
    ew2: float = 0.0  # Σ(w−1)(x−c)²
    eq: float = 0.0  # Σ(w²−1)
    eq1: float = 0.0  # Σ(w²−1)(x−c)
    eq2: float = 0.0  # Σ(w²−1)(x−c)²
    clipped: int = 0  # values clipped at a plausibility cap

    def add(self, x: float, w: float = 1.0, clipped: bool = False) -> None:
        self._apply(float(x), float(w), clipped, +1)

    def remove(self, x: float, w: float = 1.0, clipped: bool = False) -> None:
        """Retract one earlier ``add(x, w, clipped)`` (delayed feedback replaces a sample)."""
        if self.n <= 0:
            raise ValueError("cannot remove from empty Moments")
        self._apply(float(x), float(w), clipped, -1)

    def _apply(self, x: float, w: float, clipped: bool, sign: int) -> None:
        if self.n == 0:
            self.shift, self.s1, self.s2 = x, 0.0, 0.0
        d = x - self.shift
        self.n += sign
        self.clipped += sign * int(clipped)
        if self.n == 0:
            self.s1 = self.s2 = 0.0
            self._clear_weights()
            return
        self.s1 += sign * d
        self.s2 += sign * d * d
        if w != 1.0:
            e, e2 = sign * (w - 1.0), sign * (w * w - 1.0)
            self.wn += sign
            self.ew += e
            self.ew1 += e * d
            self.ew2 += e * d * d
            self.eq += e2
            self.eq1 += e2 * d
            self.eq2 += e2 * d * d
            if self.wn == 0:
                self._clear_weights()

    def _clear_weights(self) -> None:
        self.wn = 0
        self.ew = self.ew1 = self.ew2 = self.eq = self.eq1 = self.eq2 = 0.0

    def rebased(self, shift: float) -> Moments:
        """The same statistics expressed around another shift."""
        d = shift - self.shift
        s1, s2 = _rebase3(self.n, self.s1, self.s2, d)
        ew1, ew2 = _rebase3(self.ew, self.ew1, self.ew2, d)
        eq1, eq2 = _rebase3(self.eq, self.eq1, self.eq2, d)
        return Moments(self.n, shift, s1, s2, self.wn, self.ew, ew1, ew2, self.eq, eq1, eq2,
                       self.clipped)

    def merge(self, other: Moments) -> Moments:
        """Statistics of the union of both streams (a new object)."""
        if other.n == 0:
            return Moments(**{**self.to_state(), "clipped": self.clipped + other.clipped})
        if self.n == 0:
            return Moments(**{**other.to_state(), "clipped": self.clipped + other.clipped})
        o = other.rebased(self.shift)
        return Moments(self.n + o.n, self.shift, self.s1 + o.s1, self.s2 + o.s2,
                       self.wn + o.wn, self.ew + o.ew, self.ew1 + o.ew1, self.ew2 + o.ew2,
                       self.eq + o.eq, self.eq1 + o.eq1, self.eq2 + o.eq2,
                       self.clipped + o.clipped)

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _MOMENT_FIELDS}

    @property
    def weighted(self) -> bool:
        return self.wn > 0

    @property
    def mean(self) -> float:
        if not self.n:
            return 0.0
        if not self.wn:
            return self.shift + self.s1 / self.n
        return self.shift + (self.s1 + self.ew1) / (self.n + self.ew)

    @property
    def n_eff(self) -> float:
        """Kish's effective sample size ``(Σw)²/Σw²`` (= n for unit weights)."""
        if not self.wn:
            return float(self.n)
        w = self.n + self.ew
        return w * w / (self.n + self.eq)

    @property
    def total(self) -> float:
        """Σx (for proportions: the number of successes); with weights, ``mean·n_eff``
        (the effective number of successes)."""
        if not self.wn:
            return self.n * self.shift + self.s1
        return self.mean * self.n_eff

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); 0 for fewer than two values. With weights: the
        per-observation variance ``Var(μ)·n_eff`` of the linearised Hájek estimator."""
        if self.n < 2:
            return 0.0
        if not math.isfinite(self.s2):
            return math.inf  # values too large to square: no usable variance
        if not self.wn:
            return max(0.0, (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1))
        w, q = self.n + self.ew, self.n + self.eq
        dbar = (self.s1 + self.ew1) / w
        q1, q2 = self.s1 + self.eq1, self.s2 + self.eq2
        ss = max(0.0, q2 - 2.0 * dbar * q1 + dbar * dbar * q)  # Σw²(x−μ)²
        return self.n / (self.n - 1) * ss / q

    @classmethod
    def of(cls, values: Iterable[float] | FloatArray) -> Moments:
        """Statistics of a batch, vectorised."""
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
        if arr.size == 0:
            return cls()
        c = float(arr.flat[0])
        d = arr - c
        return cls(int(arr.size), c, float(d.sum()), float((d * d).sum()))

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"n": self.n, "shift": self.shift, "s1": self.s1,
                                       "s2": self.s2}
        if self.wn:
            out |= {"wn": self.wn, "ew": self.ew, "ew1": self.ew1, "ew2": self.ew2,
                    "eq": self.eq, "eq1": self.eq1, "eq2": self.eq2}
        if self.clipped:
            out["clipped"] = self.clipped
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Moments:
        ew, ew1, ew2, eq, eq1, eq2 = (float(data.get(k, 0.0)) for k in _EXCESS)
        return cls(int(data["n"]), float(data["shift"]), float(data["s1"]), float(data["s2"]),
                   int(data.get("wn", 0)), ew, ew1, ew2, eq, eq1, eq2,
                   int(data.get("clipped", 0)))


_EXCESS = ("ew", "ew1", "ew2", "eq", "eq1", "eq2")
_MOMENT_FIELDS = ("n", "shift", "s1", "s2", "wn", *_EXCESS, "clipped")


@dataclass
class Confusion:
    """Counts per (ground-truth label, system decision) cell, optionally weighted.

    ``cells`` holds plain counts; ``extra`` the excess weight Σ(w−1) per cell and
    ``extra_q`` the excess Σ(w²−1) of the whole matrix, both empty for unit weights.
    """

    cells: dict[tuple[str, str], int] = field(default_factory=dict)
    extra: dict[tuple[str, str], float] = field(default_factory=dict)
    extra_q: float = 0.0

    def add(self, label: str, decision: str, w: float = 1.0) -> None:
        key = (label, decision)
        self.cells[key] = self.cells.get(key, 0) + 1
        if w != 1.0:
            self.extra[key] = self.extra.get(key, 0.0) + (w - 1.0)
            self.extra_q += w * w - 1.0

    def remove(self, label: str, decision: str, w: float = 1.0) -> None:
        key = (label, decision)
        left = self.cells.get(key, 0) - 1
        if left < 0:
            raise ValueError(f"cannot remove absent cell {key}")
        if left:
            self.cells[key] = left
        else:
            del self.cells[key]
            self.extra.pop(key, None)
        if w != 1.0 and key in self.extra:
            self.extra[key] -= w - 1.0
        if w != 1.0:
            self.extra_q -= w * w - 1.0
        if not self.extra:
            self.extra_q = 0.0

    def merge(self, other: Confusion) -> Confusion:
        out = dict(self.cells)
        for k, v in other.cells.items():
            out[k] = out.get(k, 0) + v
        extra = dict(self.extra)
        for k, e in other.extra.items():
            extra[k] = extra.get(k, 0.0) + e
        return Confusion(out, extra, self.extra_q + other.extra_q)

    @property
    def n(self) -> int:
        return sum(self.cells.values())

    @property
    def n_eff(self) -> float:
        """Kish's effective sample size (= n for unit weights)."""
        n = self.n
        if not self.extra:
            return float(n)
        w = n + sum(self.extra.values())
        return w * w / (n + self.extra_q)

    def labels(self) -> list[str]:
        """Ground-truth classes seen (sorted): the classes macro-F1 averages over."""
        return sorted({lab for lab, _ in self.cells})

    def decisions(self) -> list[str]:
        return sorted({dec for _, dec in self.cells})

    def _weight(self, key: tuple[str, str]) -> float:
        return self.cells[key] + self.extra.get(key, 0.0)

    def matrix(self, classes: Sequence[str]) -> FloatArray:
        """K×K (weighted) counts, rows = labels, columns = decisions; decisions outside
        ``classes`` only count against their row (a wrong answer), labels outside are
        dropped."""
        idx = {c: i for i, c in enumerate(classes)}
        m = np.zeros((len(classes), len(classes)))
        for key in self.cells:
            lab, dec = key
            i = idx.get(lab)
            if i is None:
                continue
            j = idx.get(dec)
            if j is not None:  # other decisions are counted by miss_counts()
                m[i, j] += self._weight(key)
        return m

    def miss_counts(self, classes: Sequence[str]) -> FloatArray:
        """Per label: (weighted) observations whose decision is not one of ``classes``."""
        idx = {c: i for i, c in enumerate(classes)}
        out = np.zeros(len(classes))
        for key in self.cells:
            lab, dec = key
            if lab in idx and dec not in idx:
                out[idx[lab]] += self._weight(key)
        return out

    def per_class_f1(self, classes: Sequence[str] | None = None) -> dict[str, float | None]:
        classes = list(classes) if classes is not None else self.labels()
        f1, present = f1_per_class(self.matrix(classes), self.miss_counts(classes))
        return {c: (float(f) if p else None) for c, f, p in zip(classes, f1, present, strict=True)}

    def macro_f1(self, classes: Sequence[str] | None = None) -> float | None:
        classes = list(classes) if classes is not None else self.labels()
        if not classes or self.n == 0:
            return None
        return float(macro_f1(self.matrix(classes), self.miss_counts(classes)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cells": [[lab, dec, v] for (lab, dec), v in sorted(self.cells.items())]}
        if self.extra:
            out["extra"] = [[lab, dec, e] for (lab, dec), e in sorted(self.extra.items())]
            out["extraQ"] = self.extra_q
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Confusion:
        return cls({(str(lab), str(dec)): int(v) for lab, dec, v in data.get("cells", [])},
                   {(str(lab), str(dec)): float(e) for lab, dec, e in data.get("extra", [])},
                   float(data.get("extraQ", 0.0)))


NO_TASK = "(none)"
"""The task group of samples that name no task (its own group in per-task averages)."""


@dataclass
class TaskConfusions:
    """One confusion matrix per task kind (the slot the accumulator assigned it)."""

    tasks: dict[str, Confusion] = field(default_factory=dict)

    def add(self, task: str, label: str, decision: str, w: float = 1.0) -> None:
        self.tasks.setdefault(task, Confusion()).add(label, decision, w)

    def remove(self, task: str, label: str, decision: str, w: float = 1.0) -> None:
        conf = self.tasks.get(task)
        if conf is None:
            raise ValueError(f"cannot remove from absent task {task!r}")
        conf.remove(label, decision, w)
        if not conf.cells:
            del self.tasks[task]

    def merge(self, other: TaskConfusions) -> TaskConfusions:
        out = {t: Confusion().merge(c) for t, c in self.tasks.items()}
        for t, c in other.tasks.items():
            out[t] = out[t].merge(c) if t in out else Confusion().merge(c)
        return TaskConfusions(out)

    def pooled(self) -> Confusion:
        out = Confusion()
        for c in self.tasks.values():
            out = out.merge(c)
        return out

    def regrouped(self, keep: Mapping[str, str]) -> TaskConfusions:
        """Tasks renamed by ``keep`` (task → group; absent tasks keep their name), with
        the tasks that land in the same group merged."""
        out: dict[str, Confusion] = {}
        for t, c in self.tasks.items():
            g = keep.get(t, t)
            out[g] = out[g].merge(c) if g in out else Confusion().merge(c)
        return TaskConfusions(out)

    @property
    def n(self) -> int:
        return sum(c.n for c in self.tasks.values())

    def labels(self) -> list[str]:
        return sorted({lab for c in self.tasks.values() for lab in c.labels()})

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": {t: c.to_dict() for t, c in sorted(self.tasks.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskConfusions:
        return cls({str(t): Confusion.from_dict(c) for t, c in data.get("tasks", {}).items()})


GAMMA = 1.005
"""Histogram bin ratio: bin b holds values in [γ^b, γ^(b+1))."""
LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -(10**6)
"""The bin of values below :data:`TINY` (zero latency or cost)."""
TINY = 1e-9
_EDGE_SLACK = 1e-12  # relative widening of bin edges, so rounding in log() stays conservative


def bin_of(x: float) -> int:
    """The bin index of a value (finite, ≥ 0; larger values go to the last finite bin)."""
    if not x >= TINY:  # also NaN
        return ZERO_BIN
    return math.floor(math.log(min(x, 1.7976931348623157e308)) / LOG_GAMMA)


def bin_edges(bins: FloatArray | npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
    """Conservative (lower, upper) edges of bins."""
    b = np.asarray(bins)
    zero = b == ZERO_BIN
    bf = np.where(zero, 0, b).astype(float)
    with np.errstate(over="ignore"):
        lo = np.where(zero, 0.0, np.exp(bf * LOG_GAMMA) * (1.0 - _EDGE_SLACK))
        hi = np.where(zero, TINY, np.exp((bf + 1.0) * LOG_GAMMA) * (1.0 + _EDGE_SLACK))
    return np.asarray(lo), np.asarray(hi)


@dataclass
class Histogram:
    """Counts per fixed log-spaced bin: exact add, remove and merge."""

    bins: dict[int, int] = field(default_factory=dict)

    def add(self, x: float) -> None:
        b = bin_of(float(x))
        self.bins[b] = self.bins.get(b, 0) + 1

    @classmethod
    def of(cls, values: FloatArray) -> Histogram:
        """A histogram of many values at once (simulations), binned like :meth:`add`."""
        v = np.asarray(values, float).ravel()
        low = ~(v >= TINY)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.floor(np.log(np.minimum(np.where(low, 1.0, v), 1.7976931348623157e308))
                         / LOG_GAMMA).astype(np.int64)
        keys, counts = np.unique(np.where(low, ZERO_BIN, b), return_counts=True)
        return cls({int(k): int(c) for k, c in zip(keys, counts, strict=True)})

    def remove(self, x: float) -> None:
        b = bin_of(float(x))
        left = self.bins.get(b, 0) - 1
        if left < 0:
            raise ValueError(f"cannot remove {x}: its bin is empty")
        if left:
            self.bins[b] = left
        else:
            del self.bins[b]

    def merge(self, other: Histogram) -> Histogram:
        out = dict(self.bins)
        for b, c in other.bins.items():
            out[b] = out.get(b, 0) + c
        return Histogram(out)

    @property
    def n(self) -> int:
        return sum(self.bins.values())

    def dense(self) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """(sorted bin indices, counts) of the occupied bins."""
        keys = sorted(self.bins)
        return np.asarray(keys, dtype=np.int64), np.asarray([self.bins[k] for k in keys], float)

    def to_dict(self) -> dict[str, Any]:
        return {"bins": [[b, c] for b, c in sorted(self.bins.items())]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        return cls({int(b): int(c) for b, c in data.get("bins", [])})


def _shares(counts: FloatArray, miss: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """Cell shares p (…,K,K) and miss shares q (…,K), normalised by the total count."""
    counts = np.asarray(counts, float)
    miss_arr = np.zeros(counts.shape[:-1]) if miss is None else np.asarray(miss, float)
    total = counts.sum(axis=(-2, -1)) + miss_arr.sum(axis=-1)
    safe = np.where(total > 0, total, 1.0)
    return counts / safe[..., None, None], miss_arr / safe[..., None]


def f1_per_class(
    counts: FloatArray, miss: FloatArray | None = None
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Per-class F1 and whether the class occurs (as label or decision)."""
    p, q = _shares(counts, miss)
    a = np.diagonal(p, axis1=-2, axis2=-1)
    d = p.sum(axis=-1) + q + p.sum(axis=-2)
    present = d > 0
    return np.where(present, 2.0 * a / np.where(present, d, 1.0), 0.0), present


def macro_f1(counts: FloatArray, miss: FloatArray | None = None) -> FloatArray:
    """Macro-F1 over classes present in the cohort; vectorised over leading axes."""
    f1, present = f1_per_class(counts, miss)
    k = present.sum(axis=-1)
    return np.asarray(np.where(k > 0, f1.sum(axis=-1) / np.maximum(k, 1), 0.0))


def macro_f1_unit_variance(counts: FloatArray, miss: FloatArray | None = None) -> FloatArray:
    """Per-observation variance of macro-F1 by the delta method (influence function).

    Macro-F1 is a smooth function F(p) of the multinomial cell shares ``p_ij`` (and
    the miss shares ``q_i`` of decisions outside the class set). With
    ``d_k = r_k + c_k`` and ``a_k = p_kk``, and K the number of present classes,

        ∂F/∂p_ij = (2/K)·( [i=j]/d_i − a_i/d_i² − a_j/d_j² ),   ∂F/∂q_i = −(2/K)·a_i/d_i²

    and one observation's influence is the gradient at its cell, so
    ``Var₁ = Σ p·g² − (Σ p·g)²`` (the second term is 0 because F is scale-invariant,
    kept for numerical honesty). ``Var(F̂) ≈ Var₁ / n``.
    """
    p, q = _shares(counts, miss)
    a = np.diagonal(p, axis1=-2, axis2=-1)
    d = p.sum(axis=-1) + q + p.sum(axis=-2)
    present = d > 0
    k = np.maximum(present.sum(axis=-1), 1)[..., None]
    inv_d = np.where(present, 1.0 / np.where(present, d, 1.0), 0.0)
    h = a * inv_d * inv_d  # a_k / d_k²
    eye = np.eye(p.shape[-1])
    g = (2.0 / k[..., None]) * (eye * inv_d[..., None, :] - h[..., :, None] - h[..., None, :])
    gq = -(2.0 / k) * h
    m1 = (p * g).sum(axis=(-2, -1)) + (q * gq).sum(axis=-1)
    m2 = (p * g * g).sum(axis=(-2, -1)) + (q * gq * gq).sum(axis=-1)
    return np.asarray(np.maximum(m2 - m1 * m1, 0.0))


RATIO_FORMS: dict[str, tuple[float, float, float]] = {
    "precision": (1.0, 0.0, 1.0),
    "recall": (1.0, 1.0, 0.0),
    "f1": (2.0, 1.0, 1.0),
}
"""(w, u, v) of ``F_k = w·p_kk / (u·r_k + v·c_k)``; F-beta is (1+β², β², 1)."""


def ratio_form(kind: str, beta: float | None = None) -> tuple[float, float, float]:
    if kind == "fbeta":
        b2 = float(beta if beta is not None else 1.0) ** 2
        return 1.0 + b2, b2, 1.0
    return RATIO_FORMS[kind]


def _ratio_parts(
    counts: FloatArray, miss: FloatArray | None, form: tuple[float, float, float],
    only: int | None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Shares p, q and per class: a, inv_d (0 where undefined), the selection mask
    (classes averaged over) and K (how many)."""
    _, u, v = form
    p, q = _shares(counts, miss)
    a = np.diagonal(p, axis1=-2, axis2=-1)
    r = p.sum(axis=-1) + q
    c = p.sum(axis=-2)
    d = u * r + v * c
    if only is None:
        sel = (r + c) > 0
    else:
        sel = np.zeros(d.shape, dtype=bool)
        sel[..., only] = True
        sel &= d > 0
    inv_d = np.where(sel & (d > 0), 1.0 / np.where(d > 0, d, 1.0), 0.0)
    k = sel.sum(axis=-1)
    return p, q, a, inv_d, sel.astype(float), np.asarray(k, float)


def ratio_metric(
    counts: FloatArray, miss: FloatArray | None = None, form: tuple[float, float, float] = (
        2.0, 1.0, 1.0), only: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(value, defined) of a macro (or one class's, ``only``) ratio metric; vectorised."""
    w = form[0]
    _, _, a, inv_d, sel, k = _ratio_parts(counts, miss, form, only)
    total = (w * a * inv_d * sel).sum(axis=-1)
    return np.asarray(np.where(k > 0, total / np.maximum(k, 1.0), 0.0)), np.asarray(k > 0)


def ratio_metric_unit_variance(
    counts: FloatArray, miss: FloatArray | None = None, form: tuple[float, float, float] = (
        2.0, 1.0, 1.0), only: int | None = None,
) -> FloatArray:
    """Per-observation delta-method variance of :func:`ratio_metric`.

    With ``d_k = u·r_k + v·c_k`` and ``h_k = a_k/d_k²``, averaging over the selected
    classes S (|S| = K):

        ∂F/∂p_ij = (1/K)·( w·[i=j∈S]/d_i − u·w·h_i·[i∈S] − v·w·h_j·[j∈S] ),
        ∂F/∂q_i = −(1/K)·u·w·h_i·[i∈S]

    and ``Var₁ = Σ p·g² − (Σ p·g)²`` as in :func:`macro_f1_unit_variance` (which is the
    case (w, u, v) = (2, 1, 1), every present class).
    """
    w, u, v = form
    p, q, a, inv_d, sel, k = _ratio_parts(counts, miss, form, only)
    kk = np.maximum(k, 1.0)[..., None]
    h = a * inv_d * inv_d * sel
    eye = np.eye(p.shape[-1])
    g = (w / kk[..., None]) * (eye * (inv_d * sel)[..., None, :] - u * h[..., :, None]
                               - v * h[..., None, :])
    gq = -(w / kk) * u * h
    m1 = (p * g).sum(axis=(-2, -1)) + (q * gq).sum(axis=-1)
    m2 = (p * g * g).sum(axis=(-2, -1)) + (q * gq * gq).sum(axis=-1)
    return np.asarray(np.maximum(m2 - m1 * m1, 0.0))
