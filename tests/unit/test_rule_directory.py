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
from controller.ports import DirectoryUnavailable
from controller.reconciler.directory import Directory


def rule_obj(name: str = "bot", target: str = "bot", ns: str = "team",
             listed: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"targetRef": {"name": target}}
    if listed:
        spec["ingest"] = {"serviceAccounts": listed}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


RULE = CanaryRule.model_validate({
    "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
    "metadata": {"name": "bot", "namespace": "team"},
    "spec": {"targetRef": {"name": "bot"}, "canary": {"image": "bot:2"},
             "steps": [{"weight": 50}],
             "analysis": {"guards": [{"name": "s", "metric": "taskSuccess",
                                      "tolerance": -0.02}]}}})


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


def test_a_target_found_missing_is_known_once_a_reconcile_sees_it() -> None:
    lookup = Lookups({})
    d = Directory(lookup=lookup)
    d.replace_rules([rule_obj()])
    assert d.reporters(RuleKey("team", "bot")) == frozenset()
    lookup.accounts[("team", "bot")] = "late"
    assert d.reporters(RuleKey("team", "bot")) == frozenset()  # not asked again at once
    d.observed(RULE, Observed(target=Workload(replicas=2),
                              target_template={"spec": {"serviceAccountName": "late"}}))
    assert d.reporters(RuleKey("team", "bot")) == {ServiceAccountRef("team", "late")}


def test_a_reconcile_refreshes_the_account_and_deleting_the_rule_forgets_it() -> None:
    lookup = Lookups({("team", "bot"): "old-sa"})
    d = Directory(lookup=lookup)
    d.replace_rules([rule_obj()])
    assert d.reporters(RuleKey("team", "bot")) == {ServiceAccountRef("team", "old-sa")}
    rule = RULE
    d.observed(rule, Observed(target=Workload(replicas=2),
                              target_template={"spec": {"serviceAccountName": "new-sa"}}))
    assert d.reporters(RuleKey("team", "bot")) == {ServiceAccountRef("team", "new-sa")}
    assert lookup.calls == 1
    d.rule_event("DELETED", rule_obj())
    assert d.reporters(RuleKey("team", "bot")) is None
    d.rule_event("ADDED", rule_obj())
    d.reporters(RuleKey("team", "bot"))
    assert lookup.calls == 2  # the account was forgotten with the rule


def test_a_missing_target_costs_one_lookup_per_recheck_window() -> None:
    lookup = Lookups({})
    d = Directory(lookup=lookup)
    d.replace_rules([rule_obj()])
    for _ in range(500):  # a batch of records for a rule whose target does not exist yet
        assert d.reporters(RuleKey("team", "bot")) == frozenset()
    assert lookup.calls == 1


def test_a_failed_lookup_is_directory_unavailable_without_details() -> None:
    def failing(namespace: str, name: str) -> str | None:
        raise ConnectionError("https://10.0.0.1:6443 token=sk-secret refused")

    d = Directory(lookup=failing)
    d.replace_rules([rule_obj()])
    with pytest.raises(DirectoryUnavailable) as caught:
        d.reporters(RuleKey("team", "bot"))
    assert "team/bot" in str(caught.value) and "sk-secret" not in str(caught.value)
