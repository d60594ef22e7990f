"""Pure parts of the emulator, without a server: the deployment controller's arithmetic,
name and label syntax, RBAC rule matching, selectors."""

from __future__ import annotations

import math

from canary_playground.kube import names, rollout
from canary_playground.kube.auth import Identity
from canary_playground.kube.deployments import proportional_sizes
from canary_playground.kube.rbac import Attributes, rule_allows
from canary_playground.kube.selectors import selector_matches, selector_string
from hypothesis import given, settings
from hypothesis import strategies as st

SAFE = set("bcdfghjklmnpqrstvwxz2456789")


@settings(derandomize=True, max_examples=200)
@given(replicas=st.integers(0, 500), surge=st.integers(0, 100), unavailable=st.integers(0, 100))
def test_fenceposts_round_surge_up_and_unavailable_down(replicas: int, surge: int,
                                                        unavailable: int) -> None:
    spec = {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": f"{surge}%", "maxUnavailable": f"{unavailable}%"}}}
    got_surge, got_unavailable = rollout.fenceposts(spec)
    assert got_surge == math.ceil(surge * replicas / 100)
    want = math.floor(unavailable * replicas / 100)
    assert got_unavailable == (1 if got_surge == 0 and want == 0 else want)
    assert rollout.max_unavailable(spec) == (0 if replicas == 0 else
                                             min(got_unavailable, replicas))


def test_fencepost_table() -> None:
    def posts(replicas: int, surge: object, unavailable: object) -> tuple[int, int]:
        return rollout.fenceposts({"replicas": replicas, "strategy": {"rollingUpdate": {
            "maxSurge": surge, "maxUnavailable": unavailable}}})

    assert posts(10, "25%", "25%") == (3, 2)
    assert posts(4, "25%", "25%") == (1, 1)
    assert posts(1, "25%", "25%") == (1, 0)
    assert posts(3, 0, 0) == (0, 1)  # never both zero
    assert posts(3, 2, "50%") == (2, 1)
    recreate = {"replicas": 5, "strategy": {"type": "Recreate"}}
    assert rollout.max_surge(recreate) == rollout.max_unavailable(recreate) == 0


@settings(derandomize=True, max_examples=50)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4))
def test_template_hash_is_stable_and_safe(labels: dict[str, str]) -> None:
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "a"}]}}
    first = rollout.template_hash(template)
    assert first == rollout.template_hash(dict(reversed(list(template.items()))))
    assert set(first) <= SAFE and 1 <= len(first) <= 10
    assert rollout.template_hash(template, 1) != first  # collisionCount changes it


def test_proportional_resize_matches_kubernetes() -> None:
    def rs(name: str, replicas: int, stamp: str) -> dict[str, object]:
        return {"metadata": {"name": name, "creationTimestamp": stamp, "annotations": {
            rollout.MAX_REPLICAS: "13"}}, "spec": {"replicas": replicas}}

    d = {"spec": {"replicas": 20, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": "25%", "maxUnavailable": "25%"}}}, "status": {"replicas": 13}}
    sizes = proportional_sizes(d, [rs("old", 8, "2026-01-01T00:00:00Z"),
                                   rs("new", 5, "2026-01-02T00:00:00Z")])
    assert [(r["metadata"]["name"], n) for r, n in sizes] == [("old", 15), ("new", 10)]
    d["spec"]["replicas"] = 2  # shrinking: 2 + 1 surge = 3 of 13, older first on ties
    sizes = proportional_sizes(d, [rs("old", 8, "2026-01-01T00:00:00Z"),
                                   rs("new", 5, "2026-01-02T00:00:00Z")])
    assert sum(n for _, n in sizes) == 3 and all(n >= 0 for _, n in sizes)


def test_names_and_labels() -> None:
    assert names.dns1123_subdomain("web.example-1") == []
    assert names.dns1123_subdomain("Web") and names.dns1123_subdomain("a" * 254)
    assert names.dns1123_label("a.b") and not names.dns1123_label("a-b")
    assert names.dns1035_label("1ab") and not names.dns1035_label("ab1")
    assert names.path_segment("a/b") == ["may not contain '/'"]
    assert names.qualified_name("example.com/name") == []
    assert names.qualified_name("Example.com/name") == [
        "prefix part " + names.dns1123_subdomain("Example.com")[0]]
    assert names.qualified_name("a/b/c")
    assert names.label_value("") == [] and names.label_value("a_b.c-D") == []
    assert names.label_value("a" * 64) == ["must be no more than 63 characters"]
    errs = names.label_errors({"ok": "-bad"}, "metadata.labels")
    assert [e.field for e in errs] == ["metadata.labels"]


def test_rbac_rule_matching() -> None:
    user = Identity("u", groups=("system:authenticated",))

    def allows(rule: dict[str, object], **attrs: str) -> bool:
        return rule_allows(rule, Attributes(user, **attrs))  # type: ignore[arg-type]

    scale = {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}
    assert allows(scale, verb="patch", group="apps", resource="deployments",
                  subresource="scale", name="web")
    assert not allows(scale, verb="patch", group="apps", resource="deployments", name="web")
    any_scale = {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]}
    assert allows(any_scale, verb="get", group="apps", resource="replicasets",
                  subresource="scale")
    named = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"],
             "resourceNames": ["judge"]}
    assert allows(named, verb="get", resource="secrets", name="judge")
    assert not allows(named, verb="get", resource="secrets", name="other")
    assert not allows(named, verb="list", resource="secrets")
    paths = {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}
    assert allows(paths, verb="get", path="/debug/pprof", resource_request=False)  # type: ignore[arg-type]
    assert not allows(paths, verb="get", path="/healthz", resource_request=False)  # type: ignore[arg-type]


def test_selectors() -> None:
    sel = {"matchLabels": {"app": "web"},
           "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                {"key": "legacy", "operator": "DoesNotExist"}]}
    assert selector_matches(sel, {"app": "web", "tier": "a"})
    assert not selector_matches(sel, {"app": "web", "tier": "a", "legacy": "1"})
    assert selector_string(sel) == "app=web,!legacy,tier in (a,b)"  # sorted by key
