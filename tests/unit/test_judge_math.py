"""Pure parts of the judge: aggregation, calibration statistics, interleaving, parsing."""

from __future__ import annotations

import math

import pytest
from canary_playground.scripted_judge import sample_record
from hypothesis import given
from hypothesis import strategies as st

from controller.judge import (
    JudgeHumanCounts,
    Price,
    aggregate,
    calibrate,
    cohen_kappa,
    estimate_cost,
    extract_json,
    interleave,
    interleaved_order,
    judge_trusted,
    price_for,
)
from controller.judge.aggregate import eval_lib_exponent, eval_lib_score, soft_min_score
from controller.judge.budget import Budget, BudgetExhausted
from controller.judge.schemas import ChecksAnswer, Stage, VerdictsAnswer, check_answer, json_schema
from controller.models import (
    Aggregation,
    JudgeSpec,
    Level,
    Sample,
    Unjudged,
    UnjudgedReason,
)
from controller.scrubbing import SecretScrubber

L = Level
SOFT = Aggregation.SOFT_MIN
EVAL = Aggregation.EVAL_LIB


class TestSoftMin:
    def test_known_values(self) -> None:
        # -T ln((e^{-1/T} + e^{-0.3/T}) / 2), worked by hand.
        assert aggregate([L.FULLY, L.MINOR], 0.1, SOFT) == pytest.approx(0.369224, abs=1e-6)
        assert aggregate([L.FULLY, L.MINOR], 1.0, SOFT) == pytest.approx(0.589961, abs=1e-6)
        assert aggregate([L.MOSTLY], 0.1, SOFT) == pytest.approx(0.9)
        assert aggregate([L.FULLY, L.FULLY, L.FULLY], 0.05, SOFT) == pytest.approx(1.0)
        assert aggregate([L.NONE, L.NONE], 3.0, SOFT) == pytest.approx(0.0)
        # the issue's example: the same verdicts fail here at T = 0.5 and pass in evalLib
        # -0.5 ln((2 e^-1.8 + e^-0.6) / 3) and -0.5 ln((e^-2 + 1) / 2)
        assert aggregate([L.MOSTLY, L.MOSTLY, L.MINOR], 0.5, SOFT) == pytest.approx(
            0.613559, abs=1e-6
        )
        assert aggregate([L.FULLY, L.NONE], 0.5, SOFT) == pytest.approx(0.283110, abs=1e-6)

    def test_limits(self) -> None:
        levels = [L.FULLY, L.PARTIALLY, L.MINOR]
        assert aggregate(levels, 1e-4, SOFT) == pytest.approx(0.3, abs=1e-3)  # weakest
        assert aggregate(levels, 1e4, SOFT) == pytest.approx((1.0 + 0.7 + 0.3) / 3, abs=1e-3)

    def test_threshold_example(self) -> None:
        # One partial criterion passes a 0.7 threshold; one minor criterion does not.
        assert aggregate([L.FULLY, L.PARTIALLY], 0.1, SOFT) >= 0.7
        assert aggregate([L.FULLY, L.FULLY, L.MINOR], 0.1, SOFT) < 0.7

    @given(
        st.lists(st.sampled_from(list(Level)), min_size=1, max_size=3),
        st.floats(min_value=0.01, max_value=100),
        st.floats(min_value=0.01, max_value=100),
    )
    def test_between_min_and_mean_and_monotone(
        self, levels: list[Level], t1: float, t2: float
    ) -> None:
        scores = [lv.score for lv in levels]
        lo, hi = sorted((t1, t2))
        a, b = aggregate(levels, lo, SOFT), aggregate(levels, hi, SOFT)
        for value in (a, b):
            assert min(scores) - 1e-9 <= value <= sum(scores) / len(scores) + 1e-9
            assert 0.0 <= value <= 1.0
        assert a <= b + 1e-9  # lower temperature is stricter


