"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, benchmarks and demos.

It speaks the ``/v1/chat/completions`` wire format (``response_format`` with
``json_schema`` / ``json_object`` / none, ``usage``, error bodies) and answers
deterministically from markers in the request text, so any test can script a verdict
by putting a marker into a sample's input or output:

- ``[[judge: fully,minor]]`` -> that many criteria with those verdicts
  (default: ``fully,mostly``, a success at the default threshold);
- ``[[policy: violation]]`` -> policy_violation true (default false);
- ``[[decision: approve]]`` -> that decision label (default null);
- ``[[fake: malformed]]`` / ``[[fake: malformed-once]]`` -> truncated JSON with
  ``finish_reason: length``, always / only until the client sends a repair turn;
- ``[[fake: wrongtypes]]`` / ``[[fake: wrongtypes-once]]`` -> numbers where the schema
  wants strings (same always / once semantics);
- ``[[fake: slow=2.5]]`` -> 2.5 s extra latency for that request.

It also answers the prompts of eval-ai-library's ``TaskSuccessRateMetric`` (the reference
metric, reached through LiteLLM with ``OPENAI_BASE_URL`` pointing here) from the same
``[[judge: ...]]`` marker: the goal is one sentence that repeats the marker (eval_lib's
criteria prompt shows only the goal, so the count of criteria travels through it), the
criteria a JSON array with one string per level, the verdicts a JSON array in eval_lib's
vocabulary (``partially`` is its ``partial``), the summary one sentence.

Server-wide behaviour: ``latency`` (seconds per request), ``reject_json_schema`` /
``reject_json_object`` (400 about ``response_format``, like servers without structured
output), ``api_key`` (401 otherwise, echoing the offending key as some servers do), and
:meth:`ScriptedJudge.fail_next` to queue HTTP failures (429 with ``Retry-After``, 500, ...).
Without ``response_format`` the answer is wrapped in prose and a code fence, as chat
models do, to exercise extraction.

Run standalone: ``python -m canary_playground.scripted_judge --latency 0.3`` prints
``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

_MARKER = re.compile(r"\[\[(judge|policy|decision|fake):\s*([^\]]*)\]\]")
_SCHEMA_NAME = re.compile(r'JSON schema named "(judge_\w+)"')
DEFAULT_LEVELS = ("fully", "mostly")
EVAL_LIB_STAGES = {
    "describing the user's PRIMARY GOAL": "goal",
    "Generate the MINIMUM number of SUCCESS CRITERIA": "criteria",
    "decide how well it is satisfied at the END of the dialogue": "verdicts",
    "overall assessment of task success": "summary",
}


@dataclass
class Failure:
    """One scripted HTTP failure, consumed by the next request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted failure"


@dataclass
class Stats:
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    statuses: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def _markers(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, value in _MARKER.findall(text):
        found.setdefault(kind, []).append(value.strip())
    return found


def _stage(body: dict[str, Any], text: str) -> str:
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return str(rf["json_schema"]["name"]).removeprefix("judge_")
    m = _SCHEMA_NAME.search(text)
    return m.group(1).removeprefix("judge_") if m else "fast"


def _levels(marks: dict[str, list[str]]) -> list[str]:
    return [lv.strip() for lv in (marks.get("judge") or [",".join(DEFAULT_LEVELS)])[0].split(",")]


def eval_lib_stage(text: str) -> str | None:
    """Which of eval_lib's Task Success Rate prompts this is, or None."""
    return next((stage for key, stage in EVAL_LIB_STAGES.items() if key in text), None)


def eval_lib_answer(stage: str, text: str) -> str:
    """The answer to one of eval_lib's prompts, deterministic from the judge marker."""
    marks = _markers(text)
    levels = _levels(marks)
    marker = f"[[judge: {','.join(levels)}]]"
    if stage == "goal":
        return f"The user wants help with the request {marker}."
    if stage == "criteria":
        criteria = [f"The assistant meets criterion {i + 1}." for i in range(len(levels))]
        return f"```json\n{json.dumps(criteria)}\n```"
    if stage == "verdicts":
        verdicts = [
            {"verdict": "partial" if lv == "partially" else lv, "reason": f"scripted {lv}"}
            for lv in levels
        ]
        return f"```json\n{json.dumps(verdicts)}\n```"
    return "The assistant's work was judged by a script."


