"""Which samples the judge scores in an interval: chosen at random, balanced between
cohorts, optionally oversampling strata, each with its exact inclusion probability.

Design (stratified simple random sampling without replacement):

1. **Cohort quotas.** ``limit`` (``samplesPerInterval``) is split evenly between the
   cohorts present; a cohort with fewer candidates than its share is taken whole and
   gives the rest to the other. An odd limit makes the shares halves (25.5 each): each
   cohort gets the extra unit with probability 1/2 (rounding as in step 3): the cohorts'
   counts differ by at most one when both have enough candidates, and even a limit of 1
   leaves no cohort out for sure.
2. **Strata.** Within a cohort, candidates are grouped by their oversampling factor
   ``m`` (``judge.oversample``: per risk tier and/or queue; all 1 without it). The
   cohort's quota ``Q`` is allocated proportionally to ``N_h * m_h`` with the cap
   ``a_h <= N_h`` (water-filling), so ``pi_h = a_h / N_h = min(1, s * m_h)`` with ``s``
   the common rate: a ``high`` tier with factor 4 is judged 4x as often as its share
   (until it is judged entirely).
3. **Integer sizes.** ``n_h = floor(a_h)`` plus one more with probability exactly
   ``frac(a_h)`` (systematic rounding of the fractional parts with one uniform draw), so
   the sizes add up to ``Q`` exactly and ``E[n_h] = a_h``.
4. **Draw.** ``n_h`` distinct candidates uniformly from the stratum, in a canonical
   order (sorted by sample id) so the selection does not depend on arrival order.

Hence every candidate's inclusion probability is ``pi = E[a_h] / N_h`` exactly (the
expectation over the cohort quota's rounding, computed in closed form), every
candidate has ``pi > 0`` (nothing is systematically left out) and ``1/pi`` is the
Horvitz-Thompson weight that keeps interval estimates unbiased
(``RecordedVerdict.sampling_weight``). The draw is deterministic for a seed: seed it
with :func:`interval_seed` (rule and interval) so a restart re-selects the same samples.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from controller.models import Sample
from controller.models.rule import Oversample

T = TypeVar("T")


@dataclass(frozen=True)
class Chosen(Generic[T]):
    """A selected candidate and the probability it had of being selected."""

    item: T
    probability: float

    @property
    def weight(self) -> float:
        """``1/pi``: the number of candidates this judged one stands for."""
        return 1.0 / self.probability


def interval_seed(rule: str, interval: int | str) -> int:
    """A 64-bit seed from the rule and the interval (stable across processes, unlike
    ``hash()``), so a restarted controller draws the same samples."""
    digest = hashlib.sha256(f"{rule}\x00{interval}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def cohort_quotas(counts: dict[Hashable, int], limit: int) -> dict[Hashable, float]:
    """Expected number to judge per cohort: equal shares of ``limit``, a cohort with fewer
    candidates than its share taken whole and the rest shared by the others."""
    quotas: dict[Hashable, float] = dict.fromkeys(counts, 0.0)
    left = float(min(max(0, limit), sum(counts.values())))
    open_ = {c for c, n in counts.items() if n > 0}
    while open_ and left > 0:
        share = left / len(open_)
        small = {c for c in open_ if counts[c] <= share}
        if not small:
            for c in open_:
                quotas[c] = share
            break
        for c in small:
            quotas[c] = float(counts[c])
            left -= counts[c]
        open_ -= small
    return quotas


def allocate(sizes: dict[Hashable, int], factors: dict[Hashable, float], quota: int) -> dict[
    Hashable, float
]:
    """Expected sample size per stratum: proportional to ``N_h * m_h``, capped at ``N_h``."""
    total = sum(sizes.values())
    if quota >= total:
        return {h: float(n) for h, n in sizes.items()}
    alloc: dict[Hashable, float] = {}
    active = {h for h, n in sizes.items() if n > 0}
    left = float(quota)
    while active:
        mass = sum(sizes[h] * factors[h] for h in active)
        rate = left / mass
        capped = {h for h in active if rate * factors[h] >= 1.0}
        if not capped:
            for h in active:
                alloc[h] = rate * sizes[h] * factors[h]
            break
        for h in capped:
            alloc[h] = float(sizes[h])
            left -= sizes[h]
        active -= capped
    return {h: alloc.get(h, 0.0) for h in sizes}


def round_sizes(alloc: dict[Hashable, float], rng: random.Random) -> dict[Hashable, int]:
    """Integer sizes with ``E[n_h] = a_h`` and the total preserved (systematic rounding)."""
    keys = sorted(alloc, key=str)
    floors = {h: math.floor(alloc[h] + 1e-12) for h in keys}
    fracs = [min(1.0, max(0.0, alloc[h] - floors[h])) for h in keys]
    extra = round(sum(fracs))
    sizes = dict(floors)
    if extra <= 0:
        return sizes
    scale = extra / sum(fracs)
    u = rng.random()
    cumulative = 0.0
    point = u  # the next of the points u, u + 1, ..., u + extra - 1
    for h, f in zip(keys, fracs, strict=True):
        cumulative += f * scale
        if point < cumulative or (h == keys[-1] and point < extra):
            sizes[h] += 1
            point += 1.0
    return sizes


@dataclass(frozen=True)
class _CohortPlan:
    strata: list[list[int]]
    """Candidate indices per stratum, in canonical (sample id) order."""
    factors: list[float]
    quota: float
    """The cohort's expected quota; realised as its floor or ceiling."""

    def allocation(self, quota: int) -> dict[Hashable, float]:
        sizes: dict[Hashable, int] = {k: len(m) for k, m in enumerate(self.strata)}
        factors: dict[Hashable, float] = dict(enumerate(self.factors))
        return allocate(sizes, factors, quota)

    def probabilities(self) -> list[float]:
        """Exact inclusion probability per stratum, averaged over the quota's rounding."""
        low = math.floor(self.quota + 1e-12)
        frac = min(1.0, max(0.0, self.quota - low))
        a_low = self.allocation(low)
        a_high = self.allocation(low + 1) if frac > 0 else a_low
        return [
            min(1.0, ((1 - frac) * a_low[k] + frac * a_high[k]) / len(m))
            for k, m in enumerate(self.strata)
        ]


