"""From criterion verdicts to a task-success score.

Soft aggregation with temperature ``T`` over the ``m`` criterion scores ``s_i``
(fully 1.0, mostly 0.9, partially 0.7, minor 0.3, none 0.0)::

    score = -T * ln( (1/m) * sum_i exp(-s_i / T) )

a soft minimum: as ``T -> 0`` it tends to the weakest criterion (strictest), as
``T -> inf`` to the mean (most lenient); for any ``T`` it lies between the two, and it
never decreases as ``T`` grows. The result is clamped to [0, 1]. The sample is a success
when ``score >= threshold`` (default 0.7). Example: verdicts (fully, minor) give 0.37 at
``T = 0.1``, 0.59 at ``T = 1`` and 0.65 as ``T -> inf``.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.models import CriterionVerdict, Level, RecordedVerdict
from controller.models.verdict import soft_min_score


def aggregate(levels: Iterable[Level], temperature: float) -> float:
    """The soft-min score of criterion verdicts (see the module docstring)."""
    return soft_min_score([Level(level).score for level in levels], temperature)


def score_verdicts(verdicts: Iterable[CriterionVerdict], temperature: float) -> float:
    return aggregate((v.verdict for v in verdicts), temperature)


def is_success(verdict: RecordedVerdict, threshold: float) -> bool:
    """Success when the aggregated score reaches the threshold."""
    return verdict.score >= threshold
