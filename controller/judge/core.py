"""The judge: one sample in, a verdict (or an explicit "unjudged") out.

Modes and their calls per sample (without retries or repairs):

- ``fast``: 1 call returning goal, criteria with verdicts, and policy/decision fields.
- ``thorough``: one call per stage, as the reference metric does: goal, criteria,
  verdicts, and a checks stage (policy and decision label) = 4 calls when the rule sets a
  policy or decision labels, 3 calls when it sets neither.

Each retry and each repair attempt is one more call; a cache hit is 0 calls.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel

from controller.models import (
    CriterionVerdict,
    RecordedVerdict,
    Sample,
    Unjudged,
    UnjudgedReason,
)

from .aggregate import score_verdicts
from .budget import Budget, BudgetExhausted, Reservation
from .cache import VerdictCache, cache_key
from .client import CallError, ChatClient, StructuredMode, UsageMeter
from .interleave import interleaved_order
from .prompts import PROMPT_VERSION, build_messages
from .redaction import ContentRedactor
from .schemas import ChecksAnswer, CriteriaAnswer, FastAnswer, GoalAnswer, Stage, VerdictsAnswer
from .settings import JudgeSettings

M = TypeVar("M", bound=BaseModel)


def calls_per_sample(settings: JudgeSettings) -> int:
    """Calls one sample needs when nothing goes wrong (see the module docstring)."""
    if settings.mode == "fast":
        return 1
    return 4 if (settings.policy or settings.decision_labels) else 3


@dataclass(frozen=True)
class Judged:
    """A scored sample. ``success`` uses the threshold the judge ran with."""

    verdict: RecordedVerdict
    threshold: float

    @property
    def success(self) -> bool:
        return self.verdict.score >= self.threshold


JudgeResult = Judged | Unjudged


@dataclass
class Totals:
    """Usage summed over samples (per rule; reset per interval with :meth:`Judge.take_totals`)."""

    samples: int = 0
    judged: int = 0
    successes: int = 0
    cache_hits: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    """None once any paid call had no price: a sum with unknown parts is unknown."""
    unjudged: Counter[str] = field(default_factory=Counter)

    def add(self, result: JudgeResult) -> None:
        self.samples += 1
        usage = result.usage if isinstance(result, Unjudged) else result.verdict.usage
        if isinstance(result, Judged):
            self.judged += 1
            self.successes += int(result.success)
        else:
            self.unjudged[result.reason.value] += 1
        if usage is not None:
            self.cache_hits += int(usage.cached)
            self.calls += usage.calls
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
            if usage.cost_usd is None or self.cost_usd is None:
                self.cost_usd = None
            else:
                self.cost_usd += usage.cost_usd

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "judged": self.judged,
            "successes": self.successes,
            "unjudged": dict(self.unjudged),
            "cache_hits": self.cache_hits,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
        }


class Judge:
    """Judges samples against one endpoint with one rule's settings.

    Share ``capabilities`` between judges of the same process to remember which
    structured-output mode each endpoint accepts. Use as ``async with Judge(...)``.
    """

    def __init__(
        self,
        settings: JudgeSettings,
        *,
        api_key: str | None = None,
        cache: VerdictCache | str | Path | None = None,
        budget: Budget | None = None,
        capabilities: dict[str, StructuredMode] | None = None,
    ) -> None:
        self.settings = settings
        self.prompt_version = PROMPT_VERSION
        self.cache = VerdictCache(cache) if isinstance(cache, str | Path) else cache
        self._owns_cache = isinstance(cache, str | Path)
        self.budget = budget or Budget(
            settings.max_calls_per_interval,
            settings.max_cost_usd_per_interval,
            settings.interval_seconds,
        )
        self.totals = Totals()
        self._fatal: CallError | None = None
        self._redactor = ContentRedactor(settings.redaction)
        self._client = ChatClient(
            settings,
            api_key,
            semaphore=asyncio.Semaphore(settings.concurrency),
            capabilities=capabilities if capabilities is not None else {},
        )

    async def __aenter__(self) -> Judge:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    @property
    def unusable(self) -> CallError | None:
        """The fatal error (bad key, unknown model) that stopped this judge, if any."""
        return self._fatal

    @property
    def structured_mode(self) -> StructuredMode:
        return self._client.structured_mode

    def take_totals(self) -> Totals:
        """The totals so far, starting a new count (call once per analysis interval)."""
        totals, self.totals = self.totals, Totals()
        return totals

    async def judge(self, sample: Sample) -> JudgeResult:
        """Judge one sample. Never raises for endpoint or answer problems."""
        result = await self._judge(sample)
        self.totals.add(result)
        return result

    async def judge_many(
        self,
        samples: Sequence[Sample],
        on_result: Callable[[int, JudgeResult], None] | None = None,
    ) -> list[JudgeResult]:
        """Judge a batch, cohorts interleaved, at most ``concurrency`` calls in flight.

        Results come back in input order; ``on_result(index, result)`` fires as each ends.
        """
        order = interleaved_order([s.cohort for s in samples])
        results: list[JudgeResult | None] = [None] * len(samples)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in order:
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results[i] = await self.judge(samples[i])
                if on_result is not None:
                    on_result(i, results[i])  # type: ignore[arg-type]

        n_workers = min(self.settings.concurrency, len(samples))
        await asyncio.gather(*(worker() for _ in range(n_workers)))
        return [r for r in results if r is not None]

    def _unjudged(
        self, reason: UnjudgedReason, detail: str, meter: UsageMeter | None = None
    ) -> Unjudged:
        return Unjudged(
            reason=reason,
            detail=detail,
            model=self.settings.model,
            prompt_version=self.prompt_version,
            usage=(meter or UsageMeter()).to_model(),
        )

    async def _judge(self, sample: Sample) -> JudgeResult:
        if self._fatal is not None:
            return self._unjudged(self._fatal.reason, f"endpoint unusable: {self._fatal.detail}")
        key = cache_key(
            self.settings,
            self.prompt_version,
            _plain(sample.input),
            _plain(sample.output),
            redaction=self._redactor.fingerprint,
        )
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return self._verdict(cached, UsageMeter(), cached=True)
        try:
            reservation = self.budget.reserve(calls_per_sample(self.settings))
        except BudgetExhausted as exc:
            return self._unjudged(UnjudgedReason.BUDGET, str(exc))
        meter = self._client.meter()
        try:
            answer = await self._ask_all(sample, meter, reservation)
        except CallError as exc:
            if exc.fatal and self._fatal is None:
                self._fatal = exc
            return self._unjudged(exc.reason, exc.detail, meter)
        finally:
            reservation.close()
        if self.cache is not None:
            self.cache.put(key, answer)
        return self._verdict(answer, meter, cached=False)

    async def _ask_all(
        self, sample: Sample, meter: UsageMeter, reservation: Reservation
    ) -> dict[str, Any]:
        """The judge's raw answer in one normal form (what the cache stores)."""
        s = self.settings
        ask = self._client.ask
        kw: dict[str, Any] = {"policy": s.policy, "labels": s.decision_labels}
        conv = self._redactor.sample(sample.input, sample.output)
        on_call = reservation.record_call
        if s.mode == "fast":
            fast = _as(FastAnswer, await ask(Stage.FAST, build_messages(Stage.FAST, *conv, **kw),
                                             meter, on_call))
            return _normal(fast.goal, fast.criteria, fast)
        goal = _as(GoalAnswer, await ask(Stage.GOAL, build_messages(Stage.GOAL, *conv),
                                         meter, on_call)).goal
        criteria = _as(CriteriaAnswer, await ask(
            Stage.CRITERIA, build_messages(Stage.CRITERIA, *conv, goal=goal), meter, on_call
        )).criteria
        verdicts = _as(VerdictsAnswer, await ask(
            Stage.VERDICTS,
            build_messages(Stage.VERDICTS, *conv, goal=goal, criteria=criteria),
            meter, on_call, n_criteria=len(criteria),
        )).verdicts
        checks = ChecksAnswer()
        if s.policy or s.decision_labels:
            checks = _as(ChecksAnswer, await ask(
                Stage.CHECKS, build_messages(Stage.CHECKS, *conv, **kw), meter, on_call
            ))
        return _normal(goal, verdicts, checks)

    def _verdict(self, answer: dict[str, Any], meter: UsageMeter, *, cached: bool) -> Judged:
        s = self.settings
        verdicts = [CriterionVerdict.model_validate(v) for v in answer["verdicts"]]
        verdict = RecordedVerdict(
            score=score_verdicts(verdicts, s.effective_temperature, s.aggregation),
            verdicts=verdicts,
            model=s.model,
            prompt_version=self.prompt_version,
            goal=answer.get("goal"),
            policy_violation=answer.get("policy_violation") if s.policy else None,
            policy_reason=answer.get("policy_reason") if s.policy else None,
            decision=answer.get("decision") if s.decision_labels else None,
            mode=s.mode,
            aggregation=s.aggregation,
            usage=meter.to_model(cached=cached),
        )
        return Judged(verdict=verdict, threshold=s.threshold)


def _as(model: type[M], value: BaseModel) -> M:
    assert isinstance(value, model)
    return value


def _normal(goal: str, verdicts: Sequence[BaseModel], checks: ChecksAnswer) -> dict[str, Any]:
    return {
        "goal": goal,
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "policy_violation": checks.policy_violation,
        "policy_reason": checks.policy_reason,
        "decision": checks.decision,
    }


def _plain(value: Any) -> Any:
    """JSON-ready form of an input/output (string or list of turns) for the cache key."""
    if isinstance(value, str):
        return value
    return [t.model_dump(mode="json") if isinstance(t, BaseModel) else t for t in value]
