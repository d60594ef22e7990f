"""Score parity with the reference metric: eval-ai-library's ``TaskSuccessRateMetric``.

The real library runs against the scripted OpenAI-compatible server (through LiteLLM,
``OPENAI_BASE_URL`` pointing at it), which answers its goal, criteria, verdict and summary
prompts from the ``[[judge: ...]]`` marker. Our judge, in ``thorough`` mode with
``aggregation: evalLib``, judges the same interactions against the same server. Scores
and pass/fail must be identical over a grid of verdict combinations and temperatures;
the formula itself is also checked against ``eval_lib.utils.score_agg`` on random cases.

The library runs in its own virtual environment (``.venvs/eval-lib``, made by
``.ci/run``; override with ``EVAL_LIB_PYTHON``) through tests/support/eval_lib_reference.py:
it pins ``openai<3`` through LiteLLM, and the product must be tested with the openai
client users get.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from canary_playground.scripted_judge import ScriptedJudge, sample_record

from controller.judge import Judge, Judged, JudgeSettings, VerdictCache, eval_lib_score
from controller.models import Aggregation, Level, Sample
from tests.support import ROOT

LEVELS = [lv.value for lv in Level]
TEMPERATURES = (0.1, 0.3, 0.5, 0.7, 1.0)
THRESHOLD = 0.7
# Every multiset of 1-3 verdicts (the order changes neither formula): 5 + 15 + 35 = 55.
GRID = [combo for m in (1, 2, 3) for combo in itertools.combinations_with_replacement(LEVELS, m)]
KEY = "sk-parity-test-key"
REFERENCE = ROOT / "tests" / "support" / "eval_lib_reference.py"


def _python() -> str:
    """The reference venv's interpreter; skip locally, fail in CI, when it is missing."""
    path = os.environ.get("EVAL_LIB_PYTHON") or str(ROOT / ".venvs" / "eval-lib" / "bin" /
                                                    "python")
    if not Path(path).exists():
        why = f"eval-ai-library's venv is missing ({path}); .ci/run creates it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return path


def reference(request: dict[str, Any]) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([_python(), str(REFERENCE)], input=json.dumps(request), text=True,
                         capture_output=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def _text(levels: tuple[str, ...]) -> str:
    return f"Please sort out my invoice. [[judge: {','.join(levels)}]]"


def reference_scores(srv: ScriptedJudge, temperatures: tuple[float, ...]
                     ) -> dict[tuple[float, tuple[str, ...]], dict[str, Any]]:
    """eval_lib's result for every grid point at each temperature (one process)."""
    points = [(t, levels) for t in temperatures for levels in GRID]
    answers = reference({
        "op": "metric", "base_url": srv.base_url, "api_key": KEY, "model": "gpt-4o-mini",
        "threshold": THRESHOLD,
        "cases": [{"input": _text(levels), "output": "Done: refunded.", "temperature": t}
                  for t, levels in points]})
    return dict(zip(points, answers, strict=True))


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


def test_thorough_mode_reproduces_eval_lib_on_the_grid(judge: ScriptedJudge) -> None:
    srv = judge
    ref = reference_scores(srv, TEMPERATURES)
    cache = VerdictCache(":memory:")
    mismatches = []
    for temperature in TEMPERATURES:
        ours = our_scores(srv, temperature, cache)
        for levels in GRID:
            r, o = ref[(temperature, levels)], ours[levels]
            # the library really judged the scripted verdicts (partial = our partially)
            assert r["verdicts"] == ["partial" if lv == "partially" else lv for lv in levels]
            assert [v.verdict.value for v in o.verdict.verdicts] == list(levels)
            if (r["score"], r["success"]) != (o.verdict.score, o.success):
                mismatches.append((temperature, levels, r["score"], o.verdict.score))
    assert not mismatches, mismatches
    # ours asked goal, criteria and verdicts once per interaction (3 calls, no summary);
    # the other temperatures were re-aggregated from the verdict cache
    ours_calls = [b for b in srv.stats.requests if "response_format" in b]
    assert len(ours_calls) == 3 * len(GRID)
    assert len(srv.stats.requests) - len(ours_calls) == 4 * len(GRID) * len(TEMPERATURES)


def test_the_issue_examples_pass_and_fail_as_in_eval_lib(judge: ScriptedJudge) -> None:
    """Issue 12: at eval_lib's default temperature (0.5) mostly,mostly,minor passes at 0.7."""
    ref = reference_scores(judge, (0.5,))
    ours = our_scores(judge, 0.5, VerdictCache(":memory:"))
    assert ref[(0.5, ("mostly", "mostly", "minor"))]["score"] == 0.7
    assert ours[("mostly", "mostly", "minor")].success
    assert ref[(0.5, ("fully", "none"))]["score"] == ours[("fully", "none")].verdict.score \
        == 0.4204


def test_formula_is_the_library_formula() -> None:
    """Bit-for-bit: same operations, same rounding, any number of criteria (300 random
    cases), and at the exponent's edges (p = 0, the geometric mean, sits at
    T = 0.1 + 0.9 * 8 / 20.25)."""
    rng = random.Random(12)
    cases = [{"scores": [rng.choice([1.0, 0.9, 0.7, 0.3, 0.0])
                         for _ in range(rng.randint(1, 10))],
              "temperature": rng.uniform(0.1, 1.0)} for _ in range(300)]
    special = [0.1, 0.1 + 0.9 * 8 / 20.25, 0.5, 1.0, 0.4555, 0.4556]
    cases += [{"scores": scores, "temperature": t} for t in special
              for scores in ([1.0, 0.0], [0.3, 0.3, 0.0], [0.9, 0.7], [0.0], [1.0] * 6 + [0.0])]
    expected = reference({"op": "score_agg", "cases": cases})
    ours = [eval_lib_score(c["scores"], c["temperature"]) for c in cases]
    assert ours == expected
