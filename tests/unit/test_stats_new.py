"""The new sufficient statistics and their inference, property by property.

- Histogram: add/remove/merge are exact; quantile bounds bracket the exact order
  statistic they stand for (conservative by at most one 1% bin) and are monotone.
- Quantile ranks: monotone in t, and the bound by hand (the e-value crosses 1/alpha
  exactly at the returned rank).
- Weighted moments: unit weights reproduce the unweighted statistics bit for bit;
  weighted add/remove/merge round-trip; Hajek mean and linearised variance by hand.
- Ratio metrics (precision, recall, F-beta): values by hand and the delta-method
  variance against a numerical gradient.
- Traffic mix: the e-value by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis.mix import mix_log_e, share_check
from controller.analysis.quantiles import (
    approx_quantile_ranks,
    histogram_quantile_cs,
    log_e_at_most,
    quantile_ranks,
    rank_bound,
)
from controller.analysis.sequential import beta_binomial_prior
from controller.analysis.stats import (
    GAMMA,
    Confusion,
    Histogram,
    Moments,
    TaskConfusions,
    bin_edges,
    bin_of,
    ratio_form,
    ratio_metric,
    ratio_metric_unit_variance,
)

DERANDOM = settings(max_examples=60, deadline=None, derandomize=True)
latencies = st.lists(st.one_of(st.floats(0.0, 1e7, allow_nan=False),
                               st.sampled_from([0.0, 1e-12, 1e308])), max_size=60)


# -- histograms ---------------------------------------------------------------------------

@DERANDOM
@given(latencies, latencies)
def test_histogram_remove_undoes_add_and_merge_is_exact(a: list[float], b: list[float]) -> None:
    h = Histogram()
    for x in a + b:
        h.add(x)
    for x in b:
        h.remove(x)
    ha = Histogram()
    for x in a:
        ha.add(x)
    assert h == ha
    hb = Histogram()
    for x in b:
        hb.add(x)
    both = Histogram()
    for x in a + b:
        both.add(x)
    assert ha.merge(hb) == both == hb.merge(ha)
    assert Histogram.from_dict(json.loads(json.dumps(both.to_dict()))) == both
    assert both.n == len(a) + len(b)


@DERANDOM
@given(st.floats(1e-9, 1e300, allow_nan=False))
def test_bin_edges_contain_the_value_and_are_one_percent_wide(x: float) -> None:
    lo, hi = bin_edges(np.asarray([bin_of(x)]))
    assert lo[0] <= x < hi[0]
    assert hi[0] / lo[0] == pytest.approx(GAMMA, rel=1e-9)


def test_removing_from_an_empty_bin_fails() -> None:
    with pytest.raises(ValueError):
        Histogram().remove(3.0)


@DERANDOM
@given(st.lists(st.floats(0.1, 1e5, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.9, 0.95, 0.99]), st.sampled_from([0.05, 0.001]))
def test_quantile_bounds_bracket_their_order_statistics(
    xs: list[float], p: float, alpha: float
) -> None:
    """The bounds are the bin edges around the exact order statistics of the ranks
    (conservative by at most one bin), and lower <= estimate <= upper."""
    h = Histogram()
    for x in xs:
        h.add(x)
    cs = histogram_quantile_cs(h, p, alpha, 50)
    t = len(xs)
    r_lo, r_hi = quantile_ranks(np.asarray(float(t)), p, alpha, 50)
    srt = sorted(xs)
    lower, upper, est = float(cs.lower), float(cs.upper), float(cs.estimate)
    assert lower <= est * (1 + 1e-9) and est <= upper * (1 + 1e-9)
    if r_hi <= t:
        exact = srt[int(r_hi) - 1]
        assert exact <= upper <= exact * GAMMA * (1 + 1e-9)
    else:
        assert math.isinf(upper)
    if r_lo >= 1:
        exact = srt[int(r_lo) - 1]
        assert exact / GAMMA * (1 - 1e-9) <= lower <= exact
    else:
        assert lower == 0.0


@DERANDOM
@given(st.sampled_from([0.5, 0.9, 0.95, 0.99]), st.sampled_from([0.05, 0.005]),
       st.integers(20, 400))
def test_quantile_ranks_are_monotone_and_solve_the_e_value(p: float, alpha: float,
                                                           m: int) -> None:
    t = np.arange(1.0, 3001.0, 7.0)
    lo, hi = quantile_ranks(t, p, alpha, m)
    assert np.all(np.diff(hi) >= 0) and np.all(np.diff(lo) >= 0)
    assert np.all(lo <= p * t + 1) and np.all(hi >= p * t)
    a, b = beta_binomial_prior(p, m, alpha)
    j = rank_bound(t, p, alpha, m)
    inside = j <= t
    crossed = log_e_at_most(j[inside], t[inside], p, a, b) >= math.log(1 / alpha)
    before = log_e_at_most(j[inside] - 1, t[inside], p, a, b) < math.log(1 / alpha)
    assert crossed.all() and before.all()
    approx_lo, approx_hi = approx_quantile_ranks(t[100:], p, alpha, m)
    assert np.allclose(approx_hi, hi[100:], rtol=2e-3, atol=1.5)  # ranks are integers
    assert np.allclose(approx_lo, lo[100:], rtol=2e-3, atol=1.5)


def test_quantile_bounds_shrink_with_more_data() -> None:
    rng = np.random.default_rng(5)
    xs = rng.lognormal(7.0, 0.4, 20_000)
    widths = []
    for n in (200, 2000, 20_000):
        h = Histogram()
        for x in xs[:n]:
            h.add(x)
        cs = histogram_quantile_cs(h, 0.95, 0.01, 200)
        widths.append(float(cs.upper) / float(cs.lower))
    assert widths[0] > widths[1] > widths[2] > 1.0


# -- weighted moments ---------------------------------------------------------------------

values = st.lists(st.floats(0.0, 1e4, allow_nan=False), max_size=40)
weights = st.lists(st.sampled_from([1.0, 1.5, 2.0, 4.0, 10.0]), min_size=40, max_size=40)


@DERANDOM
@given(values)
def test_unit_weights_reproduce_the_unweighted_statistics_exactly(xs: list[float]) -> None:
    plain, unit = Moments(), Moments()
    for x in xs:
        plain.add(x)
        unit.add(x, 1.0)
    assert plain == unit
    assert (unit.mean, unit.variance, unit.total, unit.n_eff) == (
        plain.mean, plain.variance, plain.total, float(plain.n))
    assert unit.to_dict() == {"n": plain.n, "shift": plain.shift, "s1": plain.s1,
                              "s2": plain.s2}


@DERANDOM
@given(values, values, weights)
def test_weighted_remove_merge_and_round_trip(a: list[float], b: list[float],
                                              ws: list[float]) -> None:
    def build(xs: list[float], off: int) -> Moments:
        m = Moments()
        for i, x in enumerate(xs):
            m.add(x, ws[(i + off) % len(ws)])
        return m

    ma, mb = build(a, 0), build(b, len(a))
    whole = build(a + b, 0)
    merged = ma.merge(mb)
    for got in (merged, Moments.from_dict(json.loads(json.dumps(merged.to_dict())))):
        assert got.n == whole.n and got.wn == whole.wn
        assert math.isclose(got.mean, whole.mean, rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(got.variance, whole.variance, rel_tol=1e-6, abs_tol=1e-3)
    for i, x in enumerate(b):
        whole.remove(x, ws[(i + len(a)) % len(ws)])
    assert whole.n == ma.n and whole.wn == ma.wn
    assert math.isclose(whole.mean, ma.mean, rel_tol=1e-9, abs_tol=1e-6)


def test_hajek_mean_and_linearised_variance_by_hand() -> None:
    xs = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    ws = np.array([1.0, 4.0, 1.0, 2.0, 4.0, 1.0])
    m = Moments()
    for x, w in zip(xs, ws, strict=True):
        m.add(x, w)
    mu = (ws * xs).sum() / ws.sum()
    n = len(xs)
    var_mu = n / (n - 1) * (ws**2 * (xs - mu) ** 2).sum() / ws.sum() ** 2
    n_eff = ws.sum() ** 2 / (ws**2).sum()
    assert m.mean == pytest.approx(mu)
    assert m.n_eff == pytest.approx(n_eff)
    assert m.variance / m.n_eff == pytest.approx(var_mu)
    assert m.total == pytest.approx(mu * n_eff)


def test_weighted_confusion_uses_weighted_counts_and_kish_n() -> None:
    c = Confusion()
    c.add("a", "a", 1.0)
    c.add("a", "b", 3.0)
    c.add("b", "b", 2.0)
    assert c.n == 3
    assert c.matrix(["a", "b"]).tolist() == [[1.0, 3.0], [0.0, 2.0]]
    assert c.n_eff == pytest.approx(36 / 14)
    c.remove("a", "b", 3.0)
    assert c.matrix(["a", "b"]).tolist() == [[1.0, 0.0], [0.0, 2.0]]
    back = Confusion.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.matrix(["a", "b"]).tolist() == c.matrix(["a", "b"]).tolist()
    assert back.n_eff == pytest.approx(c.n_eff)
    tc = TaskConfusions()
    tc.add("t1", "a", "a")
    tc.add("t2", "a", "b")
    assert tc.pooled().cells == {("a", "a"): 1, ("a", "b"): 1}
    tc.remove("t2", "a", "b")
    assert set(tc.tasks) == {"t1"}


# -- precision, recall, F-beta ----------------------------------------------------------------

M = np.array([[50.0, 5.0, 5.0], [10.0, 30.0, 0.0], [0.0, 10.0, 20.0]])


def test_ratio_metrics_by_hand() -> None:
    tp = np.diag(M)
    prec = tp / M.sum(axis=0)
    rec = tp / M.sum(axis=1)
    f2 = 5 * prec * rec / (4 * prec + rec)
    assert float(ratio_metric(M, None, ratio_form("precision"))[0]) == pytest.approx(prec.mean())
    assert float(ratio_metric(M, None, ratio_form("recall"))[0]) == pytest.approx(rec.mean())
    assert float(ratio_metric(M, None, ratio_form("fbeta", 2.0))[0]) == pytest.approx(f2.mean())
    assert float(ratio_metric(M, None, ratio_form("recall"), only=2)[0]) == pytest.approx(rec[2])


@pytest.mark.parametrize(("kind", "beta", "only"),
                         [("precision", None, None), ("recall", None, 1), ("fbeta", 0.5, None),
                          ("f1", None, 0)])
def test_ratio_delta_method_matches_numeric_gradient(kind: str, beta: float | None,
                                                     only: int | None) -> None:
    form = ratio_form(kind, beta)
    p = M / M.sum()
    f0 = float(ratio_metric(p, None, form, only)[0])
    grad = np.zeros_like(p)
    h = 1e-7
    for i in range(3):
        for j in range(3):
            q = p.copy()
            q[i, j] += h
            grad[i, j] = (float(ratio_metric(q / q.sum(), None, form, only)[0]) - f0) / h
    # influence of one observation in cell (i, j): derivative along e_ij - p
    infl = grad - (p * grad).sum()
    want = float((p * infl * infl).sum())
    got = float(ratio_metric_unit_variance(M, None, form, only))
    assert got == pytest.approx(want, rel=1e-4)


# -- traffic mix ---------------------------------------------------------------------------------

def test_mix_e_value_by_hand() -> None:
    from scipy.special import betaln

    c, b = [30, 10], [20, 40]
    s = 40 / 100
    want = (betaln(30.5, 20.5) + betaln(10.5, 40.5) - 2 * betaln(0.5, 0.5)
            - (40 * math.log(s) + 60 * math.log(1 - s)))
    assert mix_log_e(c, b) == pytest.approx(want)
    assert mix_log_e([5, 5], [0, 0]) == 0.0  # one cohort empty: no evidence


def test_share_check_holds_only_beyond_the_band() -> None:
    near = share_check(canary=1100, baseline=8900, expected=0.1, band=0.2, alpha=0.001,
                       target_n=200)
    assert not near.mismatch
    far = share_check(canary=3000, baseline=7000, expected=0.1, band=0.2, alpha=0.001,
                      target_n=200)
    assert far.off and far.mismatch
