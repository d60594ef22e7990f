"""Judge reliability: verdicts against human labels.

Labeled file format (JSON Lines): each line is a sample record (docs/schemas/) plus
``human_success: bool`` (the human's task-success label) and optionally
``human_score: float`` in [0, 1]. Success is the positive class. Unjudged samples are
left out of every agreement figure and reported as the unjudged rate instead.

Cohen's kappa: ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and
``p_e`` the agreement expected by chance from both raters' marginals. It is undefined
(``None``) when ``p_e == 1`` (both raters gave one and the same label to everything).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from controller.models import JudgeSpec


@dataclass(frozen=True)
class JudgeHumanCounts:
    """The 2×2 agreement table of two raters, judge (rows) against human (columns),
    success = positive. Not :class:`controller.analysis.stats.Confusion`, which counts a
    classifier's (weighted) decisions per ground-truth label for the F1 guard."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @classmethod
    def from_pairs(cls, judge: Sequence[bool], human: Sequence[bool]) -> JudgeHumanCounts:
        if len(judge) != len(human):
            raise ValueError("judge and human labels differ in length")
        pairs = list(zip(judge, human, strict=True))
        return cls(
            tp=sum(j and h for j, h in pairs),
            fp=sum(j and not h for j, h in pairs),
            fn=sum(h and not j for j, h in pairs),
            tn=sum(not j and not h for j, h in pairs),
        )


def cohen_kappa(c: JudgeHumanCounts) -> float | None:
    """Cohen's kappa for two raters and two classes; None when undefined."""
    if c.n == 0:
        return None
    po = (c.tp + c.tn) / c.n
    judge_yes, human_yes = (c.tp + c.fp) / c.n, (c.tp + c.fn) / c.n
    pe = judge_yes * human_yes + (1 - judge_yes) * (1 - human_yes)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class Calibration:
    n: int
    judged: int
    unjudged: int
    unjudged_rate: float | None
    agreement: float | None
    kappa: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    confusion: JudgeHumanCounts
    score_mae: float | None = None
    """Mean absolute difference judge score - human score, where both exist."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(
    judge_success: Sequence[bool | None],
    human_success: Sequence[bool],
    judge_scores: Sequence[float | None] | None = None,
    human_scores: Sequence[float | None] | None = None,
) -> Calibration:
    """Agreement figures; ``None`` in ``judge_success`` marks an unjudged sample."""
    if len(judge_success) != len(human_success):
        raise ValueError("judge and human labels differ in length")
    kept = [(j, h) for j, h in zip(judge_success, human_success, strict=True) if j is not None]
    c = JudgeHumanCounts.from_pairs([j for j, _ in kept], [h for _, h in kept])
    precision, recall = _ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn)
    f1 = _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)
    mae = None
    if judge_scores is not None and human_scores is not None:
        diffs = [
            abs(a - b)
            for a, b in zip(judge_scores, human_scores, strict=True)
            if a is not None and b is not None
        ]
        mae = sum(diffs) / len(diffs) if diffs else None
    n = len(human_success)
    return Calibration(
        n=n,
        judged=c.n,
        unjudged=n - c.n,
        unjudged_rate=_ratio(n - c.n, n),
        agreement=_ratio(c.tp + c.tn, c.n),
        kappa=cohen_kappa(c),
        precision=precision,
        recall=recall,
        f1=f1,
        confusion=c,
        score_mae=mae,
    )


def judge_trusted(kappa: float | None, spec: JudgeSpec) -> tuple[bool, str]:
    """Whether a rule may rely on the judge; the reason is what the rollout shows when it holds."""
    if spec.min_kappa is None:
        return True, "no minimum kappa set"
    if kappa is None:
        return False, (
            f"judge not calibrated: kappa unknown or undefined, rule requires minKappa "
            f"{spec.min_kappa:.2f}"
        )
    if kappa < spec.min_kappa:
        return False, f"judge kappa {kappa:.2f} is below the rule's minKappa {spec.min_kappa:.2f}"
    return True, f"judge kappa {kappa:.2f} meets minKappa {spec.min_kappa:.2f}"