def scripted_answer(stage: str, text: str, repaired: bool) -> tuple[str, str]:
    """(content, finish_reason) for one request: deterministic from the markers."""
    marks = _markers(text)
    levels = _levels(marks)
    fakes = set(marks.get("fake", []))
    violation = (marks.get("policy") or [""])[0] == "violation"
    decision = marks["decision"][0] if marks.get("decision") else None
    criteria = [f"criterion {i + 1}" for i in range(len(levels))]
    verdicts: list[dict[str, Any]] = [
        {"criterion": c, "verdict": lv, "reason": f"scripted {lv}"}
        for c, lv in zip(criteria, levels, strict=True)
    ]
    wrong = "wrongtypes" in fakes or ("wrongtypes-once" in fakes and not repaired)
    if wrong:
        verdicts = [{"criterion": 7, "verdict": 0.7, "reason": None} for _ in levels]
    checks = {
        "policy_violation": violation,
        "policy_reason": "scripted: violates policy" if violation else "scripted: complies",
        "decision": decision,
    }
    by_stage: dict[str, dict[str, Any]] = {
        "goal": {"goal": 42 if wrong else "get help with the request"},
        "criteria": {"criteria": criteria},
        "verdicts": {"verdicts": verdicts},
        "checks": checks,
        "fast": {"goal": "get help with the request", "criteria": verdicts, **checks},
    }
    content = json.dumps(by_stage.get(stage, {}))
    if "malformed" in fakes or ("malformed-once" in fakes and not repaired):
        return content[: max(1, len(content) // 2)], "length"
    return content, "stop"


class ScriptedJudge:
    """The server; use as a context manager (``with ScriptedJudge(latency=0.3) as srv``)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        reject_json_schema: bool = False,
        reject_json_object: bool = False,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.latency = latency
        self.reject_json_schema = reject_json_schema
        self.reject_json_object = reject_json_object
        self.api_key = api_key
        self.host = host
        self.port = port
        self.stats = Stats()
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ScriptedJudge:
        self._thread = threading.Thread(target=self._serve, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ScriptedJudge:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # -- scripting and inspection ------------------------------------------------------
    def fail_next(self, *failures: Failure) -> None:
        """Queue failures; each of the next requests consumes one, in order."""
        with self._lock:
            self._failures.extend(failures)

    def reset(self) -> None:
        with self._lock:
            self.stats = Stats()
            self._failures.clear()

    @property
    def calls(self) -> int:
        return len(self.stats.requests)

    def request_texts(self) -> Iterator[str]:
        for body in list(self.stats.requests):
            yield json.dumps(body)

    # -- handlers --------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def _error(
        self,
        status: int,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        kind = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status, "server_error")
        body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
        return web.json_response(body, status=status, headers=headers)

    async def _completions(self, request: web.Request) -> web.Response:
        with self._lock:
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            resp = await self._answer(request)
        finally:
            with self._lock:
                self.stats.in_flight -= 1
        with self._lock:
            self.stats.statuses.append(resp.status)
        return resp

    async def _answer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "request body is not JSON")
        with self._lock:
            self.stats.requests.append(body)
            self.stats.times.append(time.monotonic())
            failure = self._failures.pop(0) if self._failures else None
        if self.api_key is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if given != self.api_key:
                return self._error(401, f"Incorrect API key provided: {given}.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not body.get("model"):
            return self._error(400, "'model' and 'messages' are required", "messages")
        if body.get("stream"):
            return self._error(400, "streaming is not supported here", "stream")
        text = "\n".join(str(m.get("content", "")) for m in messages)
        marks = _markers(text)
        delay = self.latency + sum(
            float(f.split("=", 1)[1]) for f in marks.get("fake", []) if f.startswith("slow=")
        )
        if delay:
            await asyncio.sleep(delay)
        if failure is not None:
            return self._error(failure.status, failure.message, headers=failure.headers)
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema" and self.reject_json_schema:
            return self._error(
                400, "response_format type 'json_schema' is not supported", "response_format"
            )
        if rf.get("type") == "json_object" and self.reject_json_object:
            return self._error(
                400, "response_format type 'json_object' is not supported", "response_format"
            )
        repaired = any(m.get("role") == "assistant" for m in messages)
        eval_lib = None if rf else eval_lib_stage(text)
        if eval_lib is not None:
            content, finish = eval_lib_answer(eval_lib, text), "stop"
        else:
            content, finish = scripted_answer(_stage(body, text), text, repaired)
            if not rf and finish == "stop":
                content = f"Here is my evaluation.\n```json\n{content}\n```\nDone."
        prompt_tokens = len(text) // 4 + 1
        completion_tokens = len(content) // 4 + 1
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


def sample_record(
    sid: str,
    text: str = "",
    *,
    cohort: str = "baseline",
    rule: str = "demo",
    **fields: Any,
) -> dict[str, Any]:
    """A valid sample record (docs/schemas/) whose input is ``text`` (put markers there).

    The id is deliberately not in the text: the judge must never see it."""
    record: dict[str, Any] = {
        "id": sid,
        "rule": rule,
        "cohort": cohort,
        "ts": "2025-01-01T00:00:00Z",
        "input": text or "Please help me.",
        "output": "Here is the answer.",
        "latency_ms": 100.0,
        "cost_usd": 0.001,
        "fallback": False,
    }
    record.update(fields)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--reject-json-schema", action="store_true")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    server = ScriptedJudge(
        latency=args.latency,
        reject_json_schema=args.reject_json_schema,
        api_key=args.api_key,
        port=args.port,
    ).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
