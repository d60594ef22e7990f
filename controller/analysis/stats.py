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

``Confusion``
    counts per (label, decision) cell, from which macro and per-class F1 follow.
    F1 helpers are vectorised over leading axes so simulations can use them too:
    ``F1_k = 2·p_kk / (r_k + c_k)`` with ``r_k`` the label (row) share and ``c_k``
    the decision (column) share; macro-F1 averages over the classes that occur in
    the cohort (``r_k + c_k > 0``), so a class nobody labelled or predicted does not
    count as a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass
class Moments:
    """Count, mean and variance of a stream that also supports exact removal."""

    n: int = 0
    shift: float = 0.0
    s1: float = 0.0
    s2: float = 0.0

    def add(self, x: float) -> None:
        x = float(x)
        if self.n == 0:
            self.shift, self.s1, self.s2 = x, 0.0, 0.0
        d = x - self.shift
        self.n += 1
        self.s1 += d
        self.s2 += d * d

    def remove(self, x: float) -> None:
        """Retract one earlier ``add(x)`` (delayed feedback replaces a sample)."""
        if self.n <= 0:
            raise ValueError("cannot remove from empty Moments")
        d = float(x) - self.shift
        self.n -= 1
        if self.n == 0:
            self.s1 = self.s2 = 0.0
        else:
            self.s1 -= d
            self.s2 -= d * d

    def rebased(self, shift: float) -> Moments:
        """The same statistics expressed around another shift."""
        d = shift - self.shift
        return Moments(
            self.n, shift, self.s1 - self.n * d, self.s2 - 2.0 * d * self.s1 + self.n * d * d
        )

    def merge(self, other: Moments) -> Moments:
        """Statistics of the union of both streams (a new object)."""
        if other.n == 0:
            return Moments(self.n, self.shift, self.s1, self.s2)
        if self.n == 0:
            return Moments(other.n, other.shift, other.s1, other.s2)
        o = other.rebased(self.shift)
        return Moments(self.n + o.n, self.shift, self.s1 + o.s1, self.s2 + o.s2)

    @property
    def mean(self) -> float:
        return self.shift + self.s1 / self.n if self.n else 0.0

    @property
    def total(self) -> float:
        """Σx (for proportions: the number of successes)."""
        return self.n * self.shift + self.s1

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); 0 for fewer than two values."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1))

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
        return {"n": self.n, "shift": self.shift, "s1": self.s1, "s2": self.s2}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Moments:
        return cls(int(data["n"]), float(data["shift"]), float(data["s1"]), float(data["s2"]))


@dataclass
class Confusion:
    """Counts per (ground-truth label, system decision) cell."""

    cells: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, label: str, decision: str) -> None:
        key = (label, decision)
        self.cells[key] = self.cells.get(key, 0) + 1

    def remove(self, label: str, decision: str) -> None:
        key = (label, decision)
        left = self.cells.get(key, 0) - 1
        if left < 0:
            raise ValueError(f"cannot remove absent cell {key}")
        if left:
            self.cells[key] = left
        else:
            del self.cells[key]

    def merge(self, other: Confusion) -> Confusion:
        out = dict(self.cells)
        for k, v in other.cells.items():
            out[k] = out.get(k, 0) + v
        return Confusion(out)

    @property
    def n(self) -> int:
        return sum(self.cells.values())

    def labels(self) -> list[str]:
        """Ground-truth classes seen (sorted): the classes macro-F1 averages over."""
        return sorted({lab for lab, _ in self.cells})

    def matrix(self, classes: Sequence[str]) -> FloatArray:
        """K×K counts, rows = labels, columns = decisions; decisions outside ``classes``
        only count against their row (a wrong answer), labels outside are dropped."""
        idx = {c: i for i, c in enumerate(classes)}
        m = np.zeros((len(classes), len(classes)))
        for (lab, dec), v in self.cells.items():
            i = idx.get(lab)
            if i is None:
                continue
            j = idx.get(dec)
            if j is not None:  # other decisions are counted by miss_counts()
                m[i, j] += v
        return m

    def miss_counts(self, classes: Sequence[str]) -> FloatArray:
        """Per label: observations whose decision is not one of ``classes``."""
        idx = {c: i for i, c in enumerate(classes)}
        out = np.zeros(len(classes))
        for (lab, dec), v in self.cells.items():
            if lab in idx and dec not in idx:
                out[idx[lab]] += v
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

    def to_dict(self) -> dict[str, list[list[str | int]]]:
        return {"cells": [[lab, dec, v] for (lab, dec), v in sorted(self.cells.items())]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Confusion:
        return cls({(str(lab), str(dec)): int(v) for lab, dec, v in data.get("cells", [])})


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
