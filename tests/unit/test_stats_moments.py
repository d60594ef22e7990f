"""Sufficient statistics: Moments and Confusion (add/remove/merge/serialise).

Reference values come from numpy (mean, var with ddof=1) and from F1 computed by
hand from the confusion matrix (F1_k = 2·TP/(2·TP + FP + FN)); the delta-method
variance of macro-F1 is checked against a numerical gradient of the same function
and against the Monte Carlo variance of macro-F1 over multinomial draws.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis.stats import (
    Confusion,
    Moments,
    f1_per_class,
    macro_f1,
    macro_f1_unit_variance,
)

values = st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), max_size=40)


def close(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-7 * scale)


def test_moments_matches_numpy_for_latency_scale() -> None:
    rng = np.random.default_rng(3)
    xs = rng.lognormal(8.5, 0.1, 10_000)  # ~5000 ms with a small spread: cancellation-prone
    m = Moments()
    for x in xs:
        m.add(x)
    assert m.n == xs.size
    assert math.isclose(m.mean, xs.mean(), rel_tol=1e-12)
    assert math.isclose(m.variance, xs.var(ddof=1), rel_tol=1e-9)
    batch = Moments.of(xs)
    assert math.isclose(batch.variance, xs.var(ddof=1), rel_tol=1e-9)


def test_moments_small_and_empty() -> None:
    m = Moments()
    assert (m.n, m.mean, m.variance, m.total) == (0, 0.0, 0.0, 0.0)
    m.add(5.0)
    assert (m.mean, m.variance) == (5.0, 0.0)
    m.remove(5.0)
    assert m.n == 0 and m.s1 == 0.0 and m.s2 == 0.0
    with pytest.raises(ValueError):
        m.remove(1.0)


def test_moments_zero_variance() -> None:
    m = Moments.of([0.01] * 50)
    assert m.variance == 0.0 and math.isclose(m.mean, 0.01)


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_remove_undoes_add(base: list[float], extra: list[float]) -> None:
    m = Moments()
    for x in base:
        m.add(x)
    for x in extra:
        m.add(x)
    for x in extra:
        m.remove(x)
    ref = Moments.of(base)
    assert m.n == ref.n
    if base:
        assert close(m.mean, ref.mean, 1e4)
        assert close(m.variance, ref.variance, 1e8)


@settings(max_examples=200, deadline=None)
@given(values, values, values)
def test_merge_is_associative_and_matches_concatenation(
    a: list[float], b: list[float], c: list[float]
) -> None:
    ma, mb, mc = Moments.of(a), Moments.of(b), Moments.of(c)
    left, right = ma.merge(mb).merge(mc), ma.merge(mb.merge(mc))
    ref = Moments.of(a + b + c)
    for got in (left, right):
        assert got.n == ref.n
        assert close(got.mean, ref.mean, 1e4)
        assert close(got.variance, ref.variance, 1e8)
        assert close(got.total, ref.total, 1e6)


@settings(max_examples=100, deadline=None)
@given(values)
def test_moments_json_round_trip(xs: list[float]) -> None:
    m = Moments.of(xs)
    back = Moments.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m


def test_confusion_f1_by_hand() -> None:
    c = Confusion()
    # approve: 8 right, 2 called review; review: 3 right, 1 called approve; reject: 1 right
    for _ in range(8):
        c.add("approve", "approve")
    for _ in range(2):
        c.add("approve", "review")
    for _ in range(3):
        c.add("review", "review")
    c.add("review", "approve")
    c.add("reject", "reject")
    f1 = c.per_class_f1()
    assert f1["approve"] == pytest.approx(2 * 8 / (2 * 8 + 1 + 2))
    assert f1["review"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert f1["reject"] == pytest.approx(1.0)
    assert c.macro_f1() == pytest.approx((16 / 19 + 6 / 9 + 1) / 3)
    c.remove("reject", "reject")
    assert c.labels() == ["approve", "review"]
    with pytest.raises(ValueError):
        c.remove("reject", "reject")


def test_confusion_decision_outside_classes_counts_as_miss() -> None:
    c = Confusion()
    c.add("approve", "approve")
    c.add("approve", "escalate")  # not a label anywhere: a miss for "approve"
    assert c.per_class_f1()["approve"] == pytest.approx(2 / 3)


cells = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from("abcd")), max_size=30
)


@settings(max_examples=100, deadline=None)
@given(cells, cells, cells)
def test_confusion_merge_remove_round_trip(
    a: list[tuple[str, str]], b: list[tuple[str, str]], c: list[tuple[str, str]]
) -> None:
    def build(xs: list[tuple[str, str]]) -> Confusion:
        conf = Confusion()
        for lab, dec in xs:
            conf.add(lab, dec)
        return conf

    ca, cb, cc = build(a), build(b), build(c)
    assert ca.merge(cb).merge(cc) == ca.merge(cb.merge(cc)) == build(a + b + c)
    both = build(a + b)
    for lab, dec in b:
        both.remove(lab, dec)
    assert both == ca
    assert Confusion.from_dict(json.loads(json.dumps(ca.to_dict()))) == ca


def _numeric_gradient_variance(counts: np.ndarray) -> float:
    p = counts / counts.sum()
    eps = 1e-7
    grad = np.zeros_like(p)
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            q = p.copy()
            q[i, j] += eps
            grad[i, j] = (macro_f1(q) - macro_f1(p)) / eps
    mean = (p * grad).sum()
    return float((p * grad * grad).sum() - mean * mean)


def test_delta_method_matches_numeric_gradient() -> None:
    counts = np.array([[50.0, 5, 2], [6, 20, 3], [1, 4, 9]])
    assert float(macro_f1_unit_variance(counts)) == pytest.approx(
        _numeric_gradient_variance(counts), rel=1e-4
    )


def test_delta_method_matches_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    probs = np.array([[0.5, 0.05, 0.02], [0.05, 0.2, 0.03], [0.02, 0.03, 0.1]])
    n = 400
    draws = rng.multinomial(n, probs.ravel(), size=20_000).reshape(-1, 3, 3).astype(float)
    mc_var = macro_f1(draws).var()
    delta_var = float(macro_f1_unit_variance(probs)) / n
    assert delta_var == pytest.approx(mc_var, rel=0.1)


def test_f1_vectorised_over_runs() -> None:
    counts = np.array([[[3.0, 1], [0, 2]], [[0.0, 0], [0, 4]]])
    f1, present = f1_per_class(counts)
    assert f1[1].tolist() == [0.0, 1.0]
    assert present.tolist() == [[True, True], [False, True]]
    assert macro_f1(counts).tolist() == pytest.approx([(6 / 7 + 4 / 5) / 2, 1.0])
