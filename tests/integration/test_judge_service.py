"""The judge as the controller wires it (controller.judge.service) against the scripted
server: cost metrics only when priced, and an unusable judge config reported, not raised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from canary_playground.scripted_judge import ScriptedJudge, sample_record

from controller.judge.service import JudgeService
from controller.models import CanaryRule, Sample, UnjudgedReason
from controller.observability import REGISTRY


def rule(name: str, judge: dict[str, Any]) -> CanaryRule:
    return CanaryRule.model_validate({
        "apiVersion": "canary.llmops.dev/v1alpha1",
        "kind": "CanaryRule",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "targetRef": {"name": "bot"},
            "canary": {"image": "bot:2"},
            "steps": [{"weight": 10}],
            "analysis": {"guards": [{"name": "ts", "metric": "taskSuccess", "tolerance": -0.05}]},
            "judge": judge,
        },
    })


def no_secrets(namespace: str, name: str, key: str) -> str:
    raise LookupError(f"Secret {name}/{key}: not found")


def metric(name: str, rule_key: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"rule": rule_key, **labels})


def test_self_hosted_judge_counts_calls_and_no_cost(judge: ScriptedJudge, tmp_path: Path) -> None:
    service = JudgeService(str(tmp_path / "cache.sqlite"), no_secrets,
                           allowed_urls=[judge.base_url])
    r = rule("unpriced", {"model": "qwen2.5-7b", "baseUrl": judge.base_url, "mode": "thorough"})
    rule_judge, why = service.for_rule(r)
    assert rule_judge is not None and why is None
    verdicts = rule_judge.judge([Sample.model_validate(sample_record("a", "x", rule="unpriced"))])
    assert verdicts[0].usage is not None and verdicts[0].usage.cost_usd is None  # type: ignore[union-attr]
    key = str(r.key)
    assert metric("llmcanary_judge_calls_total", key, result="paid") == 3
    assert metric("llmcanary_judge_cost_usd_total", key) is None  # never incremented


def test_priced_judge_counts_cost(judge: ScriptedJudge, tmp_path: Path) -> None:
    service = JudgeService(str(tmp_path / "cache.sqlite"), no_secrets,
                           allowed_urls=[judge.base_url])
    r = rule("priced", {"model": "qwen2.5-7b", "baseUrl": judge.base_url,
                        "price": {"inputPerMtok": 1000, "outputPerMtok": 1000}})
    rule_judge, _ = service.for_rule(r)
    assert rule_judge is not None
    rule_judge.judge([Sample.model_validate(sample_record("a", "x", rule="priced"))])
    cost = metric("llmcanary_judge_cost_usd_total", str(r.key))
    assert cost is not None and cost > 0


def test_cost_budget_without_a_price_at_the_operators_endpoint(
    judge: ScriptedJudge, tmp_path: Path
) -> None:
    """Valid as written (gpt-4.1 on OpenAI's API has a list price), but the operator sends
    rules without a baseUrl to a self-hosted endpoint: no price, so no cost budget."""
    service = JudgeService(str(tmp_path / "cache.sqlite"), no_secrets,
                           default_base_url=judge.base_url)
    r = rule("budgeted", {"model": "gpt-4.1", "budget": {"maxCostUsdPerInterval": 0.5}})
    rule_judge, why = service.for_rule(r)
    assert rule_judge is None and why is not None
    assert why.startswith(f"{UnjudgedReason.CONFIG.value}: ") and "price" in why
    assert judge.calls == 0


def test_an_endpoint_off_the_allow_list_gets_no_key_and_no_call(
    judge: ScriptedJudge, tmp_path: Path
) -> None:
    """Whoever writes a CanaryRule must not be able to send a Secret to a server of their
    choice: a baseUrl the operator did not allow is refused before any Secret is read."""
    read: list[str] = []

    def secrets(namespace: str, name: str, key: str) -> str:
        read.append(name)
        return "sk-should-never-travel"

    service = JudgeService(str(tmp_path / "cache.sqlite"), secrets,
                           default_base_url="http://judge.internal/v1",
                           allowed_urls=["http://vllm.judges.svc:8000/v1"])
    for url in (judge.base_url, "http://judge.internal.evil/v1", "http://judge.internal/v10",
                "http://user:pw@judge.internal/v1", "file:///etc/passwd"):
        r = rule("foreign", {"model": "m", "baseUrl": url,
                             "apiKeySecretRef": {"name": "judge-key"}})
        rule_judge, why = service.for_rule(r)
        assert rule_judge is None and why is not None and "allow-list" in why, url
    assert read == [] and judge.calls == 0
    for url in ("http://judge.internal/v1", "http://JUDGE.internal:80/v1/",
                "http://vllm.judges.svc:8000/v1/team-a"):
        ok, why = service.for_rule(rule("allowed", {"model": "m", "baseUrl": url,
                                                    "apiKeySecretRef": {"name": "judge-key"}}))
        assert ok is not None and why is None, url
        assert ok.api_key == "sk-should-never-travel"


def test_the_operators_key_only_goes_to_the_operators_endpoint(
    judge: ScriptedJudge, tmp_path: Path
) -> None:
    service = JudgeService(str(tmp_path / "cache.sqlite"), no_secrets,
                           default_base_url=judge.base_url, default_key="sk-operator",
                           allowed_urls=["http://other.judges/v1"])
    own, _ = service.for_rule(rule("own", {"model": "m"}))
    assert own is not None and own.api_key == "sk-operator"
    other, _ = service.for_rule(rule("other", {"model": "m",
                                               "baseUrl": "http://other.judges/v1"}))
    assert other is not None and other.api_key is None