def _plan(
    candidates: Sequence[T],
    limit: int,
    sample_of: Callable[[T], Sample],
    oversample: Oversample | None,
) -> dict[Hashable, _CohortPlan]:
    """Per cohort: its strata (by oversampling factor) and its expected quota."""
    unique: dict[str, int] = {}
    for i, c in enumerate(candidates):
        unique.setdefault(sample_of(c).id, i)
    index = sorted(unique.values(), key=lambda i: sample_of(candidates[i]).id)

    def factor(i: int) -> float:
        s = sample_of(candidates[i])
        return 1.0 if oversample is None else oversample.factor(s.risk, s.queue)

    by_cohort: dict[Hashable, list[int]] = {}
    for i in index:
        by_cohort.setdefault(sample_of(candidates[i]).cohort.value, []).append(i)
    quotas = cohort_quotas({c: len(v) for c, v in by_cohort.items()}, limit)
    plan: dict[Hashable, _CohortPlan] = {}
    for cohort in sorted(by_cohort, key=str):
        groups: dict[float, list[int]] = {}
        for i in by_cohort[cohort]:
            groups.setdefault(factor(i), []).append(i)
        keys = sorted(groups)
        plan[cohort] = _CohortPlan([groups[h] for h in keys], keys, quotas[cohort])
    return plan


def inclusion_probabilities(
    candidates: Sequence[T],
    limit: int,
    *,
    sample_of: Callable[[T], Sample],
    oversample: Oversample | None = None,
) -> dict[str, float]:
    """Sample id -> the probability that :func:`select` chooses it (for any seed)."""
    out: dict[str, float] = {}
    for cohort in _plan(candidates, limit, sample_of, oversample).values():
        for members, pi in zip(cohort.strata, cohort.probabilities(), strict=True):
            out.update((sample_of(candidates[i]).id, pi) for i in members)
    return out


def select(
    candidates: Sequence[T],
    limit: int,
    seed: int,
    *,
    sample_of: Callable[[T], Sample],
    oversample: Oversample | None = None,
) -> list[Chosen[T]]:
    """Up to ``limit`` candidates (see the module docstring), in the candidates' order.

    Candidates sharing a sample id count once (the first is kept)."""
    rng = random.Random(seed)
    plan = _plan(candidates, limit, sample_of, oversample)
    quotas = round_sizes({c: p.quota for c, p in plan.items()}, rng)
    chosen: dict[int, float] = {}
    for cohort, p in plan.items():
        sizes = round_sizes(p.allocation(quotas[cohort]), rng)
        for k, (members, pi) in enumerate(zip(p.strata, p.probabilities(), strict=True)):
            for i in rng.sample(members, sizes[k]):
                chosen[i] = pi
    return [Chosen(candidates[i], chosen[i]) for i in sorted(chosen)]


def select_samples(
    samples: Sequence[Sample], limit: int, seed: int, oversample: Oversample | None = None
) -> list[Chosen[Sample]]:
    """:func:`select` over plain samples."""
    return select(samples, limit, seed, sample_of=lambda s: s, oversample=oversample)
