"""The LLM judge: task success, policy check and decision labels over any
OpenAI-compatible endpoint, with retries, budget, cache and calibration.

Entry points: :class:`Judge` (async, one rule), :func:`judge_samples` (a batch, sync),
:func:`calibrate` and :func:`judge_trusted` (reliability). Score formula: see
:mod:`controller.judge.aggregate`; calls per mode: see :mod:`controller.judge.core`.
"""

from .aggregate import aggregate, is_success, score_verdicts
from .budget import Budget, BudgetExhausted
from .cache import VerdictCache, cache_key
from .calibration import Calibration, Confusion, calibrate, cohen_kappa, judge_trusted
from .client import CallError, StructuredMode, extract_json, parse_retry_after
from .core import Judge, Judged, JudgeResult, Totals, calls_per_sample
from .cost import DEFAULT_PRICE, PRICES, Price, estimate_cost, price_for
from .interleave import interleave, interleaved_order
from .prompts import PROMPT_VERSION
from .run import JudgeRun, judge_samples, judge_samples_async, with_result
from .secrets import DEFAULT_KEY_ENV, MissingApiKey, Redactor, api_key_from_env
from .settings import JudgeSettings, Mode

__all__ = [
    "DEFAULT_KEY_ENV",
    "DEFAULT_PRICE",
    "PRICES",
    "PROMPT_VERSION",
    "Budget",
    "BudgetExhausted",
    "Calibration",
    "CallError",
    "Confusion",
    "Judge",
    "JudgeResult",
    "JudgeRun",
    "JudgeSettings",
    "Judged",
    "MissingApiKey",
    "Mode",
    "Price",
    "Redactor",
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
    "extract_json",
    "interleave",
    "interleaved_order",
    "is_success",
    "judge_samples",
    "judge_samples_async",
    "judge_trusted",
    "parse_retry_after",
    "price_for",
    "score_verdicts",
    "with_result",
]
