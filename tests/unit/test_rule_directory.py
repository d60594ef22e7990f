"""The rule directory answers who may report for a rule: its listed reporters and the
ServiceAccount its target runs as - read once on first use, then kept current by the
reconciles, and forgotten with the rule (bounded by the rules, not by the cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.engine import Observed
from controller.engine.world import Workload
from controller.models import CanaryRule, RuleKey
from controller.models.identity import ServiceAccountRef
from controller.reconciler.directory import Directory


def rule_obj(name: str = "bot", target: str = "bot", ns: str = "team",
             listed: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"targetRef": {"name": target}}
    if listed:
        spec["ingest"] = {"serviceAccounts": listed}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


class Lookups:
    def __init__(self, accounts: dict[tuple[str, str], str]) -> None:
        self.accounts, self.calls = accounts, 0

    def __call__(self, namespace: str, name: str) -> str | None:
        self.calls += 1
        return self.accounts.get((namespace, name))


def test_the_target_account_is_read_once_then_cached() -> None:
    lookup = Lookups({("team", "bot"): "bot-sa"})
    d = Directory(lookup=lookup)
    assert not d.synced
    d.replace_rules([rule_obj(listed=["labeller", "other/batch"])])
    assert d.synced
    expected = frozenset({ServiceAccountRef("team", "bot-sa"),
                          ServiceAccountRef("team", "labeller"),
                          ServiceAccountRef("other", "batch")})
    assert d.reporters(RuleKey("team", "bot")) == expected
    assert d.reporters(RuleKey("team", "bot")) == expected
    assert lookup.calls == 1
    assert d.reporters(RuleKey("team", "nope")) is None
    assert d.reporters(RuleKey("other", "bot")) is None  # namespaces never mix


def test_a_missing_target_is_looked_up_again_and_a_failed_lookup_propagates() -> None:
    lookup = Lookups({})
    d = Directory(lookup=lookup)
    d.replace_rules([rule_obj()])
    assert d.reporters(RuleKey("team", "bot")) == frozenset()
    lookup.accounts[("team", "bot")] = "late"
    assert d.reporters(RuleKey("team", "bot")) == {ServiceAccountRef("team", "late")}

    def failing(namespace: str, name: str) -> str | None:
        raise ConnectionError("api server down")

    broken = Directory(lookup=failing)
    broken.replace_rules([rule_obj()])
    with pytest.raises(ConnectionError):  # the API answers 503: it cannot tell yet
        broken.reporters(RuleKey("team", "bot"))


def test_a_reconcile_refreshes_the_account_and_deleting_the_rule_forgets_it() -> None:
    lookup = Lookups({("team", "bot"): "old-sa"})
    d = Directory(lookup=lookup)
    d.replace_rules([rule_obj()])
    assert d.reporters(RuleKey("team", "bot")) == {ServiceAccountRef("team", "old-sa")}
    rule = CanaryRule.model_validate({
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": "bot", "namespace": "team"},
        "spec": {"targetRef": {"name": "bot"}, "canary": {"image": "bot:2"},
                 "steps": [{"weight": 50}],
                 "analysis": {"guards": [{"name": "s", "metric": "taskSuccess",
                                          "tolerance": -0.02}]}}})
    d.observed(rule, Observed(target=Workload(replicas=2),
                              target_template={"spec": {"serviceAccountName": "new-sa"}}))
    assert d.reporters(RuleKey("team", "bot")) == {ServiceAccountRef("team", "new-sa")}
    assert lookup.calls == 1
    d.rule_event("DELETED", rule_obj())
    assert d.reporters(RuleKey("team", "bot")) is None
    d.rule_event("ADDED", rule_obj())
    d.reporters(RuleKey("team", "bot"))
    assert lookup.calls == 2  # the account was forgotten with the rule
