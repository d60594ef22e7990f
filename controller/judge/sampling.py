"""Which samples the judge scores in an interval: chosen at random, balanced between
cohorts, optionally oversampling strata, each with its exact inclusion probability.

Design (stratified simple random sampling without replacement):

1. **Cohort quotas.** ``limit`` (``samplesPerInterval``) is split evenly between the
   cohorts present; a cohort with fewer candidates than its share gives the rest to the
   other; an odd unit goes to the cohort with more candidates left (then the first by
   name). Quotas depend only on the candidate counts, never on the draw.
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

Hence every candidate's inclusion probability is ``pi = a_h / N_h`` exactly, every
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


def cohort_quotas(counts: dict[Hashable, int], limit: int) -> dict[Hashable, int]:
    """How many of each cohort to judge: even shares, leftovers to the larger cohorts."""
    quotas = dict.fromkeys(counts, 0)
    left = max(0, limit)
    open_ = sorted((c for c in counts if counts[c] > 0), key=str)
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        by_room = sorted(open_, key=lambda c: (-(counts[c] - quotas[c]), str(c)))
        given = 0
        for rank, c in enumerate(by_room):
            want = share + (1 if rank < extra else 0)
            take = min(want, counts[c] - quotas[c])
            quotas[c] += take
            given += take
        left -= given
        open_ = [c for c in open_ if quotas[c] < counts[c]]
        if given == 0:
            break
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
    chosen: dict[int, float] = {}
    for cohort in sorted(by_cohort, key=str):
        chosen.update(_draw(by_cohort[cohort], quotas[cohort], factor, rng))
    return [Chosen(candidates[i], chosen[i]) for i in sorted(chosen)]


def _draw(
    members: list[int], quota: int, factor: Callable[[int], float], rng: random.Random
) -> dict[int, float]:
    """One cohort: index -> inclusion probability for the drawn members."""
    strata: dict[Hashable, list[int]] = {}
    for i in members:
        strata.setdefault(factor(i), []).append(i)
    sizes = {h: len(v) for h, v in strata.items()}
    alloc = allocate(sizes, {h: float(h) for h in strata}, quota)  # type: ignore[arg-type]
    counts = round_sizes(alloc, rng)
    out: dict[int, float] = {}
    for h in sorted(strata, key=str):
        pi = min(1.0, alloc[h] / sizes[h])
        for i in rng.sample(strata[h], counts[h]):
            out[i] = pi
    return out


def select_samples(
    samples: Sequence[Sample], limit: int, seed: int, oversample: Oversample | None = None
) -> list[Chosen[Sample]]:
    """:func:`select` over plain samples."""
    return select(samples, limit, seed, sample_of=lambda s: s, oversample=oversample)
