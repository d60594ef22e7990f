"""The LLM judge: task success, policy check and decision labels over any
OpenAI-compatible endpoint, with retries, budget, cache, redaction and calibration.

Entry points: :class:`Judge` (async, one rule), :func:`judge_samples` (a batch, sync),
:func:`select` (which samples to judge in an interval, with inclusion probabilities),
:func:`calibrate` and :func:`judge_trusted` (reliability). Score formulas: see
:mod:`controller.judge.aggregate`; calls per mode: :mod:`controller.judge.core`; what the
judge may see: :mod:`controller.judge.redaction`; prices: :mod:`controller.judge.cost`;
why a sample is unjudged: :class:`controller.models.UnjudgedReason`.
"""

from .aggregate import aggregate, eval_lib_score, is_success, score_verdicts, soft_min_score
from .api_keys import DEFAULT_KEY_ENV, MissingApiKey, api_key_from_env
from .budget import Budget, BudgetExhausted
from .cache import VerdictCache, cache_key
from .calibration import Calibration, JudgeHumanCounts, calibrate, cohen_kappa, judge_trusted
from .client import CallError, StructuredMode, extract_json
from .core import Judge, Judged, JudgeResult, Totals, calls_per_sample
from .cost import HOSTED_PRICES, Price, estimate_cost, price_for
from .interleave import interleave, interleaved_order
from .prompts import PROMPT_VERSION
from .redaction import ContentRedactor
from .run import JudgeRun, judge_samples, judge_samples_async, with_result
from .sampling import Chosen, interval_seed, select, select_samples
from .settings import JudgeSettings, Mode

__all__ = [
    "DEFAULT_KEY_ENV",
    "HOSTED_PRICES",
    "PROMPT_VERSION",
    "Budget",
    "BudgetExhausted",
    "Calibration",
    "CallError",
    "Chosen",
    "ContentRedactor",
    "Judge",
    "JudgeHumanCounts",
    "JudgeResult",
    "JudgeRun",
    "JudgeSettings",
    "Judged",
    "MissingApiKey",
    "Mode",
    "Price",
    "StructuredMode",
    "Totals",
    "VerdictCache",
    "aggregate",
    "api_key_from_env",
    "cache_key",
    "calibrate",
    "calls_per_sample",
    "cohen_kappa",
    "estimate_cost",
    "eval_lib_score",
    "extract_json",
    "interleave",
    "interleaved_order",
    "interval_seed",
    "is_success",
    "judge_samples",
    "judge_samples_async",
    "judge_trusted",
    "price_for",
    "score_verdicts",
    "select",
    "select_samples",
    "soft_min_score",
    "with_result",
]
