"""Pydantic models: the CanaryRule resource, samples, verdicts and decisions."""

from .base import Duration, parse_duration
from .decision import Action, Decision, GuardResult, Outcome
from .rule import (
    AnalysisSpec,
    CanaryRule,
    CanaryRuleSpec,
    CanarySpec,
    Guard,
    GuardOverride,
    JudgeSpec,
    Metric,
    MetricsSpec,
    PromQuery,
    Step,
    TargetRef,
    TrustedSpec,
)
from .sample import Cohort, Feedback, Risk, Sample, Turn
from .status import HISTORY_LIMIT, CanaryRuleStatus, Condition, DecisionRecord, Phase
from .verdict import (
    LEVEL_SCORES,
    CriterionVerdict,
    JudgeUsage,
    Level,
    RecordedVerdict,
    Unjudged,
)

__all__ = [
    "HISTORY_LIMIT",
    "LEVEL_SCORES",
    "Action",
    "AnalysisSpec",
    "CanaryRule",
    "CanaryRuleSpec",
    "CanaryRuleStatus",
    "CanarySpec",
    "Cohort",
    "Condition",
    "CriterionVerdict",
    "Decision",
    "DecisionRecord",
    "Duration",
    "Feedback",
    "Guard",
    "GuardOverride",
    "GuardResult",
    "JudgeSpec",
    "JudgeUsage",
    "Level",
    "Metric",
    "MetricsSpec",
    "Outcome",
    "Phase",
    "PromQuery",
    "RecordedVerdict",
    "Risk",
    "Sample",
    "Step",
    "TargetRef",
    "TrustedSpec",
    "Turn",
    "Unjudged",
    "parse_duration",
]
