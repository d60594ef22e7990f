"""The pure analysis engine: sufficient statistics, anytime-valid tests, the decision.

No I/O and no clock: the caller feeds samples (and Prometheus counts), stores
``RuleStatistics.to_dict()`` in the CanaryRule status, and calls :func:`evaluate`.
Formulas are documented in :mod:`.stats`, :mod:`.sequential`, :mod:`.quantiles`,
:mod:`.classification`, :mod:`.onesample`, :mod:`.mix`, :mod:`.accumulator` and
:mod:`.decide`.
"""

from .accumulator import (
    ALL,
    OTHER,
    Counts,
    RuleStatistics,
    StatisticsMismatch,
    correction_burden,
    f1_pair,
    measure_of,
    measure_value,
    metric_value,
    policy_violation,
    trusted_completion,
)
from .decide import (
    BURN_IN,
    alpha_split,
    bound_alpha,
    evaluate,
    family_size,
    guard_dimensions,
    guard_outcomes,
    traffic_checks,
)
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
from .stats import Confusion, Histogram, Moments, TaskConfusions, macro_f1, macro_f1_unit_variance

__all__ = [
    "ALL",
    "BURN_IN",
    "CS",
    "OTHER",
    "Confusion",
    "Counts",
    "Histogram",
    "Moments",
    "RuleStatistics",
    "StatisticsMismatch",
    "TaskConfusions",
    "alpha_split",
    "beta_binomial_log_e",
    "bound_alpha",
    "correction_burden",
    "diff_means_normal",
    "diff_means_t",
    "diff_proportions",
    "evaluate",
    "f1_difference",
    "f1_pair",
    "family_size",
    "guard_dimensions",
    "guard_outcomes",
    "macro_f1",
    "macro_f1_unit_variance",
    "measure_of",
    "measure_value",
    "metric_value",
    "mixture_eta",
    "msprt_log_lr",
    "normal_mixture_cs",
    "policy_violation",
    "rate_ratio_cs",
    "t_mixture_log_bf",
    "t_mixture_radius",
    "traffic_checks",
    "trusted_completion",
]
