"""From criterion verdicts to a task-success score: the two formulas, in one place.

Criterion scores ``s_i`` (``m`` of them): fully 1.0, mostly 0.9, partially 0.7,
minor 0.3, none 0.0. The sample is a success when ``score >= threshold`` (default 0.7).
The rule chooses the formula with ``judge.aggregation`` and its strictness with
``judge.temperature`` ``T``.

``evalLib`` (the default): eval-ai-library's Task Success Rate aggregation
(``eval_lib.utils.score_agg``), reproduced operation for operation so scores and
pass/fail match the reference metric exactly. ``T`` in [0.1, 1.0] maps linearly to a
power-mean exponent ``p = -8 + 20.25 (T - 0.1) / 0.9`` (0.1 -> -8 near the minimum,
0.5 -> 1 the arithmetic mean, 1.0 -> 12.25 near the maximum)::

    M_p    = ( (1/m) * sum_i s_i^p )^(1/p)          (zeros count as 1e-9 when p < 0;
                                                     the geometric mean when p == 0)
    alpha  = (1.5 - T) * min(1, (m - 1) / 4)         (no penalty for one criterion,
                                                     full strength from 5 criteria)
    score  = round( M_p * (1 - n_none / m)^alpha, 4 )

Examples at ``T = 0.5``: (mostly, mostly, minor) scores 0.7 (a pass at 0.7);
(fully, none) scores 0.5 * 0.5^0.25 = 0.4204.

``softMin``: a soft minimum::

    score = -T * ln( (1/m) * sum_i exp(-s_i / T) )

As ``T -> 0`` it tends to the weakest criterion (strictest), as ``T -> inf`` to the
mean (most lenient); for any ``T`` it lies between the two, never decreases as ``T``
grows, and is clamped to [0, 1]. Examples: (mostly, mostly, minor) 0.614 at ``T = 0.5``;
(fully, minor) 0.37 at ``T = 0.1``, 0.59 at ``T = 1``.

Deliberate differences from eval_lib's metric beyond the formula: verdict labels are
validated (a capitalised or unknown label is repaired or leaves the sample unjudged;
eval_lib counts it as 0.0), a verdict list of the wrong length is repaired or unjudged
(eval_lib pads with ``none`` or truncates), and at most 3 criteria are asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from controller.models import Aggregation, CriterionVerdict, Level, RecordedVerdict
from controller.models.verdict import EVAL_LIB_TEMPERATURE_RANGE, check_temperature

_P_MIN, _P_MAX = -8.0, 12.25
_EPS_NEG_P = 1e-9


def eval_lib_exponent(temperature: float) -> float:
    """The power-mean exponent eval_lib maps ``temperature`` to (clamped to its range)."""
    t_min, t_max = EVAL_LIB_TEMPERATURE_RANGE
    t = max(t_min, min(t_max, temperature))
    alpha = (t - t_min) / (t_max - t_min)
    return _P_MIN + alpha * (_P_MAX - _P_MIN)


def eval_lib_score(scores: Sequence[float], temperature: float) -> float:
    """eval_lib's power mean with its ``none`` penalty, rounded to 4 decimals."""
    if not scores:
        raise ValueError("at least one criterion score is needed")
    check_temperature(Aggregation.EVAL_LIB, temperature)
    p = eval_lib_exponent(temperature)
    base = [(s if s > 0.0 else _EPS_NEG_P) for s in scores] if p < 0 else list(scores)
    if abs(p) < 1e-12:
        logs = [math.log(s if s > 0 else _EPS_NEG_P) for s in base]
        agg = math.exp(sum(logs) / len(logs))
    else:
        mean_pow = sum(s**p for s in base) / len(base)
        agg = mean_pow ** (1.0 / p)
    n = len(scores)
    none_frac = sum(1 for s in scores if s == 0.0) / n
    alpha = (1.5 - temperature) * min(1.0, (n - 1) / 4.0)
    penalty = (1.0 - none_frac) ** alpha
    return min(1.0, max(0.0, round(agg * penalty, 4)))


def soft_min_score(scores: Sequence[float], temperature: float) -> float:
    """The soft minimum (see the module docstring), with the log-sum-exp shift so tiny
    temperatures do not underflow."""
    if not scores:
        raise ValueError("at least one criterion score is needed")
    check_temperature(Aggregation.SOFT_MIN, temperature)
    low = min(scores)
    shifted = [math.exp(-(s - low) / temperature) for s in scores]
    value = low - temperature * math.log(sum(shifted) / len(scores))
    return min(1.0, max(0.0, value))


def aggregate_scores(
    scores: Sequence[float], temperature: float, aggregation: Aggregation
) -> float:
    """Criterion scores to one task score with the chosen formula."""
    if Aggregation(aggregation) is Aggregation.EVAL_LIB:
        return eval_lib_score(scores, temperature)
    return soft_min_score(scores, temperature)


def aggregate(
    levels: Iterable[Level],
    temperature: float,
    aggregation: Aggregation = Aggregation.EVAL_LIB,
) -> float:
    """The task score of criterion verdicts (see the module docstring)."""
    return aggregate_scores([Level(level).score for level in levels], temperature, aggregation)


def score_verdicts(
    verdicts: Iterable[CriterionVerdict],
    temperature: float,
    aggregation: Aggregation = Aggregation.EVAL_LIB,
) -> float:
    return aggregate((v.verdict for v in verdicts), temperature, aggregation)


def is_success(verdict: RecordedVerdict, threshold: float) -> bool:
    """Success when the aggregated score reaches the threshold."""
    return verdict.score >= threshold