class TestEvalLib:
    """eval_lib's power mean with its none penalty, checked against values worked by hand
    (tests/integration/test_judge_parity.py checks it against the library itself)."""

    def test_exponent_mapping(self) -> None:
        assert eval_lib_exponent(0.1) == pytest.approx(-8.0)
        assert eval_lib_exponent(0.5) == pytest.approx(1.0)
        assert eval_lib_exponent(1.0) == pytest.approx(12.25)
        assert eval_lib_exponent(0.0) == pytest.approx(-8.0)  # clamped, as eval_lib does

    def test_the_issue_examples(self) -> None:
        # T = 0.5 is p = 1, the arithmetic mean; no none, no penalty.
        assert aggregate([L.MOSTLY, L.MOSTLY, L.MINOR], 0.5) == pytest.approx(0.7)
        # one none out of two: mean 0.5 times (1 - 1/2)^((1.5 - 0.5) * 1/4)
        assert aggregate([L.FULLY, L.NONE], 0.5) == round(0.5 * 0.5**0.25, 4) == 0.4204

    def test_power_mean_and_penalty(self) -> None:
        # T = 0.1: p = -8, near the minimum
        assert eval_lib_score([1.0, 0.3], 0.1) == round(((1 + 0.3**-8) / 2) ** (-1 / 8), 4)
        # T = 1.0: p = 12.25, near the maximum
        assert eval_lib_score([1.0, 0.3], 1.0) == round(((1 + 0.3**12.25) / 2) ** (1 / 12.25), 4)
        # five criteria: full-strength penalty, alpha = 1.5 - T
        assert eval_lib_score([1, 1, 1, 1, 0], 0.5) == pytest.approx(0.8 * 0.8**1.0)
        assert eval_lib_score([1, 1, 1, 1, 0], 0.1) == pytest.approx(0.0, abs=1e-4)
        assert eval_lib_score([0.0], 0.5) == 0.0
        assert eval_lib_score([0.9], 0.3) == pytest.approx(0.9)  # one criterion: itself

    def test_rounded_to_four_decimals_like_the_library(self) -> None:
        value = eval_lib_score([1.0, 0.7, 0.3], 0.37)
        assert value == round(value, 4)

    def test_temperature_range_refused(self) -> None:
        for bad in (0.05, 1.2, 0.0, -1.0, math.inf, math.nan):
            with pytest.raises(ValueError):
                eval_lib_score([1.0], bad)
        with pytest.raises(ValueError, match="softMin"):
            JudgeSpec(model="m", temperature=0.05)
        assert JudgeSpec(model="m", temperature=0.05, aggregation="softMin").temperature == 0.05

    def test_defaults(self) -> None:
        spec = JudgeSpec(model="m")
        assert spec.aggregation is EVAL and spec.effective_temperature == 0.5
        assert JudgeSpec(model="m", aggregation="softMin").effective_temperature == 0.1

    @given(
        st.lists(st.sampled_from(list(Level)), min_size=1, max_size=8),
        st.floats(min_value=0.1, max_value=1.0),
        st.floats(min_value=0.1, max_value=1.0),
    )
    def test_bounded_and_monotone_in_temperature(
        self, levels: list[Level], t1: float, t2: float
    ) -> None:
        scores = [lv.score for lv in levels]
        lo, hi = sorted((t1, t2))
        a, b = aggregate(levels, lo), aggregate(levels, hi)
        for value in (a, b):
            assert 0.0 <= value <= max(scores) + 1e-4
        if 0.0 not in scores:  # without none the penalty is 1: a power mean, monotone in p
            assert min(scores) - 1e-4 <= a <= b + 1e-4

    def test_one_place_for_each_formula(self) -> None:
        assert aggregate([L.FULLY, L.MINOR], 0.3, SOFT) == soft_min_score([1.0, 0.3], 0.3)
        assert aggregate([L.FULLY, L.MINOR], 0.3, EVAL) == eval_lib_score([1.0, 0.3], 0.3)


