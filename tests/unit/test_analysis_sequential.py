"""Sequential tests checked against independent references on fixed inputs.

- Anytime-valid t-test: ``savvi.LinearRegression`` (Lindon et al.'s reference
  implementation) fitted on raw data ``y ~ 1 + canary`` gives the same confidence
  interval and p-value as ``diff_means_t(pooled=True)`` computed from sufficient
  statistics (savvi uses ν = n − p − 1 degrees of freedom; we pass the same ν).
- Normal mixture: Johari et al.'s two-sided mSPRT ``Λ = sqrt(V/(V+τ²))·exp(τ²θ̂²/
  (2V(V+τ²)))`` is computed by hand; ``Λ = 1/α`` exactly on the two-sided boundary.
  The one-sided bound (half-normal mixture) lies between the two-sided boundaries
  at α and 2α, solves ``2·sqrt(V/(V+τ²))·exp(u²/2)·Φ(u) = 1/α`` (checked with scipy),
  and every CS is wider than the fixed-horizon one-sided z interval at the same n.
- Beta-binomial: the e-value equals the beta-binomial marginal likelihood over the
  binomial likelihood, both from ``scipy.stats`` (binomial coefficients cancel), and
  the CS endpoints are where ``M(p) = 1/α``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from savvi.linear_regression import LinearRegression
from scipy import stats as sps

from controller.analysis.sequential import (
    beta_binomial_log_e,
    beta_binomial_prior,
    diff_means_normal,
    diff_means_t,
    diff_proportions,
    f1_difference,
    mixture_eta,
    mixture_tau2,
    msprt_log_lr,
    normal_mixture_radius,
    normal_mixture_radius_two_sided,
    proportion_cs_beta_binomial,
    rate_ratio_cs,
    ratio_to_p,
    t_mixture_log_bf,
    t_mixture_phi,
    t_mixture_radius,
)


@pytest.mark.parametrize(("n", "share", "effect", "phi"), [(300, 0.3, 30.0, 2.0),
                                                           (120, 0.5, 0.0, 0.5),
                                                           (800, 0.1, -40.0, 10.0)])
def test_t_test_matches_savvi(n: int, share: float, effect: float, phi: float) -> None:
    rng = np.random.default_rng(n)
    treat = (rng.random(n) < share).astype(float)
    y = 1000.0 + effect * treat + rng.normal(0.0, 100.0, n)
    ref = LinearRegression(alpha=0.05, p=2, phi=phi)
    for yi, ti in zip(y, treat, strict=True):
        ref.update(np.array([yi, 1.0, ti]))
    ci = ref.calculate_conf_int()[1]
    pv = ref.calculate_p_value()[1]
    yc, yb = y[treat == 1], y[treat == 0]
    cs = diff_means_t(yc.mean(), yc.var(ddof=1), yc.size, yb.mean(), yb.var(ddof=1), yb.size,
                      1.0, 0.05, 100, pooled=True, nu=n - 3, phi=phi)
    assert float(cs.lower) == pytest.approx(ci[0], rel=1e-5, abs=1e-4)
    assert float(cs.upper) == pytest.approx(ci[1], rel=1e-5, abs=1e-4)
    # the always-valid p-value from the same sufficient statistics
    sp2 = ((yc.size - 1) * yc.var(ddof=1) + (yb.size - 1) * yb.var(ddof=1)) / (n - 2)
    stderr = math.sqrt(sp2 * (1 / yc.size + 1 / yb.size))
    t2 = (float(cs.estimate) / stderr) ** 2
    z2 = yc.size * yb.size / n
    p_ours = math.exp(-float(t_mixture_log_bf(t2, n - 3, z2, phi)))
    assert p_ours == pytest.approx(pv, rel=1e-4)  # also when > 1 (savvi does not clip)


def test_t_radius_inverts_bayes_factor() -> None:
    se, nu, z2, phi, alpha = 3.0, 200.0, 90.0, 4.0, 0.01
    rad = float(t_mixture_radius(se, nu, z2, phi, alpha))
    t2 = (rad / se) ** 2
    assert float(t_mixture_log_bf(t2, nu, z2, phi)) == pytest.approx(math.log(1 / alpha))
    # uninformative early: c <= r gives an infinite radius, not an error
    assert math.isinf(float(t_mixture_radius(se, 2.0, 0.5, 100.0, 0.01)))


def test_welch_equals_pooled_for_balanced_equal_variance() -> None:
    args = (10.0, 4.0, 200, 9.0, 4.0, 200, 1.0, 0.05, 100)
    a, b = diff_means_t(*args), diff_means_t(*args, pooled=True)
    assert float(a.lower) == pytest.approx(float(b.lower), rel=1e-9)


def test_msprt_boundary_by_hand() -> None:
    v, tau2, alpha = 0.0004, 0.003, 0.05
    rad2 = float(normal_mixture_radius_two_sided(v, tau2, alpha))
    # Johari et al. (2017): Λ = sqrt(V/(V+τ²)) exp(τ² θ̂² / (2 V (V+τ²)))
    lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * rad2**2 / (2 * v * (v + tau2)))
    assert lam == pytest.approx(1 / alpha)
    assert float(msprt_log_lr(rad2, 0.0, v, tau2)) == pytest.approx(math.log(1 / alpha))


@pytest.mark.parametrize("alpha", [0.001, 0.0125, 0.05, 0.2])
@pytest.mark.parametrize("ratio", [0.01, 1.0, 30.0, 1e4])
def test_one_sided_bound_solves_half_normal_mixture(alpha: float, ratio: float) -> None:
    v = 0.01
    tau2 = ratio * v
    rad = float(normal_mixture_radius(v, tau2, alpha))
    u = rad / (math.sqrt(v) * math.sqrt(1 + v / tau2))
    m_plus = 2 * math.sqrt(v / (v + tau2)) * math.exp(u * u / 2) * sps.norm.cdf(u)
    assert m_plus == pytest.approx(1 / alpha, rel=1e-8)
    two_a = float(normal_mixture_radius_two_sided(v, tau2, alpha))
    two_2a = float(normal_mixture_radius_two_sided(v, tau2, 2 * alpha))
    assert two_2a <= rad <= two_a
    # a confidence sequence is wider than the fixed-horizon one-sided interval
    assert rad > sps.norm.ppf(1 - alpha) * math.sqrt(v)


def test_tau2_minimises_width_at_target() -> None:
    """The documented τ² choice is (near) the width-minimising one at n = target."""
    alpha, m, unit = 0.01, 100, 0.18
    v_star = unit / m
    best = float(normal_mixture_radius_two_sided(v_star, mixture_tau2(unit, m, alpha), alpha))
    for factor in (0.3, 0.6, 1.7, 3.0):
        tau2 = factor * mixture_eta(alpha) * v_star
        assert float(normal_mixture_radius_two_sided(v_star, tau2, alpha)) >= best * 0.999


def test_proportions_cs_is_wider_than_fixed_horizon_and_shrinks() -> None:
    alpha, widths = 0.05, []
    for n in (50, 200, 800, 3200, 12800):
        x = round(0.9 * n)
        cs = diff_proportions(x, n, x, n, 1.0, alpha, 100)
        z = sps.norm.ppf(1 - alpha) * math.sqrt(2 * 0.9 * 0.1 / n)
        width = float(cs.upper) - float(cs.estimate)
        assert width > z
        widths.append(width)
    assert widths == sorted(widths, reverse=True)


def test_proportions_all_success_has_positive_width() -> None:
    cs = diff_proportions(100, 100, 100, 100, 1.0, 0.05, 100)
    assert float(cs.estimate) == 0.0
    assert float(cs.lower) < 0.0 < float(cs.upper)


def test_relative_contrast_uses_k() -> None:
    cs = diff_means_normal(110.0, 100.0, 1000, 100.0, 100.0, 1000, 1.1, 0.05, 100)
    assert float(cs.estimate) == pytest.approx(0.0)


def test_beta_binomial_e_value_matches_scipy() -> None:
    x, e, p0 = 7, 40, 0.1
    a, b = beta_binomial_prior(0.1, 100, 0.05)
    marg = sps.betabinom.logpmf(x, e, a, b)
    lik = sps.binom.logpmf(x, e, p0)
    assert float(beta_binomial_log_e(x, e, p0, a, b)) == pytest.approx(marg - lik)


def test_beta_binomial_cs_endpoints() -> None:
    a, b, alpha = 1.0, 9.0, 0.05
    cs = proportion_cs_beta_binomial(12, 60, a, b, alpha)
    for p in (float(cs.lower), float(cs.upper)):
        assert float(beta_binomial_log_e(12, 60, p, a, b)) == pytest.approx(math.log(1 / alpha),
                                                                           abs=1e-6)
    assert float(cs.lower) < 0.2 < float(cs.upper)
    zero = proportion_cs_beta_binomial(0, 60, a, b, alpha)
    assert float(zero.lower) == 0.0 and 0.0 < float(zero.upper) < 0.2


def test_rate_ratio_maps_share() -> None:
    share = 0.2
    assert ratio_to_p(1.0, share) == pytest.approx(share)
    cs = rate_ratio_cs(50, 200, share, 0.05, 100)  # equal rates per request
    assert float(cs.estimate) == pytest.approx(1.0)
    assert float(cs.lower) < 1.0 < float(cs.upper)
    doubled = rate_ratio_cs(200, 400, share, 0.05, 100)  # canary rate twice the baseline's
    assert float(doubled.estimate) == pytest.approx(2.0)
    assert float(doubled.lower) > 1.0
    with pytest.raises(ValueError):
        rate_ratio_cs(1, 1, 1.0, 0.05, 100)


def test_f1_difference_detects_and_covers() -> None:
    good = np.array([[80.0, 5, 0], [5, 60, 5], [0, 5, 40]]) * 5
    bad = np.array([[80.0, 5, 0], [5, 60, 5], [0, 40, 5]]) * 5  # class 3 mostly wrong
    same = f1_difference(good, good, 1.0, 0.05, 100)
    assert float(same.lower) < 0.0 < float(same.upper)
    worse = f1_difference(bad, good, 1.0, 0.05, 100)
    assert float(worse.upper) < 0.0
    perfect = np.diag([50.0, 50.0, 50.0])
    p = f1_difference(perfect, perfect, 1.0, 0.05, 100)  # pseudo-counts: nonzero width
    assert float(p.upper) > 0.0 > float(p.lower)


def test_phi_matches_eta_at_target() -> None:
    m, alpha = 100, 0.01
    phi = t_mixture_phi(m, alpha)
    z2 = m / 2  # balanced, n_c = n_b = m
    assert phi / (phi + z2) == pytest.approx(1 / (1 + mixture_eta(alpha)))


def test_vectorised_shapes() -> None:
    n = np.arange(20, 220, 20.0)
    cs = diff_proportions(0.9 * n, n, 0.9 * n, n, 1.0, 0.05, 100)
    assert cs.lower.shape == n.shape
    assert np.all(np.diff(cs.upper - cs.lower) < 0)
    t = diff_means_t(np.ones(3), np.ones(3), np.full(3, 50.0), np.ones(3), np.ones(3),
                     np.full(3, 50.0), 1.0, 0.05, 100)
    assert t.upper.shape == (3,)
