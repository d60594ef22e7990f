"""Which samples the judge scores: random, balanced, stratified, with exact inclusion
probabilities (checked empirically over many seeds)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from canary_playground.scripted_judge import sample_record
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.judge.sampling import (
    allocate,
    cohort_quotas,
    inclusion_probabilities,
    interval_seed,
    round_sizes,
    select,
    select_samples,
)
from controller.models import RecordedVerdict, Sample
from controller.models.rule import Oversample


def make(n_base: int, n_canary: int, risks: str = "l") -> list[Sample]:
    """Samples with risk tiers cycling through ``risks`` (l, m, h) and queues q0/q1."""
    tiers = {"l": "low", "m": "medium", "h": "high"}
    out = []
    for cohort, n in (("baseline", n_base), ("canary", n_canary)):
        for i in range(n):
            out.append(Sample.model_validate(sample_record(
                f"{cohort[0]}{i:03d}", cohort=cohort, risk=tiers[risks[i % len(risks)]],
                queue=f"q{i % 2}",
            )))
    return out


def ids(chosen: list) -> list[str]:  # type: ignore[type-arg]
    return [c.item.id for c in chosen]


class TestQuotasAndAllocation:
    def test_cohort_quotas(self) -> None:
        assert cohort_quotas({"b": 100, "c": 100}, 50) == {"b": 25, "c": 25}
        assert cohort_quotas({"b": 100, "c": 101}, 51) == {"b": 25.5, "c": 25.5}  # coin flip
        assert cohort_quotas({"b": 3, "c": 100}, 50) == {"b": 3, "c": 47}  # spill-over
        assert cohort_quotas({"b": 1, "c": 1}, 1) == {"b": 0.5, "c": 0.5}
        assert cohort_quotas({"b": 3, "c": 4}, 50) == {"b": 3, "c": 4}
        assert cohort_quotas({"b": 0, "c": 9}, 4) == {"b": 0, "c": 4}
        assert cohort_quotas({"b": 5, "c": 5}, 0) == {"b": 0, "c": 0}

    def test_allocation_proportional_to_size_times_factor_and_capped(self) -> None:
        a = allocate({"low": 80, "high": 20}, {"low": 1.0, "high": 4.0}, 16)
        assert a["high"] == pytest.approx(8.0) and a["low"] == pytest.approx(8.0)
        # high x4 wants more than it has: all 5 taken, the rest spread over low
        a = allocate({"low": 95, "high": 5}, {"low": 1.0, "high": 4.0}, 30)
        assert a == {"low": pytest.approx(25.0), "high": 5.0}
        assert allocate({"x": 3}, {"x": 1.0}, 10) == {"x": 3.0}

    @settings(max_examples=60, derandomize=True)
    @given(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=6),
           st.integers(0, 2**32))
    def test_rounding_preserves_the_total(self, parts: list[float], seed: int) -> None:
        alloc = {i: p for i, p in enumerate(parts)}
        total = round(sum(parts))
        alloc[0] += total - sum(parts)  # make the total an integer, as allocate does
        if alloc[0] < 0:
            return
        sizes = round_sizes(alloc, random.Random(seed))
        assert sum(sizes.values()) == total
        for k, a in alloc.items():
            assert math.floor(a + 1e-12) <= sizes[k] <= math.floor(a + 1e-12) + 1


class TestSelect:
    def test_limit_balance_and_no_duplicates(self) -> None:
        batch = make(40, 60)
        chosen = select_samples(batch, 21, seed=7)
        assert len(chosen) == 21 == len(set(ids(chosen)))
        by = Counter(c.item.cohort.value for c in chosen)
        assert abs(by["baseline"] - by["canary"]) <= 1
        size = {"baseline": 40, "canary": 60}
        for c in chosen:  # 10.5 expected from each cohort
            assert c.probability == pytest.approx(10.5 / size[c.item.cohort.value])
        assert [c.item for c in chosen] == [s for s in batch if s.id in set(ids(chosen))]

    def test_small_cohort_is_taken_whole_with_weight_one(self) -> None:
        chosen = select_samples(make(3, 50), 20, seed=1)
        base = [c for c in chosen if c.item.cohort.value == "baseline"]
        assert len(base) == 3 and all(c.probability == 1.0 and c.weight == 1.0 for c in base)
        assert len(chosen) == 20

    def test_duplicate_ids_count_once(self) -> None:
        batch = make(5, 5)
        chosen = select_samples(batch + batch[:3], 100, seed=3)
        assert sorted(ids(chosen)) == sorted(s.id for s in batch)

    def test_deterministic_for_a_seed_and_independent_of_arrival_order(self) -> None:
        batch = make(30, 30, risks="lmh")
        over = Oversample.model_validate({"risk": {"high": 4}})
        seed = interval_seed("support-assistant", "2026-01-01T10:00:00Z")
        first = ids(select_samples(batch, 12, seed, over))
        shuffled = list(batch)
        random.Random(5).shuffle(shuffled)
        assert sorted(ids(select_samples(shuffled, 12, seed, over))) == sorted(first)
        assert ids(select_samples(batch, 12, seed, over)) == first
        assert ids(select_samples(batch, 12, seed + 1, over)) != first
        assert interval_seed("r", 1) == interval_seed("r", 1) != interval_seed("r", 2)

    def test_oversampling_high_risk_four_times(self) -> None:
        batch = make(100, 100, risks="llllllllh")  # 1 in 9 is high
        over = Oversample.model_validate({"risk": {"high": 4}})
        pi = inclusion_probabilities(batch, 40, sample_of=lambda s: s, oversample=over)
        high = {pi[s.id] for s in batch if s.risk.value == "high"}
        low = {pi[s.id] for s in batch if s.risk.value == "low"}
        assert len(high) == len(low) == 1
        assert high.pop() == pytest.approx(4 * low.pop())

    def test_generic_candidates(self) -> None:
        wrapped = [("change", s) for s in make(4, 4)]
        chosen = select(wrapped, 4, 0, sample_of=lambda c: c[1])
        assert len(chosen) == 4 and all(c.item[0] == "change" for c in chosen)

    def test_sampling_weight_on_the_verdict(self) -> None:
        [c] = select_samples(make(10, 0), 1, seed=0)
        v = RecordedVerdict(score=0.9, sampling_weight=c.weight)
        assert v.sampling_weight == pytest.approx(10.0)
        assert RecordedVerdict(score=0.5).sampling_weight == 1.0
        for bad in (0.5, math.inf, math.nan, -1.0):
            with pytest.raises(ValueError):
                RecordedVerdict(score=0.5, sampling_weight=bad)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    n_base=st.integers(1, 14),
    n_canary=st.integers(1, 14),
    limit=st.integers(1, 16),
    high=st.sampled_from([1.0, 2.5, 4.0]),
    queue=st.sampled_from([1.0, 3.0]),
)
def test_empirical_frequencies_match_inclusion_probabilities(
    n_base: int, n_canary: int, limit: int, high: float, queue: float
) -> None:
    batch = make(n_base, n_canary, risks="lmh")
    over = Oversample.model_validate({"risk": {"high": high}, "queue": {"q1": queue}})
    pi = inclusion_probabilities(batch, limit, sample_of=lambda s: s, oversample=over)
    assert all(0 < p <= 1 for p in pi.values())
    assert sum(pi.values()) == pytest.approx(min(limit, len(batch)))
    runs = 1500
    counts: Counter[str] = Counter()
    for seed in range(runs):
        chosen = select_samples(batch, limit, seed, over)
        got = ids(chosen)
        assert len(got) == len(set(got)) == min(limit, len(batch))
        by = Counter(c.item.cohort.value for c in chosen)
        want_b = min(n_base, max(limit - n_canary, limit / 2))
        assert abs(by["baseline"] - want_b) < 1
        for c in chosen:
            assert c.probability == pi[c.item.id]
        counts.update(got)
    for sid, p in pi.items():
        sd = math.sqrt(p * (1 - p) / runs)
        assert abs(counts[sid] / runs - p) <= 5 * sd + 1e-9, (sid, counts[sid] / runs, p)
