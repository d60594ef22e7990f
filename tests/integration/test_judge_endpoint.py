"""The judge against a real local OpenAI-compatible server (canary_playground.scripted_judge)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from canary_playground.scripted_judge import Failure, ScriptedJudge, sample_record

from controller.judge import (
    Judge,
    Judged,
    JudgeResult,
    JudgeSettings,
    Price,
    Totals,
    calls_per_sample,
)
from controller.models import Level, Sample, Unjudged, UnjudgedReason
from controller.models.rule import Redaction


@pytest.fixture
def srv(judge: ScriptedJudge) -> ScriptedJudge:
    return judge


def make(srv: ScriptedJudge, **kw: Any) -> JudgeSettings:
    kw.setdefault("backoff_base_seconds", 0.01)
    return JudgeSettings(model="gpt-4o-mini", base_url=srv.base_url, **kw)


def samples(*texts: str, cohort: str = "baseline") -> list[Sample]:
    return [
        Sample.model_validate(sample_record(f"s{i}", t, cohort=cohort)) for i, t in enumerate(texts)
    ]


def judge_all(settings: JudgeSettings, batch: Sequence[Sample], **kw: Any) -> list[JudgeResult]:
    async def go() -> list[JudgeResult]:
        async with Judge(settings, **kw) as judge:
            return await judge.judge_many(batch)

    return asyncio.run(go())


def one(settings: JudgeSettings, text: str, **kw: Any) -> JudgeResult:
    return judge_all(settings, samples(text), **kw)[0]


class TestModes:
    def test_fast_is_one_call_and_scores_the_script(self, srv: ScriptedJudge) -> None:
        result = one(make(srv), "[[judge: fully,minor]]")
        assert isinstance(result, Judged)
        assert srv.calls == 1 and result.verdict.usage is not None
        assert result.verdict.usage.calls == 1
        assert [v.verdict for v in result.verdict.verdicts] == [Level.FULLY, Level.MINOR]
        assert result.verdict.score == 0.65  # evalLib at T = 0.5: the mean, no none
        assert result.verdict.aggregation == "evalLib"
        assert not result.success
        soft = one(make(srv, aggregation="softMin"), "[[judge: fully,minor]]")
        assert isinstance(soft, Judged)
        assert soft.verdict.score == pytest.approx(0.369224, abs=1e-6)  # softMin, T = 0.1
        assert result.verdict.model == "gpt-4o-mini" and result.verdict.prompt_version
        assert srv.stats.requests[0]["temperature"] == 0.0

    @pytest.mark.parametrize(
        ("extra", "calls"),
        [({}, 3), ({"policy": "No medical advice."}, 4), ({"decision_labels": ("a", "b")}, 4)],
    )
    def test_thorough_call_count(
        self, srv: ScriptedJudge, extra: dict[str, Any], calls: int
    ) -> None:
        settings = make(srv, mode="thorough", **extra)
        assert calls_per_sample(settings) == calls
        results = judge_all(settings, samples("[[judge: mostly]]", "x", "[[decision: a]]"))
        assert all(isinstance(r, Judged) for r in results)
        assert srv.calls == 3 * calls
        stages = Counter(r["response_format"]["json_schema"]["name"] for r in srv.stats.requests)
        want = {"judge_goal": 3, "judge_criteria": 3, "judge_verdicts": 3}
        assert stages == want | ({"judge_checks": 3} if calls == 4 else {})

    def test_usage_and_cost_recorded(self, srv: ScriptedJudge) -> None:
        price = Price.parse("0.15,0.60")
        result = one(make(srv, mode="thorough", policy="Be polite.", price=price), "hi")
        assert isinstance(result, Judged) and result.verdict.usage is not None
        usage = result.verdict.usage
        assert usage.calls == 4 and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
        assert usage.cost_usd == pytest.approx(expected)

    def test_no_price_no_cost(self, srv: ScriptedJudge) -> None:
        """A self-hosted endpoint (here: 127.0.0.1) has no list price, whatever the model is
        called: tokens are counted, the cost is unknown, never a guess."""
        async def go() -> tuple[list[JudgeResult], Totals]:
            async with Judge(make(srv, mode="thorough")) as judge:
                return await judge.judge_many(samples("hi", "[[fake: malformed]]")), judge.totals

        (ok, bad), totals = asyncio.run(go())
        assert isinstance(ok, Judged) and ok.verdict.usage is not None
        assert ok.verdict.usage.prompt_tokens > 0 and ok.verdict.usage.cost_usd is None
        assert isinstance(bad, Unjudged) and bad.usage.calls == 2 and bad.usage.cost_usd is None
        assert totals.cost_usd is None and not totals.priced
        assert totals.as_dict()["cost_usd"] is None and totals.prompt_tokens > 0
        with pytest.raises(ValueError, match="cost budget needs a price"):
            make(srv, max_cost_usd_per_interval=0.1)

    def test_policy_decision_and_multi_turn(self, srv: ScriptedJudge) -> None:
        record = sample_record("m1", "")
        record["input"] = [
            {"role": "user", "content": "Refund order 7? [[decision: approve]]"},
            {"role": "assistant", "content": "Which order?"},
            {"role": "user", "content": "Order 7. [[policy: violation]]"},
        ]
        sample = Sample.model_validate(record)
        for mode in ("fast", "thorough"):
            settings = make(srv, mode=mode, policy="Never promise refunds.",
                            decision_labels=("approve", "reject"))
            [result] = judge_all(settings, [sample])
            assert isinstance(result, Judged)
            assert result.verdict.policy_violation is True
            assert result.verdict.decision == "approve"
        assert "[user] Order 7." in srv.stats.requests[0]["messages"][1]["content"]

    def test_cohort_and_metadata_never_reach_the_judge(self, srv: ScriptedJudge) -> None:
        batch = [
            Sample.model_validate(
                sample_record(f"canary-id-{i}", "Translate hello.", cohort=c, queue="vip-queue")
            )
            for i, c in enumerate(["canary", "baseline"] * 2)
        ]
        judge_all(make(srv, mode="thorough", policy="p"), batch)
        for text in srv.request_texts():
            for leaked in ("canary", "baseline", "vip-queue", "canary-id"):
                assert leaked not in text

    def test_batches_are_interleaved(self, srv: ScriptedJudge) -> None:
        batch = samples("B0", "B1", "B2") + samples("C0", "C1", "C2", cohort="canary")
        judge_all(make(srv, concurrency=1), batch)
        order = [
            next(w for w in ("B0", "B1", "B2", "C0", "C1", "C2") if w in t)
            for t in srv.request_texts()
        ]
        assert order == ["B0", "C0", "B1", "C1", "B2", "C2"]


class TestMalformed:
    def test_unjudged_after_one_repair_and_never_success(self, srv: ScriptedJudge) -> None:
        result = one(make(srv), "[[fake: malformed]]")
        assert isinstance(result, Unjudged)
        assert result.reason == "malformed" and "cut off" in result.detail
        assert result.usage.calls == 2 and srv.calls == 2
        assert not hasattr(result, "score") and not hasattr(result, "success")

    def test_repair_fixes_truncated_json(self, srv: ScriptedJudge) -> None:
        result = one(make(srv), "[[fake: malformed-once]]")
        assert isinstance(result, Judged) and result.verdict.usage is not None
        assert result.verdict.usage.calls == 2
        repair = srv.stats.requests[1]["messages"]
        assert repair[-2]["role"] == "assistant" and "could not be used" in repair[-1]["content"]

    def test_wrong_types(self, srv: ScriptedJudge) -> None:
        bad = one(make(srv), "[[fake: wrongtypes]]")
        assert isinstance(bad, Unjudged) and bad.reason == "malformed"
        assert "schema validation failed" in bad.detail
        assert isinstance(one(make(srv), "[[fake: wrongtypes-once]]"), Judged)

    def test_decision_outside_labels_is_rejected(self, srv: ScriptedJudge) -> None:
        result = one(make(srv, decision_labels=("approve", "reject")), "[[decision: maybe]]")
        assert isinstance(result, Unjudged) and "not one of" in result.detail


class TestStructuredFallback:
    def test_json_schema_rejected_falls_back_and_is_remembered(self) -> None:
        with ScriptedJudge(reject_json_schema=True) as srv:
            caps: dict[str, Any] = {}
            results = judge_all(make(srv, concurrency=1), samples("a", "b", "c"), capabilities=caps)
            assert all(isinstance(r, Judged) for r in results)
            assert srv.stats.statuses == [400, 200, 200, 200]
            assert caps == {srv.base_url: "json_object"}
            # a new judge sharing the capabilities does not try json_schema again
            judge_all(make(srv), samples("d"), capabilities=caps)
            assert srv.stats.statuses[-1] == 200 and srv.calls == 5

    def test_prompt_and_extract_when_no_json_mode(self) -> None:
        with ScriptedJudge(reject_json_schema=True, reject_json_object=True) as srv:
            settings = make(srv, mode="thorough", concurrency=1)
            [result] = judge_all(settings, samples("[[judge: none]]"))
            assert isinstance(result, Judged) and result.verdict.score == 0.0
            assert srv.stats.statuses == [400, 400, 200, 200, 200]
            assert "response_format" not in srv.stats.requests[-1]


class TestRobustCalls:
    def test_retry_after_is_honoured(self, srv: ScriptedJudge) -> None:
        srv.fail_next(Failure(429, {"Retry-After": "1"}, "slow down"))
        start = time.monotonic()
        result = one(make(srv), "x")
        elapsed = time.monotonic() - start
        assert isinstance(result, Judged) and result.verdict.usage is not None
        assert result.verdict.usage.calls == 2
        assert elapsed >= 0.95
        assert srv.stats.times[1] - srv.stats.times[0] >= 0.95

    def test_retry_after_is_capped(self, srv: ScriptedJudge) -> None:
        srv.fail_next(Failure(429, {"Retry-After": "3600"}))
        start = time.monotonic()
        assert isinstance(one(make(srv, max_retry_after_seconds=0.05), "x"), Judged)
        assert time.monotonic() - start < 2

    def test_5xx_retried_then_unjudged(self, srv: ScriptedJudge) -> None:
        srv.fail_next(Failure(500), Failure(502))
        ok = one(make(srv), "x")
        assert isinstance(ok, Judged) and ok.verdict.usage is not None
        assert ok.verdict.usage.calls == 3
        srv.fail_next(*[Failure(503)] * 3)
        bad = one(make(srv, max_retries=2), "x")
        assert isinstance(bad, Unjudged) and bad.reason == "server_error"
        assert bad.usage.calls == 3 and "gave up after 3 attempts" in bad.detail

    def test_timeout(self, srv: ScriptedJudge) -> None:
        result = one(make(srv, timeout_seconds=0.2, max_retries=1), "[[fake: slow=1]]")
        assert isinstance(result, Unjudged) and result.reason == "timeout"
        assert result.usage.calls == 2

    def test_connection_refused(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = JudgeSettings(
            model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1,
            backoff_base_seconds=0.01,
        )
        [result] = judge_all(settings, samples("x"))
        assert isinstance(result, Unjudged) and result.reason == "connection"
        assert result.transient and "refused" in result.detail.lower()

    @pytest.mark.parametrize(
        ("failures", "reason", "transient"),
        [
            ([Failure(429)] * 2, UnjudgedReason.RATE_LIMITED, True),
            ([Failure(503)] * 2, UnjudgedReason.SERVER_ERROR, True),
            ([Failure(400, message="This model's maximum context length is 8192 tokens, "
                                   "however you requested 9000 tokens")],
             UnjudgedReason.CONTEXT_LENGTH, False),
            ([Failure(413, message="Request body too large")], UnjudgedReason.CONTEXT_LENGTH,
             False),
            ([Failure(422, message="unsupported parameter")], UnjudgedReason.BAD_REQUEST, False),
            ([Failure(401)], UnjudgedReason.AUTH, False),
            ([Failure(404, message="model not found")], UnjudgedReason.NOT_FOUND, False),
        ],
    )
    def test_failures_are_classified(
        self, srv: ScriptedJudge, failures: list[Failure], reason: UnjudgedReason,
        transient: bool,
    ) -> None:
        srv.fail_next(*failures)
        result = one(make(srv, max_retries=1), "x")
        assert isinstance(result, Unjudged)
        assert (result.reason, result.transient) == (reason, transient)
        assert result.usage.calls == (2 if transient else 1)

    def test_concurrency_really_overlaps_and_is_capped(self) -> None:
        with ScriptedJudge(latency=0.2) as srv:
            start = time.monotonic()
            results = judge_all(make(srv, concurrency=8), samples(*["x"] * 16))
            elapsed = time.monotonic() - start
            assert all(isinstance(r, Judged) for r in results)
            assert srv.stats.max_in_flight == 8
            assert elapsed < 16 * 0.2 / 3  # serial would take 3.2 s
            srv.reset()
            judge_all(make(srv, concurrency=3, mode="thorough"), samples(*["y"] * 6))
            assert srv.stats.max_in_flight == 3

    def test_budget_stops_judging_and_keeps_cohorts_balanced(self, srv: ScriptedJudge) -> None:
        batch = samples(*["b"] * 6) + samples(*["c"] * 6, cohort="canary")
        results = judge_all(make(srv, max_calls_per_interval=4, concurrency=2), batch)
        judged = [s for s, r in zip(batch, results, strict=True) if isinstance(r, Judged)]
        assert srv.calls == 4 and len(judged) == 4
        assert sorted(s.cohort.value for s in judged) == ["baseline"] * 2 + ["canary"] * 2
        left = [r for r in results if isinstance(r, Unjudged)]
        assert len(left) == 8 and all(r.reason == "budget" and r.usage.calls == 0 for r in left)

    def test_thorough_budget_only_starts_samples_that_fit(self, srv: ScriptedJudge) -> None:
        results = judge_all(make(srv, mode="thorough", max_calls_per_interval=10), samples(*"abcd"))
        assert [isinstance(r, Judged) for r in results].count(True) == 3
        assert srv.calls == 9

    def test_cost_budget(self, srv: ScriptedJudge) -> None:
        results = judge_all(
            make(srv, max_cost_usd_per_interval=1e-9, concurrency=1, price=Price.parse("1,1")),
            samples("a", "b", "c"),
        )
        assert isinstance(results[0], Judged)
        assert [r.reason for r in results[1:] if isinstance(r, Unjudged)] == ["budget"] * 2
        assert srv.calls == 1


class TestCache:
    def test_cache_survives_restart(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        path = tmp_path / "verdicts.sqlite"
        batch = samples("[[judge: fully,partially]]", "[[judge: minor]]", "[[fake: malformed]]")
        first = judge_all(make(srv), batch, cache=path)
        assert srv.calls == 1 + 1 + 2
        srv.reset()
        # a new Judge object (as after a restart) with a stricter aggregation
        second = judge_all(make(srv, temperature=0.1), batch, cache=path)
        assert srv.calls == 2  # only the unjudged sample is tried again
        for a, b in zip(first[:2], second[:2], strict=True):
            assert isinstance(a, Judged) and isinstance(b, Judged)
            assert b.verdict.usage is not None and b.verdict.usage.cached
            assert b.verdict.usage.calls == 0
            assert b.verdict.verdicts == a.verdict.verdicts
        first_score = first[0].verdict.score  # type: ignore[union-attr]
        assert second[0].verdict.score < first_score  # type: ignore[union-attr]
        srv.reset()
        judge_all(make(srv, policy="new policy"), batch[:1], cache=path)
        assert srv.calls == 1  # different rubric, different key


SECRETS = ("jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "ACCT-987654",
           "tool-only-note")
REDACTION = Redaction.model_validate({
    "builtins": ["email", "cardNumber", "phone"],
    "patterns": [{"regex": r"ACCT-\d{6}", "replacement": "[ACCOUNT]"}],
    "roles": ["user", "assistant"],
})


def secret_sample(marker: str) -> Sample:
    record = sample_record("r1", "")
    record["input"] = [
        {"role": "user",
         "content": f"I am jane.doe@example.com, card 4111 1111 1111 1111. {marker}"},
        {"role": "tool", "content": "tool-only-note: customer phone +44 20 7946 0958"},
        {"role": "user", "content": "Refund account ACCT-987654 please, call +44 20 7946 0958."},
    ]
    record["output"] = "Done for jane.doe@example.com on ACCT-987654."
    return Sample.model_validate(record)


class TestRedaction:
    @pytest.mark.parametrize(
        ("server", "mode", "marker"),
        [
            ({}, "fast", "[[judge: fully,minor]]"),
            ({}, "thorough", "[[fake: malformed-once]]"),  # the repair prompt too
            ({"reject_json_schema": True, "reject_json_object": True}, "thorough", ""),
        ],
    )
    def test_secrets_never_reach_the_judge(
        self, server: dict[str, bool], mode: str, marker: str
    ) -> None:
        with ScriptedJudge(**server) as srv:
            settings = make(srv, mode=mode, redaction=REDACTION, policy="No refunds.",
                            decision_labels=("approve", "reject"))
            [result] = judge_all(settings, [secret_sample(marker)])
            assert isinstance(result, Judged), result
            bodies = list(srv.request_texts())
        assert len(bodies) >= (1 if mode == "fast" else 4)
        if marker == "[[fake: malformed-once]]":
            assert any("could not be used" in b for b in bodies)  # a repair was sent
        for body in bodies:
            for secret in SECRETS:
                assert secret not in body
            assert "[EMAIL]" in body and "[CARD]" in body and "[ACCOUNT]" in body
        if marker == "[[judge: fully,minor]]":  # markers survive: the verdicts are scripted
            assert [v.verdict for v in result.verdict.verdicts] == [Level.FULLY, Level.MINOR]

    def test_cache_key_includes_the_redaction(self, srv: ScriptedJudge, tmp_path: Path) -> None:
        path = tmp_path / "verdicts.sqlite"
        sample = [secret_sample("")]
        judge_all(make(srv), sample, cache=path)
        assert srv.calls == 1
        judge_all(make(srv, redaction=REDACTION), sample, cache=path)
        assert srv.calls == 2  # the unredacted verdict is not reused
        judge_all(make(srv, redaction=REDACTION), sample, cache=path)
        assert srv.calls == 2  # same redaction: cached
        changed = REDACTION.model_copy(update={"roles": None})
        judge_all(make(srv, redaction=changed), sample, cache=path)
        assert srv.calls == 3
        judge_all(make(srv), sample, cache=path)
        assert srv.calls == 3  # no redaction: the first verdict, key unchanged by the feature
