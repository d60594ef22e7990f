"""The pure analysis engine: sufficient statistics, anytime-valid tests, the decision.

No I/O and no clock: the caller feeds samples (and Prometheus counts), stores
``RuleStatistics.to_dict()`` in the CanaryRule status, and calls :func:`evaluate`.
Formulas are documented in :mod:`.stats`, :mod:`.sequential`, :mod:`.accumulator`
and :mod:`.decide`.
"""

from .accumulator import (
    ALL,
    OTHER,
    Counts,
    RuleStatistics,
    StatisticsMismatch,
    f1_pair,
    metric_value,
    policy_violation,
)
from .decide import BURN_IN, alpha_split, evaluate, guard_dimensions, guard_outcomes
from .sequential import (
    CS,
    beta_binomial_log_e,
    diff_means_normal,
    diff_means_t,
    diff_proportions,
    f1_difference,
    mixture_eta,
    msprt_log_lr,
    normal_mixture_cs,
    rate_ratio_cs,
    t_mixture_log_bf,
    t_mixture_radius,
)
from .stats import Confusion, Moments, macro_f1, macro_f1_unit_variance

__all__ = [
    "ALL",
    "BURN_IN",
    "CS",
    "OTHER",
    "Confusion",
    "Counts",
    "Moments",
    "RuleStatistics",
    "StatisticsMismatch",
    "alpha_split",
    "beta_binomial_log_e",
    "diff_means_normal",
    "diff_means_t",
    "diff_proportions",
    "evaluate",
    "f1_difference",
    "f1_pair",
    "guard_dimensions",
    "guard_outcomes",
    "macro_f1",
    "macro_f1_unit_variance",
    "metric_value",
    "mixture_eta",
    "msprt_log_lr",
    "normal_mixture_cs",
    "policy_violation",
    "rate_ratio_cs",
    "t_mixture_log_bf",
    "t_mixture_radius",
]
