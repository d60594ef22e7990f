"""The engine's pure parts: replica placement, revision ids, evidence windows, warnings."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.engine import (
    Workload,
    canary_template,
    describe_change,
    evidence,
    holdback_template,
    promoted_template,
    ratio_warnings,
    split,
    strip_marks,
    surge_share,
    template_revision,
)
from controller.engine import placement as pl
from controller.models import CanaryRuleStatus, CanarySpec, Cohort, Phase, Sample
from tests.support.cluster_sim import TEMPLATE

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

SPLITS = [  # (total, weight) -> (target, canary)
    (10, 10, (9, 1)), (10, 25, (7, 3)), (10, 50, (5, 5)), (10, 99, (1, 9)),
    (10, 100, (0, 10)), (10, 0, (10, 0)), (4, 10, (3, 1)), (4, 50, (2, 2)),
    (4, 90, (1, 3)), (3, 50, (1, 2)), (2, 1, (1, 1)), (2, 99, (1, 1)), (1, 10, (1, 1)),
    (1, 100, (0, 1)), (20, 5, (19, 1)), (20, 12, (18, 2)),
]


@pytest.mark.parametrize(("total", "weight", "expected"), SPLITS)
def test_split_table(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split(weight, total) == expected


@settings(derandomize=True)
@given(st.integers(min_value=2, max_value=500), st.integers(min_value=1, max_value=99))
def test_split_invariants(total: int, weight: int) -> None:
    target, canary = split(weight, total)
    assert target + canary == total
    assert canary >= 1 and target >= 1
    if 1 < total * weight / 100 < total - 1:
        assert abs(canary - total * weight / 100) <= 0.5


@settings(derandomize=True)
@given(st.integers(min_value=1, max_value=200), st.integers(min_value=1, max_value=100))
def test_surge_share_is_at_least_one_pod_and_at_most_the_target(base: int, weight: int) -> None:
    canary = surge_share(weight, base)
    assert 1 <= canary <= base
    if weight < 50 and base * weight / (100 - weight) >= 1:
        assert abs(canary / (base + canary) - weight / 100) <= 0.5 / base + 0.01


def test_resolve_surge() -> None:
    assert pl.resolve_surge(None, 10) == 3  # 25% rounded up
    assert pl.resolve_surge("20%", 10) == 2
    assert pl.resolve_surge(0, 10) == 1  # at least one pod of surge
    assert pl.resolve_surge("bogus", 10) == 1


W = st.integers(min_value=0, max_value=30)


@settings(max_examples=300, derandomize=True)
@given(st.integers(1, 30), st.integers(1, 100), W, W, W, W, st.integers(1, 5))
def test_progress_never_shrinks_the_target_below_what_serves_in_its_place(
    total: int, weight: int, t_replicas: int, c_replicas: int, c_available: int,
    t_available: int, surge: int,
) -> None:
    c_available = min(c_available, c_replicas)
    target = Workload(replicas=t_replicas, pods=t_replicas, available=t_available,
                      updated=t_replicas)
    canary = Workload(replicas=c_replicas, pods=c_replicas, available=c_available,
                      updated=c_replicas, revision="r")
    p = pl.progress(weight, total, target, canary, revision="r", autoscaled=False, surge=surge)
    assert p.target is not None
    assert p.target >= total - c_available  # never below what available canary pods replace
    assert p.target <= total
    t_n, c_n = split(weight, total)
    assert p.side <= max(c_n, 0)
    if p.side > c_replicas:  # growing: within the surge bound
        assert p.side + t_replicas <= total + surge or p.side <= c_replicas
    if p.ready:
        assert c_available >= c_n and p.target == t_n


@settings(max_examples=300, derandomize=True)
@given(st.integers(1, 30), st.integers(0, 30), W, W, W, W, st.booleans())
def test_drain_keeps_capacity_at_the_floor(total: int, floor: int, t_available: int,
                                           c_replicas: int, c_available: int, h_available: int,
                                           force: bool) -> None:
    c_available = min(c_available, c_replicas)
    target = Workload(replicas=total, available=t_available)
    canary = Workload(replicas=c_replicas, available=c_available)
    holdback = Workload(replicas=h_available, available=h_available)
    want, (keep_h, keep_c) = pl.drain(total, floor, target, [holdback, canary],
                                      autoscaled=False, force=force)
    assert want == total
    assert 0 <= keep_c <= c_available and 0 <= keep_h <= h_available
    if force:
        assert keep_c == keep_h == 0
    else:
        serving = t_available + c_available + h_available
        assert t_available + keep_c + keep_h >= min(floor, serving)


# --------------------------------------------------------------------------- templates


CANARY = CanarySpec.model_validate({"container": "app", "image": "bot:2",
                                    "env": [{"name": "MODEL", "value": "large"}]})


def test_revisions_are_stable_and_ignore_the_marks() -> None:
    marked, revision = canary_template(TEMPLATE, CANARY)
    assert template_revision(marked) == revision
    assert canary_template(copy.deepcopy(TEMPLATE), CANARY)[1] == revision
    promoted = promoted_template(marked)
    assert template_revision(promoted) == revision
    assert "canary.llmops.dev/cohort" not in promoted["metadata"]["labels"]
    assert strip_marks(marked) == strip_marks(promoted)
    assert template_revision(TEMPLATE) != revision
    same = CanarySpec.model_validate({"container": "app", "image": "bot:1"})
    assert canary_template(TEMPLATE, same)[1] == template_revision(TEMPLATE)  # a no-op


def test_holdback_runs_the_stable_template_as_the_baseline() -> None:
    held, revision = holdback_template(TEMPLATE)
    assert revision == template_revision(TEMPLATE) and strip_marks(held) == TEMPLATE
    env = {e["name"]: e["value"] for e in held["spec"]["containers"][0]["env"]}
    assert env["CANARY_COHORT"] == "baseline"
    assert held["metadata"]["labels"]["canary.llmops.dev/cohort"] == "holdback"


def test_describe_change_names_what_changed_without_env_values() -> None:
    new = copy.deepcopy(TEMPLATE)
    new["spec"]["containers"][0]["image"] = "bot:1.1"
    new["spec"]["containers"][0]["env"] = [{"name": "MODEL", "value": "secret-ish"},
                                           {"name": "NEW", "value": "x"}]
    new["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "now"}
    text = describe_change(TEMPLATE, new)
    assert "container app image bot:1 -> bot:1.1" in text
    assert "container app env NEW added" in text and "env MODEL changed" in text
    assert "pod annotation kubectl.kubernetes.io/restartedAt added" in text
    assert "secret-ish" not in text
    assert describe_change(TEMPLATE, TEMPLATE) == "pod template changed"


# --------------------------------------------------------------------------- evidence


def sample(cohort: str, ts: datetime, revision: str | None = None) -> Sample:
    return Sample.model_validate({
        "id": f"{cohort}-{ts.timestamp()}-{revision}", "rule": "r", "cohort": cohort, "ts": ts,
        "input": "q", "output": "a", "latency_ms": 1, "cost_usd": 0, "fallback": False,
        "revision": revision})


def progressing() -> CanaryRuleStatus:
    return CanaryRuleStatus(
        phase=Phase.PROGRESSING, canary_revision="new", stable_revision="stable",
        started_at=T0, canary_ready_at=T0 + timedelta(minutes=2),
        canary_evidence_since=T0 + timedelta(minutes=2, seconds=30),
        baseline_evidence_since=T0)


def test_evidence_counts_a_canary_sample_only_for_its_revision() -> None:
    ev = evidence(progressing())
    assert ev is not None
    late = T0 + timedelta(minutes=1)
    assert ev.admit(sample("canary", late, "old")) is None  # stamped after, still old
    assert ev.admit(sample("canary", late, "new")) is not None
    assert ev.admit(sample("canary", T0 - timedelta(seconds=1), "new")) is None


def test_unrevisioned_canary_samples_count_only_after_the_canary_settled() -> None:
    ev = evidence(progressing())
    assert ev is not None
    assert ev.admit(sample("canary", T0 + timedelta(minutes=2, seconds=10))) is None
    assert ev.admit(sample("canary", T0 + timedelta(minutes=3))) is not None
    assert ev.admit(sample("baseline", T0 + timedelta(seconds=1))) is not None


def test_no_evidence_before_the_canary_is_available() -> None:
    s = progressing()
    s.canary_ready_at = None
    assert evidence(s) is None
    s = progressing()
    s.baseline_evidence_since = None  # the target is rolling out after a drift
    assert evidence(s) is None
    assert evidence(CanaryRuleStatus(phase=Phase.PAUSED, canary_revision="x")) is None


def test_a_bake_tells_cohorts_apart_by_revision() -> None:
    s = CanaryRuleStatus(phase=Phase.BAKING, canary_revision="new", stable_revision="stable",
                         bake_started_at=T0, baseline_evidence_since=T0 + timedelta(minutes=1))
    ev = evidence(s)
    assert ev is not None and ev.by_revision
    later = T0 + timedelta(minutes=2)
    promoted = ev.admit(sample("baseline", later, "new"))  # the target reports "baseline"
    assert promoted is not None and promoted.cohort is Cohort.CANARY
    held = ev.admit(sample("baseline", later, "stable"))
    assert held is not None and held.cohort is Cohort.BASELINE
    assert ev.admit(sample("baseline", later)) is None  # unrevisioned: cannot be told apart
    assert ev.admit(sample("baseline", T0 + timedelta(seconds=5), "stable")) is None


# --------------------------------------------------------------------------- warnings


def test_ratio_warnings_name_steps_replica_ratio_cannot_honour() -> None:
    assert ratio_warnings([10, 50], 10) == []
    two = ratio_warnings([2], 10)
    assert two == [(0, "step 1 (weight 2%) runs 1 canary pod(s) of 10 pods: 10% of the "
                       "traffic by replica ratio")]
    assert [i for i, _ in ratio_warnings([2, 10], 2)] == [0, 1]
    ((index, text),) = ratio_warnings([20, 80], 10, autoscaled=True)
    assert index == 1 and "80%" in text and "50%" in text
