"""support-assistant: a tiny OpenAI-compatible chat service that reports its own samples.

It exists to show the install path end to end: it runs on a stock ``python:3.11-slim``
image (standard library only, plus the single-file SDK ``llm_canary.py`` mounted beside
it) and reports every answer to llm-canary with :class:`llm_canary.CanaryReporter`.

- ``POST /v1/chat/completions``: OpenAI chat format. With ``UPSTREAM_URL`` (any
  OpenAI-compatible base URL, e.g. ``http://vllm:8000/v1``; key in ``UPSTREAM_API_KEY``)
  it forwards the request; without it, or when the upstream fails (then ``fallback``),
  it answers a deterministic canned reply. ``metadata`` may carry ``queue``, ``risk``
  and ``task``. The answer's header ``X-Canary-Sample-Id`` names the sample for feedback.
- ``POST /v1/feedback``: ``{"id", "correction_minutes", "label", "accepted"}`` forwarded
  to llm-canary (how a support agent's edits come back).
- ``GET /healthz``.

Environment: ``PORT`` (8000), ``MODEL_NAME``, ``PROMPT_VERSION``, ``CANARY_RULE``
(support-assistant), ``PRICE_INPUT_USD_PER_M`` / ``PRICE_OUTPUT_USD_PER_M`` (what a
token costs, for ``cost_usd``), and what the SDK reads: ``CANARY_INGEST_URL``,
``CANARY_COHORT``, ``CANARY_REVISION``, the projected token file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm_canary import CanaryReporter

MAX_BODY = 1024 * 1024
CANNED = (
    "I have looked into it: {topic} is being handled and you will get an email shortly.",
    "Thanks for reaching out about {topic}. I have opened a ticket with our team.",
    "Here is what I found about {topic}: it is resolved on our side; please retry.",
)

log = logging.getLogger("support-assistant")


class Assistant:
    """The answering logic, separate from HTTP so it can be read in one place."""

    def __init__(self, reporter: CanaryReporter) -> None:
        self.reporter = reporter
        self.model = os.environ.get("MODEL_NAME", "canned-v1")
        self.prompt_version = os.environ.get("PROMPT_VERSION", "v1")
        self.upstream = os.environ.get("UPSTREAM_URL", "").rstrip("/") or None
        self.api_key = os.environ.get("UPSTREAM_API_KEY", "")
        self.price_in = float(os.environ.get("PRICE_INPUT_USD_PER_M", "0.4"))
        self.price_out = float(os.environ.get("PRICE_OUTPUT_USD_PER_M", "1.6"))

    def canned(self, messages: list[dict[str, Any]]) -> str:
        last = str(messages[-1].get("content", "")) if messages else ""
        digest = int(hashlib.sha256(f"{self.prompt_version}|{last}".encode()).hexdigest(), 16)
        topic = " ".join(last.split()[:6]) or "your request"
        return CANNED[digest % len(CANNED)].format(topic=topic)

    def ask_upstream(self, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0})
        request = urllib.request.Request(
            f"{self.upstream}/chat/completions", data=body.encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        return answer["choices"][0]["message"]["content"], answer.get("usage") or {}

    def answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        meta = request.get("metadata") if isinstance(request.get("metadata"), dict) else {}
        started = time.monotonic()
        fallback = False
        usage: dict[str, int] = {}
        if self.upstream:
            try:
                text, usage = self.ask_upstream(messages)
            except (OSError, ValueError, KeyError, IndexError) as exc:
                log.warning("upstream failed, answering from the fallback: %s", exc)
                text, fallback = self.canned(messages), True
        else:
            text = self.canned(messages)
        latency_ms = (time.monotonic() - started) * 1000
        prompt_tokens = int(usage.get("prompt_tokens") or _estimate_tokens(messages))
        completion_tokens = int(usage.get("completion_tokens") or _estimate_tokens(text))
        cost = (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6
        sample_id = self.reporter.report(
            input=[{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                   for m in messages if isinstance(m, dict)],
            output=text, latency_ms=latency_ms, cost_usd=cost, fallback=fallback,
            queue=meta.get("queue"), risk=meta.get("risk"), task=meta.get("task"),
            model=self.model, prompt_version=self.prompt_version,
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": self.model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, sample_id


def _estimate_tokens(value: Any) -> int:
    return max(1, math.ceil(len(json.dumps(value)) / 4))


def _declared_length(value: str | None) -> int:
    """The request's Content-Length; -1 (refused) when it is not a number."""
    try:
        return int(value or 0)
    except ValueError:
        return -1


class _Handler(BaseHTTPRequestHandler):
    """The assistant's HTTP API; :func:`make_handler` binds it to one assistant."""

    protocol_version = "HTTP/1.1"
    assistant: Assistant

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def send_json(self, code: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.send_json(200, {"status": "ok", "model": self.assistant.model})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = _declared_length(self.headers.get("Content-Length"))
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self.send_json(413, {"error": f"Content-Length must be 0..{MAX_BODY}"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            self.post_json(request)
        except ValueError as exc:
            self.send_json(400, {"error": str(exc)})

    def post_json(self, request: dict[str, Any]) -> None:
        """A chat completion (reported as a canary sample) or feedback on one."""
        if self.path == "/v1/chat/completions":
            answer, sample_id = self.assistant.answer(request)
            self.send_json(200, answer, {"X-Canary-Sample-Id": sample_id})
        elif self.path == "/v1/feedback":
            self.assistant.reporter.feedback(
                str(request.get("id", "")), request.get("correction_minutes"),
                request.get("label"), request.get("accepted"))
            self.send_json(202, {"queued": True})
        else:
            self.send_json(404, {"error": "not found"})


def make_handler(assistant: Assistant) -> type[BaseHTTPRequestHandler]:
    """The handler class bound to ``assistant`` (the HTTP server takes a class)."""
    return type("Handler", (_Handler,), {"assistant": assistant})


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    reporter = CanaryReporter(rule=os.environ.get("CANARY_RULE", "support-assistant"))
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))),
                                 make_handler(Assistant(reporter)))
    server.daemon_threads = True

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving on :%d as %s (cohort %s)", server.server_address[1],
             os.environ.get("MODEL_NAME", "canned-v1"), reporter.cohort)
    server.serve_forever()
    reporter.close()  # flush what is queued (bounded by its shutdown timeout)
    log.info("stopped: %s", reporter.stats())


if __name__ == "__main__":
    main()
