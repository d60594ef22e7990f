"""One structured question to the judge model, done robustly.

- The ``openai`` client is created with ``max_retries=0``: retries happen here, so each
  attempt is counted (calls, budget) and the policy is ours: retry 429, 5xx, 408,
  timeouts and connection errors up to ``max_retries`` times with exponential backoff
  and jitter; a server's ``Retry-After`` (or ``retry-after-ms``) is honoured, capped at
  ``max_retry_after_seconds``.
- Structured output: ``response_format={"type": "json_schema"}`` first; if the endpoint
  answers 400 about ``response_format``/``json_schema`` it falls back to ``json_object``,
  then to plain prompting and extracting the JSON from the text. The working mode is
  remembered per endpoint (the ``capabilities`` dict, shared between judges).
- Answers are validated with pydantic; a failure gets exactly one repair attempt (the
  validation error is sent back); a second failure makes the sample unjudged.
- The concurrency limit (a semaphore) covers in-flight HTTP calls only, not backoff sleeps.
- Every failure is classified into :class:`controller.models.UnjudgedReason`: connection,
  timeout, rate_limited and server_error (after the retries) are *transient*, the sample
  may be tried again later; bad_request, context_length, auth, not_found and malformed
  are *permanent* for that request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from controller.models import JudgeUsage, UnjudgedReason
from controller.retry_after import parse_retry_after
from controller.scrubbing import SecretScrubber

from .api_keys import NO_KEY, PLACEHOLDER_KEYS
from .cost import estimate_cost
from .prompts import repair_message
from .schemas import ANSWER_MODELS, Answer, Stage, check_answer, json_schema
from .settings import JudgeSettings

log = logging.getLogger("controller.judge")

StructuredMode = Literal["json_schema", "json_object", "prompt"]
_FALLBACK: dict[StructuredMode, StructuredMode] = {
    "json_schema": "json_object",
    "json_object": "prompt",
}
T = TypeVar("T", bound=BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_CONTEXT_WORDS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)


class CallError(Exception):
    """Judging this sample failed, for one of the closed set of reasons.

    ``fatal`` errors (bad key, unknown model) mean the endpoint is unusable: the judge
    stops calling it for the remaining samples.
    """

    def __init__(self, reason: UnjudgedReason, detail: str, *, fatal: bool = False) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.fatal = fatal


@dataclass
class UsageMeter:
    """Running usage of one sample."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    """None until a priced call is made; stays None without a price."""

    def to_model(self, cached: bool = False) -> JudgeUsage:
        """No call made costs 0; calls made without a price cost ``None`` (unknown)."""
        return JudgeUsage(
            calls=self.calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=0.0 if self.calls == 0 else self.cost_usd,
            cached=cached,
        )


OnCall = Callable[[float], None]
"""Called once per HTTP attempt with its cost, 0 when unpriced or failed (for the budget)."""


def extract_json(text: str) -> Any:
    """The JSON object in a reply: the whole text, else a fenced block, else the object
    starting at the first ``{`` (never a nested fragment of a broken outer object)."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        first = exc
    fence = _FENCE.search(stripped)
    if fence:
        try:
            return json.loads(fence.group(1))
        except json.JSONDecodeError:
            pass
    start = stripped.find("{")
    if start > 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(stripped, start)
            return value
        except json.JSONDecodeError:
            pass
    raise ValueError(f"the reply is not valid JSON ({first.msg} at char {first.pos})")


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _mentions_format(exc: openai.APIStatusError) -> bool:
    text = f"{exc.message} {exc.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object"))


def _too_long(exc: openai.APIStatusError) -> bool:
    """A 413, or a 400 whose message says the prompt exceeds the model's context."""
    if exc.status_code == 413:
        return True
    text = f"{exc.message} {exc.body}".lower()
    return any(word in text for word in _CONTEXT_WORDS)


