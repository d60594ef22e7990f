"""Judging a batch of samples from files or the analyzer: the function the CLI and
``canaryctl analyze --judge-url`` call.

Samples that already carry a ``judge`` verdict are kept as they are (unless
``rejudge``), so a re-run only pays for what is missing. Unjudged samples come back
without ``judge`` and with ``unjudged_reason`` / ``unjudged_detail`` extra fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.models import TRANSIENT_REASONS, JudgeSpec, Sample, Unjudged

from .api_keys import api_key_from_env
from .budget import Budget
from .cache import VerdictCache
from .core import Judge, Judged, JudgeResult, Totals
from .settings import JudgeSettings

UNREACHABLE_REASONS = TRANSIENT_REASONS


@dataclass
class JudgeRun:
    """The outcome of judging a batch."""

    samples: list[Sample]
    results: list[JudgeResult | None]
    """Per input sample; None where the sample was already judged and kept."""
    totals: Totals
    fatal: str | None = None
    structured_mode: str = "json_schema"
    settings: JudgeSettings | None = field(default=None, repr=False)

    @property
    def endpoint_unusable(self) -> bool:
        """A fatal error, or nothing judged and every attempt failed to reach the endpoint."""
        if self.fatal is not None:
            return True
        attempted = [r for r in self.results if r is not None]
        return (
            bool(attempted)
            and not any(isinstance(r, Judged) for r in attempted)
            and all(isinstance(r, Unjudged) and r.reason in UNREACHABLE_REASONS for r in attempted)
        )


def _settings(
    spec_or_settings: JudgeSpec | JudgeSettings, overrides: dict[str, Any]
) -> JudgeSettings:
    if isinstance(spec_or_settings, JudgeSettings):
        clean = {k: v for k, v in overrides.items() if v is not None}
        return spec_or_settings.model_copy(update=clean) if clean else spec_or_settings
    return JudgeSettings.from_spec(spec_or_settings, **overrides)


def with_result(sample: Sample, result: JudgeResult) -> Sample:
    """The sample with its verdict, or marked unjudged (never with a made-up score)."""
    data = sample.model_dump(mode="json", exclude_none=True)
    data.pop("unjudged_reason", None)
    data.pop("unjudged_detail", None)
    if isinstance(result, Judged):
        data["judge"] = result.verdict.model_dump(mode="json", exclude_none=True)
    else:
        data.pop("judge", None)
        data["unjudged_reason"] = result.reason.value
        data["unjudged_detail"] = result.detail
    return Sample.model_validate(data)


async def judge_samples_async(
    samples: Sequence[Sample],
    spec_or_settings: JudgeSpec | JudgeSettings,
    *,
    api_key: str | None = None,
    api_key_env: str | None = None,
    cache: VerdictCache | str | Path | None = None,
    budget: Budget | None = None,
    rejudge: bool = False,
    on_result: Callable[[int, JudgeResult], None] | None = None,
    **overrides: Any,
) -> JudgeRun:
    """Judge the samples that lack a verdict. ``overrides`` replace settings fields.

    The key is ``api_key`` if given, else the environment (see :mod:`.api_keys`).
    """
    settings = _settings(spec_or_settings, overrides)
    key = api_key if api_key is not None else api_key_from_env(api_key_env)
    todo = [i for i, s in enumerate(samples) if rejudge or s.judge is None]
    results: list[JudgeResult | None] = [None] * len(samples)
    async with Judge(settings, api_key=key, cache=cache, budget=budget) as judge:

        def done(j: int, result: JudgeResult) -> None:
            if on_result is not None:
                on_result(todo[j], result)

        batch = await judge.judge_many([samples[i] for i in todo], on_result=done)
        for i, result in zip(todo, batch, strict=True):
            results[i] = result
        out = [s if r is None else with_result(s, r) for s, r in zip(samples, results, strict=True)]
        fatal = judge.unusable
        return JudgeRun(
            samples=out,
            results=results,
            totals=judge.totals,
            fatal=None if fatal is None else f"{fatal.reason.value}: {fatal.detail}",
            structured_mode=judge.structured_mode,
            settings=settings,
        )


def judge_samples(
    samples: Sequence[Sample],
    spec_or_settings: JudgeSpec | JudgeSettings,
    **kwargs: Any,
) -> JudgeRun:
    """Synchronous :func:`judge_samples_async` (for the CLI and the offline analyzer)."""
    return asyncio.run(judge_samples_async(samples, spec_or_settings, **kwargs))
