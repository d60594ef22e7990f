"""Score parity with the reference metric: eval-ai-library's ``TaskSuccessRateMetric``.

The real library runs against the scripted OpenAI-compatible server (through LiteLLM,
``OPENAI_BASE_URL`` pointing at it), which answers its goal, criteria, verdict and summary
prompts from the ``[[judge: ...]]`` marker. Our judge, in ``thorough`` mode with
``aggregation: evalLib``, judges the same interactions against the same server. Scores
and pass/fail must be identical over a grid of verdict combinations and temperatures;
the formula itself is also checked against ``eval_lib.utils.score_agg`` property-based.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import itertools
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from canary_playground.scripted_judge import ScriptedJudge, sample_record
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.judge import Judge, Judged, JudgeSettings, VerdictCache, eval_lib_score
from controller.models import Aggregation, Level, Sample

LEVELS = [lv.value for lv in Level]
TEMPERATURES = (0.1, 0.3, 0.5, 0.7, 1.0)
THRESHOLD = 0.7
# Every multiset of 1-3 verdicts (the order changes neither formula): 5 + 15 + 35 = 55.
GRID = [combo for m in (1, 2, 3) for combo in itertools.combinations_with_replacement(LEVELS, m)]
KEY = "sk-parity-test-key"


def _import(module: str) -> ModuleType:
    # LiteLLM fetches a price map from the internet at import unless told to use its copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def eval_lib() -> ModuleType:
    return _import("eval_lib")


@pytest.fixture(scope="module")
def reference_env(judge_server: ScriptedJudge) -> Iterator[ScriptedJudge]:
    """LiteLLM (inside eval_lib) reads the OpenAI base URL and key from the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_BASE_URL", judge_server.base_url)
        mp.setenv("OPENAI_API_KEY", KEY)
        yield judge_server


def _text(levels: tuple[str, ...]) -> str:
    return f"Please sort out my invoice. [[judge: {','.join(levels)}]]"


def reference_scores(eval_lib: ModuleType, temperature: float) -> dict[tuple[str, ...], Any]:
    """eval_lib's result for every grid point at one temperature."""

    async def one(levels: tuple[str, ...]) -> dict[str, Any]:
        metric = eval_lib.TaskSuccessRateMetric(
            model="gpt-4o-mini", threshold=THRESHOLD, temperature=temperature
        )
        case = eval_lib.EvalTestCase(input=_text(levels), actual_output="Done: refunded.")
        result: dict[str, Any] = await metric.evaluate(case)
        return result

    async def run() -> list[dict[str, Any]]:
        return await asyncio.gather(*(one(levels) for levels in GRID))

    with contextlib.redirect_stdout(io.StringIO()):  # the metric prints every result
        results = asyncio.run(run())
    return dict(zip(GRID, results, strict=True))


def our_scores(
    srv: ScriptedJudge, temperature: float, cache: VerdictCache
) -> dict[tuple[str, ...], Judged]:
    settings = JudgeSettings(
        model="gpt-4o-mini",
        base_url=srv.base_url,
        mode="thorough",
        aggregation=Aggregation.EVAL_LIB,
        temperature=temperature,
        threshold=THRESHOLD,
    )
    samples = [
        Sample.model_validate(sample_record(f"p{i}", _text(levels), output="Done: refunded."))
        for i, levels in enumerate(GRID)
    ]

    async def run() -> list[Any]:
        async with Judge(settings, api_key=KEY, cache=cache) as judge:
            return await judge.judge_many(samples)

    results = asyncio.run(run())
    assert all(isinstance(r, Judged) for r in results), results
    return dict(zip(GRID, results, strict=True))


def test_thorough_mode_reproduces_eval_lib_on_the_grid(
    eval_lib: ModuleType, reference_env: ScriptedJudge
) -> None:
    srv = reference_env
    srv.reset()
    cache = VerdictCache(":memory:")
    mismatches = []
    for temperature in TEMPERATURES:
        ref = reference_scores(eval_lib, temperature)
        ours = our_scores(srv, temperature, cache)
        for levels in GRID:
            r, o = ref[levels], ours[levels]
            log = r["evaluation_log"]
            # the library really judged the scripted verdicts (partial = our partially)
            got = [v["verdict"] for v in log["verdicts"]]
            assert got == ["partial" if lv == "partially" else lv for lv in levels]
            assert [v.verdict.value for v in o.verdict.verdicts] == list(levels)
            if (r["score"], r["success"]) != (o.verdict.score, o.success):
                mismatches.append((temperature, levels, r["score"], o.verdict.score))
    assert not mismatches, mismatches
    # ours asked goal, criteria and verdicts once per interaction (3 calls, no summary);
    # the other temperatures were re-aggregated from the verdict cache
    ours_calls = [b for b in srv.stats.requests if "response_format" in b]
    assert len(ours_calls) == 3 * len(GRID)
    assert len(srv.stats.requests) - len(ours_calls) == 4 * len(GRID) * len(TEMPERATURES)


def test_the_issue_examples_pass_and_fail_as_in_eval_lib(
    eval_lib: ModuleType, reference_env: ScriptedJudge
) -> None:
    """Issue 12: at eval_lib's default temperature (0.5) mostly,mostly,minor passes at 0.7."""
    srv = reference_env
    srv.reset()
    ref = reference_scores(eval_lib, 0.5)
    ours = our_scores(srv, 0.5, VerdictCache(":memory:"))
    assert ref[("mostly", "mostly", "minor")]["score"] == 0.7
    assert ours[("mostly", "mostly", "minor")].success
    assert ref[("fully", "none")]["score"] == ours[("fully", "none")].verdict.score == 0.4204


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.sampled_from([1.0, 0.9, 0.7, 0.3, 0.0]), min_size=1, max_size=10),
    st.floats(min_value=0.1, max_value=1.0),
)
def test_formula_is_the_library_formula(scores: list[float], temperature: float) -> None:
    """Bit-for-bit: same operations, same rounding, any number of criteria."""
    utils = _import("eval_lib.utils")
    assert eval_lib_score(scores, temperature) == utils.score_agg(scores, temperature=temperature)


def test_formula_at_the_exponent_edges() -> None:
    utils = _import("eval_lib.utils")
    # p = 0 (geometric mean) sits at T = 0.1 + 0.9 * 8 / 20.25
    special = [0.1, 0.1 + 0.9 * 8 / 20.25, 0.5, 1.0, 0.4555, 0.4556]
    for temperature in special:
        for scores in ([1.0, 0.0], [0.3, 0.3, 0.0], [0.9, 0.7], [0.0], [1.0] * 6 + [0.0]):
            assert eval_lib_score(scores, temperature) == utils.score_agg(
                scores, temperature=temperature
            )