def _refused(exc: openai.APIStatusError, describe: Callable[[BaseException], str]) -> CallError:
    """The permanent error for a 4xx the endpoint will answer the same way again."""
    if _too_long(exc):
        return CallError(UnjudgedReason.CONTEXT_LENGTH, describe(exc))
    return CallError(UnjudgedReason.BAD_REQUEST, describe(exc))


class ChatClient:
    """Asks one stage's question and returns a validated answer."""

    def __init__(
        self,
        settings: JudgeSettings,
        api_key: str | None,
        *,
        semaphore: asyncio.Semaphore,
        capabilities: dict[str, StructuredMode],
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._scrub = SecretScrubber([None if api_key in PLACEHOLDER_KEYS else api_key])
        self._semaphore = semaphore
        self._capabilities = capabilities
        self._rng = rng or random.Random()
        self._price = settings.unit_price
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY,
            base_url=settings.base_url,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )

    @property
    def structured_mode(self) -> StructuredMode:
        return self._capabilities.get(self.settings.endpoint, "json_schema")

    def meter(self) -> UsageMeter:
        """A fresh meter for one sample: cost counts from 0 when priced, else stays None."""
        return UsageMeter(cost_usd=None if self._price is None else 0.0)

    async def close(self) -> None:
        await self._client.close()

    async def ask(
        self,
        stage: Stage,
        messages: list[dict[str, Any]],
        meter: UsageMeter,
        on_call: OnCall,
        *,
        n_criteria: int | None = None,
    ) -> BaseModel:
        """A validated answer to one stage, with one repair attempt; else CallError."""
        s = self.settings
        policy, labels = bool(s.policy), s.decision_labels
        content, finish = await self._complete(stage, messages, meter, on_call)
        error = self._validate_error(stage, content, finish, policy, labels, n_criteria)
        if error is None:
            return self._parse(stage, content)
        log.info("judge answer for stage %s invalid (%s); asking for a repair", stage, error)
        repair = [*messages, {"role": "assistant", "content": content}, repair_message(error)]
        content, finish = await self._complete(stage, repair, meter, on_call)
        second = self._validate_error(stage, content, finish, policy, labels, n_criteria)
        if second is None:
            return self._parse(stage, content)
        raise CallError(
            UnjudgedReason.MALFORMED, self._scrub(f"stage {stage}: after one repair: {second}")
        )

    def _parse(self, stage: Stage, content: str) -> Answer:
        return ANSWER_MODELS[stage].model_validate(extract_json(content))

    def _validate_error(
        self,
        stage: Stage,
        content: str,
        finish: str | None,
        policy: bool,
        labels: tuple[str, ...],
        n_criteria: int | None,
    ) -> str | None:
        try:
            answer = self._parse(stage, content)
            check_answer(answer, policy=policy, labels=labels, n_criteria=n_criteria)
        except ValidationError as exc:
            error = f"schema validation failed: {_validation_text(exc)}"
        except ValueError as exc:
            error = str(exc)
        else:
            return None
        cut = " (the reply was cut off: finish_reason=length)" if finish == "length" else ""
        return error + cut

    async def _complete(
        self, stage: Stage, messages: list[dict[str, Any]], meter: UsageMeter, on_call: OnCall
    ) -> tuple[str, str | None]:
        """Content and finish reason, stepping down structured-output modes on rejection."""
        s = self.settings
        for _ in range(len(_FALLBACK) + 1):
            mode = self.structured_mode
            extra: dict[str, Any] = {}
            if mode == "json_schema":
                schema = json_schema(stage, bool(s.policy), s.decision_labels)
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": stage.schema_name, "strict": True, "schema": schema},
                }
            elif mode == "json_object":
                extra["response_format"] = {"type": "json_object"}
            try:
                return await self._call_with_retries(messages, extra, meter, on_call)
            except openai.BadRequestError as exc:
                if mode in _FALLBACK and _mentions_format(exc):
                    nxt = _FALLBACK[mode]
                    log.warning(
                        "endpoint %s rejected response_format %s; falling back to %s",
                        s.endpoint, mode, nxt,
                    )
                    self._capabilities[s.endpoint] = nxt
                    continue
                raise _refused(exc, self._describe) from None
        raise CallError(  # pragma: no cover
            UnjudgedReason.BAD_REQUEST, "no structured-output mode was accepted"
        )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, openai.APIStatusError):
            text = f"HTTP {exc.status_code}: {exc.message}"
        else:
            text = f"{type(exc).__name__}: {exc}"
            cause = exc.__cause__ or exc.__context__
            if cause is not None and str(cause):
                text += f" ({_root(cause)})"
        return self._scrub(text)[:500]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None:
            return min(retry_after, s.max_retry_after_seconds)
        backoff = min(s.backoff_max_seconds, s.backoff_base_seconds * (2**attempt))
        return backoff * (0.5 + 0.5 * self._rng.random())

    async def _call_with_retries(
        self,
        messages: list[dict[str, Any]],
        extra: dict[str, Any],
        meter: UsageMeter,
        on_call: OnCall,
    ) -> tuple[str, str | None]:
        s = self.settings
        last: CallError | None = None
        for attempt in range(s.max_retries + 1):
            retry_after: float | None = None
            try:
                async with self._semaphore:
                    meter.calls += 1
                    resp = await self._client.chat.completions.create(
                        model=s.model,
                        messages=messages,  # type: ignore[arg-type]
                        temperature=s.sampling_temperature,
                        max_tokens=s.max_tokens,
                        **extra,
                    )
            except openai.BadRequestError:
                on_call(0.0)
                raise
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                on_call(0.0)
                raise CallError(UnjudgedReason.AUTH, self._describe(exc), fatal=True) from None
            except openai.NotFoundError as exc:
                on_call(0.0)
                raise CallError(
                    UnjudgedReason.NOT_FOUND, self._describe(exc), fatal=True
                ) from None
            except openai.APITimeoutError as exc:
                on_call(0.0)
                last = CallError(UnjudgedReason.TIMEOUT, self._describe(exc))
            except openai.APIConnectionError as exc:
                on_call(0.0)
                last = CallError(UnjudgedReason.CONNECTION, self._describe(exc))
            except openai.APIStatusError as exc:
                on_call(0.0)
                code = exc.status_code
                if code == 429:
                    last = CallError(UnjudgedReason.RATE_LIMITED, self._describe(exc))
                elif code >= 500 or code == 408:
                    last = CallError(UnjudgedReason.SERVER_ERROR, self._describe(exc))
                else:
                    raise _refused(exc, self._describe) from None
                retry_after = parse_retry_after(exc.response.headers)
            else:
                return self._account(resp, meter, on_call)
            if attempt < s.max_retries:
                delay = self._delay(attempt, retry_after)
                log.warning(
                    "judge call failed (%s); retry %d/%d in %.2fs",
                    last.reason.value, attempt + 1, s.max_retries, delay,
                )
                await asyncio.sleep(delay)
        assert last is not None
        raise CallError(last.reason, f"gave up after {s.max_retries + 1} attempts: {last.detail}")

    def _account(self, resp: Any, meter: UsageMeter, on_call: OnCall) -> tuple[str, str | None]:
        usage = getattr(resp, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = estimate_cost(prompt, completion, self._price)
        meter.prompt_tokens += prompt
        meter.completion_tokens += completion
        if cost is not None:
            meter.cost_usd = (meter.cost_usd or 0.0) + cost
        on_call(cost or 0.0)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            return "", None
        message = choices[0].message
        return (message.content or ""), choices[0].finish_reason


def _root(exc: BaseException) -> str:
    """The innermost cause's message ("[Errno 111] Connection refused"), for the detail."""
    seen = 0
    while (exc.__cause__ or exc.__context__) is not None and seen < 10:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return f"{type(exc).__name__}: {exc}"
