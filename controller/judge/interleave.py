"""Bias control: both cohorts' samples interleaved in every batch.

The order is proportional: each cohort's samples are spread evenly over the batch, so
any prefix (what gets judged before a budget runs out, or before an interval ends)
holds both cohorts in the batch's proportions. With equal counts this is strict
alternation, baseline first. Within a cohort the original order is kept.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from controller.models import Sample

T = TypeVar("T", bound=Hashable)


def interleaved_order(groups: Sequence[T]) -> list[int]:
    """Indices into ``groups`` (one group label per item), proportionally interleaved."""
    positions: dict[T, list[int]] = {}
    for i, g in enumerate(groups):
        positions.setdefault(g, []).append(i)
    rank = {g: r for r, g in enumerate(sorted(positions, key=str))}
    keyed: list[tuple[float, int, int]] = []
    for g, idx in positions.items():
        n = len(idx)
        keyed.extend(((k + 0.5) / n, rank[g], i) for k, i in enumerate(idx))
    return [i for _, _, i in sorted(keyed)]


def interleave(samples: Sequence[Sample]) -> list[Sample]:
    """The batch reordered so baseline and canary samples alternate proportionally."""
    return [samples[i] for i in interleaved_order([s.cohort.value for s in samples])]