class TestCalibration:
    def test_kappa_textbook_example(self) -> None:
        # Wikipedia's worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4.
        assert cohen_kappa(JudgeHumanCounts(tp=20, fp=5, fn=10, tn=15)) == pytest.approx(0.4)

    def test_kappa_perfect_and_undefined(self) -> None:
        assert cohen_kappa(JudgeHumanCounts(tp=3, tn=2)) == pytest.approx(1.0)
        assert cohen_kappa(JudgeHumanCounts(tp=5)) is None  # both raters constant
        assert cohen_kappa(JudgeHumanCounts()) is None

    @given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
    def test_kappa_matches_definition(self, pairs: list[tuple[bool, bool]]) -> None:
        judge = [j for j, _ in pairs]
        human = [h for _, h in pairs]
        c = JudgeHumanCounts.from_pairs(judge, human)
        n = len(pairs)
        po = sum(j == h for j, h in pairs) / n
        pj, ph = sum(judge) / n, sum(human) / n
        pe = pj * ph + (1 - pj) * (1 - ph)
        k = cohen_kappa(c)
        if math.isclose(pe, 1.0):
            assert k is None
        else:
            assert k is not None and k == pytest.approx((po - pe) / (1 - pe))
            assert -1.0 - 1e-9 <= k <= 1.0 + 1e-9

    def test_calibrate_figures_and_unjudged(self) -> None:
        judge = [True, True, False, None, False, True]
        human = [True, False, False, True, True, True]
        judge_scores = [0.9, 0.8, 0.2, None, 0.5, 1.0]
        human_scores = [1.0, 0.0, 0.0, 1.0, None, 1.0]
        cal = calibrate(judge, human, judge_scores, human_scores)
        assert cal.confusion == JudgeHumanCounts(tp=2, fp=1, fn=1, tn=1)
        assert cal.unjudged == 1 and cal.unjudged_rate == pytest.approx(1 / 6)
        assert cal.agreement == pytest.approx(3 / 5)
        assert cal.precision == pytest.approx(2 / 3)
        assert cal.recall == pytest.approx(2 / 3)
        assert cal.f1 == pytest.approx(2 / 3)
        assert cal.score_mae == pytest.approx((0.1 + 0.8 + 0.2 + 0.0) / 4)

    def test_judge_trusted(self) -> None:
        spec = JudgeSpec(model="m", min_kappa=0.6)
        assert judge_trusted(0.7, spec)[0]
        ok, reason = judge_trusted(0.5, spec)
        assert not ok and "0.50" in reason and "minKappa 0.60" in reason
        assert not judge_trusted(None, spec)[0]
        assert judge_trusted(None, JudgeSpec(model="m"))[0]


def _samples(cohorts: str) -> list[Sample]:
    names = {"b": "baseline", "c": "canary"}
    return [
        Sample.model_validate(sample_record(f"{ch}{i}", cohort=names[ch]))
        for i, ch in enumerate(cohorts)
    ]


class TestInterleave:
    def test_equal_counts_alternate(self) -> None:
        out = interleave(_samples("bbbccc"))
        assert [s.cohort.value[0] for s in out] == list("bcbcbc")
        assert [s.id for s in out] == ["b0", "c3", "b1", "c4", "b2", "c5"]

    @given(st.lists(st.sampled_from("bc"), min_size=1, max_size=40))
    def test_every_prefix_is_proportional(self, groups: list[str]) -> None:
        order = interleaved_order(groups)
        assert sorted(order) == list(range(len(groups)))
        n_b = groups.count("b")
        for k in range(1, len(order) + 1):
            seen_b = sum(groups[i] == "b" for i in order[:k])
            assert abs(seen_b - k * n_b / len(groups)) <= 1.0 + 1e-9
        # original order kept within each group
        for g in "bc":
            idx = [i for i in order if groups[i] == g]
            assert idx == sorted(idx)


class TestParsingAndCost:
    def test_extract_json(self) -> None:
        assert extract_json('{"a": 1}') == {"a": 1}
        assert extract_json('Sure!\n```json\n{"a": {"b": 2}}\n```') == {"a": {"b": 2}}
        with pytest.raises(ValueError, match="not valid JSON"):
            extract_json('{"a": 1')

    def test_prices_only_where_known(self) -> None:
        hosted = price_for("gpt-4o-mini-2024-07-18", None)  # longest prefix, OpenAI's API
        assert hosted is not None and hosted.input_per_mtok == 0.15
        assert price_for("gpt-4o", "https://api.openai.com/v1") is not None
        # a self-hosted endpoint, even serving a model with a familiar name: no price
        assert price_for("gpt-4o-mini", "http://vllm.judges:8000/v1") is None
        assert price_for("llama3:8b", None) is None  # not in the table
        override = Price.parse("0,0")
        assert price_for("llama3:8b", "http://localhost:11434/v1", override) == override
        assert estimate_cost(1_000_000, 500_000, Price.parse("1,2")) == pytest.approx(2.0)
        assert estimate_cost(1_000, 1_000, None) is None
        for bad in ("1", "1,x", "-1,2", "inf,1", "nan,1"):
            with pytest.raises(ValueError):
                Price.parse(bad)

    def test_cost_budget_needs_a_price(self) -> None:
        from pydantic import ValidationError

        from controller.models.errors import field_errors

        budget = {"maxCostUsdPerInterval": 0.5}
        with pytest.raises(ValidationError) as info:
            JudgeSpec.model_validate(
                {"model": "qwen2.5", "baseUrl": "http://vllm:8000/v1", "budget": budget}
            )
        [(path, reason)] = field_errors(info.value)
        assert path == "budget.maxCostUsdPerInterval" and "judge.price" in reason
        JudgeSpec.model_validate({"model": "gpt-4.1", "budget": budget})  # OpenAI list price
        JudgeSpec.model_validate(
            {"model": "qwen2.5", "baseUrl": "http://vllm:8000/v1", "budget": budget,
             "price": {"inputPerMtok": 0.1, "outputPerMtok": 0.2}}
        )

    def test_secret_scrubber(self) -> None:
        key = "sk-test-ABCDEFGHIJKLMNOP"
        scrub = SecretScrubber([key])
        assert key not in scrub(f"Incorrect API key provided: {key}.")
        assert "sk-test-ABCDEF" not in scrub("Incorrect API key provided: sk-test-ABCDEF***MNOP")
        assert SecretScrubber([None])("unchanged") == "unchanged"
        short = SecretScrubber(["abc"])  # too short to be a secret: would mask words
        assert short("abc") == "abc"
        scrub.add("tok-12345")
        assert scrub("a tok-12345 b") == "a *** b"


