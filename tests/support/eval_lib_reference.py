"""Runs eval-ai-library (the reference metric) in its own virtual environment.

eval-ai-library pins LiteLLM, which pins ``openai<3``; installing it beside the product
would test the product against an older openai client than users get. So the reference
lives in a separate venv (created by ``.ci/run``: ``.venvs/eval-lib``) and this file is its
entry point: JSON in on stdin, JSON out on stdout.

Requests::

    {"op": "metric", "base_url": ..., "api_key": ..., "model": ..., "threshold": 0.7,
     "cases": [{"input": ..., "output": ..., "temperature": 0.5}, ...]}
    -> [{"score": float, "success": bool, "verdicts": [str, ...]}, ...]

    {"op": "score_agg", "cases": [{"scores": [...], "temperature": 0.5}, ...]}
    -> [float, ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from typing import Any


def _metric(request: dict[str, Any]) -> list[dict[str, Any]]:
    os.environ["OPENAI_BASE_URL"] = request["base_url"]
    os.environ["OPENAI_API_KEY"] = request["api_key"]
    import eval_lib

    async def one(case: dict[str, Any]) -> dict[str, Any]:
        metric = eval_lib.TaskSuccessRateMetric(
            model=request["model"], threshold=request["threshold"],
            temperature=case["temperature"])
        result: dict[str, Any] = await metric.evaluate(
            eval_lib.EvalTestCase(input=case["input"], actual_output=case["output"]))
        verdicts = [v["verdict"] for v in result["evaluation_log"]["verdicts"]]
        return {"score": result["score"], "success": result["success"], "verdicts": verdicts}

    async def run() -> list[dict[str, Any]]:
        return await asyncio.gather(*(one(c) for c in request["cases"]))

    with contextlib.redirect_stdout(io.StringIO()):  # the metric prints every result
        return asyncio.run(run())


def _score_agg(request: dict[str, Any]) -> list[float]:
    from eval_lib.utils import score_agg

    return [score_agg(c["scores"], temperature=c["temperature"]) for c in request["cases"]]


def main() -> None:
    # LiteLLM fetches a price map from the internet at import unless told to use its copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    request = json.load(sys.stdin)
    answer = _metric(request) if request["op"] == "metric" else _score_agg(request)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