class TestSchemasAndBudget:
    def test_contextual_checks(self) -> None:
        verdicts = VerdictsAnswer.model_validate(
            {"verdicts": [{"criterion": "c", "verdict": "Fully", "reason": "r"}]}
        )
        assert verdicts.verdicts[0].verdict is Level.FULLY
        with pytest.raises(ValueError, match="exactly 2 verdicts"):
            check_answer(verdicts, policy=False, labels=(), n_criteria=2)
        with pytest.raises(ValueError, match="not one of"):
            check_answer(ChecksAnswer(decision="maybe"), policy=False, labels=("yes", "no"))
        with pytest.raises(ValueError, match="policy_violation"):
            check_answer(ChecksAnswer(), policy=True, labels=())

    def test_strict_schema_shape(self) -> None:
        schema = json_schema(Stage.FAST, True, ("approve", "reject"))
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == set(schema["properties"])
        assert schema["properties"]["decision"]["enum"] == ["approve", "reject", None]
        assert "policy_violation" not in json_schema(Stage.FAST, False, ())["properties"]

    def test_budget_window(self) -> None:
        now = [0.0]
        budget = Budget(max_calls=3, interval_seconds=60, clock=lambda: now[0])
        r = budget.reserve(2)
        r.record_call(0.0)
        r.record_call(0.0)
        r.close()
        with pytest.raises(BudgetExhausted, match="call budget of 3"):
            budget.reserve(2)
        budget.reserve(1).close()  # unused reservation is given back
        budget.reserve(1)
        now[0] = 61.0
        budget.reserve(2)  # new interval

    def test_cost_budget(self) -> None:
        budget = Budget(max_cost_usd=0.01)
        r = budget.reserve(1)
        r.record_call(0.02)
        r.close()
        with pytest.raises(BudgetExhausted, match="cost budget"):
            budget.reserve(1)


class TestFailureTaxonomy:
    def test_transient_and_permanent(self) -> None:
        transient = {r.value for r in UnjudgedReason if r.transient}
        assert transient == {"connection", "timeout", "rate_limited", "server_error"}
        for r in ("malformed", "bad_request", "context_length", "budget", "not_sampled",
                  "api_key_missing", "auth", "not_found", "error", "other"):
            assert not UnjudgedReason(r).transient

    def test_old_free_text_reasons_still_load(self) -> None:
        u = Unjudged.model_validate_json(
            '{"reason": "api_key_unavailable: Secret judge/api-key: NotFound", "detail": ""}'
        )
        assert u.reason is UnjudgedReason.API_KEY_UNAVAILABLE
        assert u.detail == "Secret judge/api-key: NotFound" and not u.transient
        odd = Unjudged.model_validate({"reason": "judge exploded", "detail": "stack"})
        assert odd.reason is UnjudgedReason.OTHER and odd.detail == "judge exploded; stack"
        assert Unjudged(reason="timeout").transient  # type: ignore[arg-type]
        again = Unjudged.model_validate_json(odd.model_dump_json())
        assert again == odd  # round trip of the new form
