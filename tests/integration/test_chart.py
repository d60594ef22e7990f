"""The Helm chart, rendered by a real Helm (helm-python-sdk) and checked against Kubernetes schemas.

Why: the chart is the install path the README promises. Helm lint/template catch template
errors; `kubernetes-validate --strict` (its Python API, same schemas and strictness as the CLI)
catches fields the API server would reject; the remaining assertions pin down the security
promises (least-privilege RBAC, non-root, read-only root) and that the dashboard only queries
metrics the controller actually exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from controller import observability
from tests.support import ROOT

CHART = ROOT / "charts" / "llm-canary"
DASHBOARD = CHART / "dashboards" / "llm-canary.json"
RELEASE, NAMESPACE = "canary", "llm-ops"
FULLNAME = f"{RELEASE}-llm-canary"
# Oldest supported (Chart.yaml kubeVersion) and newest schemas shipped by kubernetes-validate.
KUBE_VERSIONS = ("1.27.0", f"{kubernetes_validate.latest_version()}.0")

# No image is published: the repository is required (the one the user builds and pushes to).
REPOSITORY = "registry.example.com/team/llm-canary"
BASE_VALUES: dict[str, Any] = {"image": {"repository": REPOSITORY}}
CUSTOM: dict[str, Any] = {
    "replicaCount": 2,
    "image": {"repository": REPOSITORY, "tag": "1.2.3", "pullPolicy": "Always"},
    "controller": {"watchNamespace": "team-a", "logLevel": "debug"},
    "rbac": {"namespaced": True, "secrets": {"resourceNames": ["judge-key"]}},
    "ingest": {"maxInflightRequests": 4},
    "judge": {"apiKeySecret": {"name": "judge-key", "key": "openai"},
              "baseUrl": "http://vllm.judges.svc:8000/v1",
              "allowedUrls": ["https://api.openai.com/v1", "http://judge.team-a.svc/v1"]},
    "networkPolicy": {"ingestFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "team-a"}}}], "metricsFrom": []},
    "persistence": {"enabled": True, "storageClass": "fast", "size": "5Gi"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "dashboard": {"enabled": True, "annotations": {"grafana_folder": "LLM"}},
}


# --------------------------------------------------------------------------- helpers


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base`` (as Helm merges --set onto values)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: dict[str, Any] | None = None, *, base: dict[str, Any] | None = None
           ) -> dict[str, str]:
    """Template path -> rendered text, exactly what `helm template` would print, with the
    required image repository set (``base``) unless the test says otherwise."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(merged(BASE_VALUES if base is None else base, values or {}),
                            name=RELEASE, namespace=NAMESPACE)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in the rendered manifests (NOTES.txt is not a manifest)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def strings(node: Any) -> Iterator[str]:
    """Every string (keys included) anywhere in a YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_names(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(docs).get("env", [])}


def check_service_monitor(sm: dict[str, Any], service: dict[str, Any]) -> None:
    """Structural check of monitoring.coreos.com/v1 ServiceMonitor (no schema in k8s-validate)."""
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    assert sm["metadata"]["name"] and sm["metadata"]["namespace"] == NAMESPACE
    spec = sm["spec"]
    assert set(spec) <= {"namespaceSelector", "selector", "endpoints", "jobLabel"}
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    match = spec["selector"]["matchLabels"]
    assert match.items() <= service["metadata"]["labels"].items(), "must select the Service"
    port_names = {p["name"] for p in service["spec"]["ports"]}
    allowed = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
    for ep in spec["endpoints"]:
        assert set(ep) <= allowed, set(ep) - allowed
        assert ep["port"] in port_names and ep["path"] == "/metrics"
        assert ep["scheme"] in ("http", "https") and isinstance(ep["honorLabels"], bool)
        for key in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"(\d+(ms|s|m|h))+", ep[key]), ep[key]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def default_render() -> dict[str, str]:
    return render()


@pytest.fixture(scope="module")
def custom_render() -> dict[str, str]:
    return render(CUSTOM)


@pytest.fixture(scope="module")
def default_docs(default_render: dict[str, str]) -> list[dict[str, Any]]:
    return objects(default_render)


@pytest.fixture(scope="module")
def custom_docs(custom_render: dict[str, str]) -> list[dict[str, Any]]:
    return objects(custom_render)


# --------------------------------------------------------------------------- lint and schemas


@pytest.mark.parametrize("values", [BASE_VALUES, CUSTOM], ids=["default", "custom"])
def test_helm_lint_passes_strictly(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("image", [{}, {"repository": ""}, {"tag": "1.2.3"}])
def test_image_repository_is_required(image: dict[str, Any]) -> None:
    """No image is published, so there is no default repository that would not exist: the
    chart refuses to render without one and says how to get an image."""
    with pytest.raises(helm_python.HelmError) as failure:
        render({"image": image}, base={})
    message = str(failure.value)
    assert "image.repository is required" in message
    assert "scripts/build-image" in message


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_every_rendered_object_passes_strict_kubernetes_validation(
    variant: str, request: pytest.FixtureRequest
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(f"{variant}_docs")
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "Deployment", "Service"} <= kinds
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            # A CRD type: kubernetes-validate has no schema for it; checked structurally below.
            check_service_monitor(doc, one(docs, "Service"))
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["name"]


def test_crd_passes_strict_kubernetes_validation() -> None:
    with helm_python.Chart.load(CHART) as chart:
        crds = chart.crds
    assert [c["name"] for c in crds] == ["crds/canaryrules.yaml"]
    data = crds[0]["data"]
    text = data if isinstance(data, str) else bytes(data).decode()
    crd = yaml.safe_load(text)
    assert crd["kind"] == "CustomResourceDefinition"
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)


def test_strict_validation_is_not_a_rubber_stamp(default_docs: list[dict[str, Any]]) -> None:
    """The validator used above does reject an unknown field in a rendered Deployment."""
    bad = json.loads(json.dumps(one(default_docs, "Deployment")))
    bad["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------- RBAC


EXPECTED_RULES = {
    ("canary.llmops.dev", "canaryrules"): {"get", "list", "watch", "patch"},
    ("canary.llmops.dev", "canaryrules/status"): {"patch"},
    ("canary.llmops.dev", "canaryrules/finalizers"): {"update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("apps", "deployments/scale"): {"patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"list"},
    ("", "events"): {"create", "patch"},
    ("", "secrets"): {"get"},
}
"""Exactly what the actuator calls (tests/e2e/test_rbac_exact.py proves it on the wire)."""


def _grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_rbac_has_no_wildcards_anywhere(variant: str, request: pytest.FixtureRequest) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(f"{variant}_docs")
    rbac = [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    assert len(rbac) == 6
    for doc in rbac:
        assert not [s for s in strings(doc) if "*" in s], doc["metadata"]["name"]


def test_default_rbac_is_cluster_wide_and_exactly_least_privilege(
    default_docs: list[dict[str, Any]],
) -> None:
    role = next(r for r in by_kind(default_docs, "ClusterRole")
                if r["metadata"]["name"] == FULLNAME)
    assert _grants(role) == EXPECTED_RULES
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert "resourceNames" not in secrets[0]
    binding = next(b for b in by_kind(default_docs, "ClusterRoleBinding")
                   if b["metadata"]["name"] == FULLNAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(default_docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}
    ]


def test_leader_election_role_is_scoped_to_the_lease(default_docs: list[dict[str, Any]]) -> None:
    role = next(r for r in by_kind(default_docs, "Role") if "leader" in r["metadata"]["name"])
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _grants(role) == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named and all(r["resourceNames"] == [f"{FULLNAME}-leader"] for r in named)
    assert {v for r in named for v in r["verbs"]} == {"get", "update"}
    args = container(default_docs)["args"]
    assert f"--lease-name={FULLNAME}-leader" in args and f"--lease-namespace={NAMESPACE}" in args
    binding = next(
        b for b in by_kind(default_docs, "RoleBinding") if "leader" in b["metadata"]["name"]
    )
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_namespaced_rbac_uses_a_role_in_the_watched_namespace(
    custom_docs: list[dict[str, Any]],
) -> None:
    # only TokenReview (cluster-scoped, so a ClusterRole even here) and nothing else
    assert [r["metadata"]["name"] for r in by_kind(custom_docs, "ClusterRole")] == \
        [f"{FULLNAME}-tokenreview"]
    assert [r["metadata"]["name"] for r in by_kind(custom_docs, "ClusterRoleBinding")] == \
        [f"{FULLNAME}-tokenreview"]
    role = next(r for r in by_kind(custom_docs, "Role") if "leader" not in r["metadata"]["name"])
    assert role["metadata"]["namespace"] == "team-a"
    assert _grants(role) == EXPECTED_RULES
    secrets = next(r for r in role["rules"] if "secrets" in r["resources"])
    assert secrets["resourceNames"] == ["judge-key"]
    binding = next(
        b for b in by_kind(custom_docs, "RoleBinding") if b["roleRef"]["name"] == FULLNAME
    )
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["subjects"][0]["namespace"] == NAMESPACE  # the SA lives with the release
    assert "--namespace=team-a" in container(custom_docs)["args"]


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_tokenreview_is_granted_alone_in_its_own_cluster_role(
    variant: str, request: pytest.FixtureRequest
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(f"{variant}_docs")
    name = f"{FULLNAME}-tokenreview"
    role = next(r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == name)
    assert _grants(role) == {("authentication.k8s.io", "tokenreviews"): {"create"}}
    binding = next(b for b in by_kind(docs, "ClusterRoleBinding")
                   if b["metadata"]["name"] == name)
    assert binding["roleRef"]["name"] == name
    sa = one(docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}]
    for other in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        if other["metadata"]["name"] != name:
            assert ("authentication.k8s.io", "tokenreviews") not in _grants(other)


def test_namespaced_rbac_without_watch_namespace_pins_the_release_namespace() -> None:
    docs = objects(render({"rbac": {"namespaced": True}}))
    role = next(r for r in by_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert f"--namespace={NAMESPACE}" in container(docs)["args"]


def test_secret_access_can_be_dropped_and_rbac_disabled() -> None:
    docs = objects(render({"rbac": {"secrets": {"enabled": False}}}))
    assert ("", "secrets") not in _grants(next(
        r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == FULLNAME))
    docs = objects(render({"rbac": {"create": False}}))
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]


# --------------------------------------------------------------------------- Deployment


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_controller_runs_locked_down(variant: str, request: pytest.FixtureRequest) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(f"{variant}_docs")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert mounts == {"/data": "data", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert container(docs)["resources"]["requests"] and container(docs)["resources"]["limits"]


def test_controller_command_flags_probes_and_env(default_docs: list[dict[str, Any]]) -> None:
    c = container(default_docs)
    assert c["command"] == ["canary-controller"]
    # No --namespace flag: the controller watches all namespaces.
    assert not [a for a in c["args"] if a.startswith("--namespace")]
    assert c["args"][:3] == ["--port=8080", "--store=/data/samples.db", "--leader-elect"]
    assert "--log-level=info" in c["args"]
    assert c["image"] == f"{REPOSITORY}:0.1.0"  # tag defaults to appVersion
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    for flag in ("--metrics-port=9090", "--max-store-bytes=600Mi", "--retention=7d",
                 "--max-body=10Mi", "--max-inflight-requests=8"):
        assert flag in c["args"]
    off_by_default = ("--insecure", "--judge-base", "--judge-allowed")
    assert not [a for a in c["args"] if a.startswith(off_by_default)]
    env = env_names(default_docs)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    pod = one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(default_docs, "ServiceAccount")["metadata"]["name"]
    assert "CANARY_EXCLUDE_LABELS" not in env  # the controller's default list


def test_upgrades_never_wait_for_the_new_pod_to_be_ready(
    default_docs: list[dict[str, Any]],
) -> None:
    """maxUnavailable 1: with one replica the old pod may go before the new one is Ready,
    so an upgrade cannot deadlock however readiness and leadership interact."""
    strategy = one(default_docs, "Deployment")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}


def test_excluded_labels_reach_the_controller() -> None:
    docs = objects(render({"controller": {"excludeLabels": ["argocd.argoproj.io/instance",
                                                            "team"]}}))
    assert env_names(docs)["CANARY_EXCLUDE_LABELS"]["value"] == \
        "argocd.argoproj.io/instance,team"


def test_secret_env_appears_only_when_set(
    default_docs: list[dict[str, Any]], custom_docs: list[dict[str, Any]]
) -> None:
    assert set(env_names(default_docs)) == {"POD_NAME", "POD_NAMESPACE"}
    env = env_names(custom_docs)
    assert env["OPENAI_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "judge-key", "key": "openai"}
    }
    assert "CANARY_INGEST_TOKEN" not in env  # one shared token for every rule: gone
    assert "value" not in env["OPENAI_API_KEY"], "never inline the key"
    args = container(custom_docs)["args"]
    assert "--judge-base-url=http://vllm.judges.svc:8000/v1" in args
    assert [a for a in args if a.startswith("--judge-allowed-url=")] == [
        "--judge-allowed-url=https://api.openai.com/v1",
        "--judge-allowed-url=http://judge.team-a.svc/v1"]
    insecure = container(objects(render({"ingest": {"insecureAllowUnauthenticated": True}})))
    assert "--insecure-allow-unauthenticated-ingestion" in insecure["args"]


def test_pvc_appears_only_when_persistence_is_enabled(
    default_docs: list[dict[str, Any]], custom_docs: list[dict[str, Any]]
) -> None:
    assert by_kind(default_docs, "PersistentVolumeClaim") == []
    pod = one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}["data"]

    pvc = one(custom_docs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    deployment = one(custom_docs, "Deployment")
    data = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}["data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # RWO cannot attach twice
    assert deployment["spec"]["replicas"] == 2

    docs = objects(render({"persistence": {"enabled": True, "existingClaim": "mine"}}))
    assert by_kind(docs, "PersistentVolumeClaim") == []
    data = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert data["data"]["persistentVolumeClaim"] == {"claimName": "mine"}


def test_leader_election_can_be_disabled() -> None:
    docs = objects(render({"controller": {"leaderElection": {"enabled": False}}}))
    args = container(docs)["args"]
    assert "--no-leader-elect" in args and "--leader-elect" not in args
    assert not [r for r in by_kind(docs, "Role") if "leader" in r["metadata"]["name"]]


# --------------------------------------------------------------------------- Service & friends


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_service_routes_to_the_controller_port(
    variant: str, request: pytest.FixtureRequest
) -> None:
    docs: list[dict[str, Any]] = request.getfixturevalue(f"{variant}_docs")
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert one(docs, "Deployment")["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]


def test_network_policy_separates_ingestion_from_metrics(
    default_docs: list[dict[str, Any]], custom_docs: list[dict[str, Any]]
) -> None:
    policy = one(default_docs, "NetworkPolicy")["spec"]
    pod_labels = one(default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {r["ports"][0]["port"]: r["from"] for r in policy["ingress"]}
    assert by_port == {
        "http": [{"namespaceSelector": {}}],
        "metrics": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]}
    custom = one(custom_docs, "NetworkPolicy")["spec"]
    # an empty list admits nobody: the rule is left out (an empty "from" admits everyone)
    assert [r["ports"][0]["port"] for r in custom["ingress"]] == ["http"]
    assert custom["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "team-a"}
    off = objects(render({"networkPolicy": {"enabled": False}}))
    assert by_kind(off, "NetworkPolicy") == []


def test_optional_objects_are_off_by_default(default_docs: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in default_docs}
    assert not kinds & {
        "ServiceMonitor",
        "PodDisruptionBudget",
        "ConfigMap",
        "PersistentVolumeClaim",
    }


def test_service_monitor_and_pdb_when_enabled(custom_docs: list[dict[str, Any]]) -> None:
    sm = one(custom_docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    check_service_monitor(sm, one(custom_docs, "Service"))
    pdb = one(custom_docs, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1 and "maxUnavailable" not in pdb
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pdb = one(objects(render({"podDisruptionBudget": {"enabled": True}})), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]


def test_notes_explain_hot_standby(
    default_render: dict[str, str], custom_render: dict[str, str]
) -> None:
    notes = next(v for k, v in custom_render.items() if k.endswith("NOTES.txt"))
    assert "hot standby" in notes and "503" in notes and "team-a" in notes
    assert "judge-key/openai" in notes
    default_notes = next(v for k, v in default_render.items() if k.endswith("NOTES.txt"))
    assert "hot standby" not in default_notes and "all namespaces" in default_notes


# --------------------------------------------------------------------------- values.yaml


def _values_paths(node: Any, prefix: str = "") -> set[str]:
    paths = {prefix} if prefix else set()
    if isinstance(node, dict):
        for k, v in node.items():
            paths |= _values_paths(v, f"{prefix}.{k}" if prefix else k)
    return paths


def test_every_value_is_documented() -> None:
    """Every key has a comment right above it, unless a `# --` comment documents its parent."""
    undocumented: list[str] = []
    whole: list[int] = []  # indents of ancestors documented as a whole (`# --` comment)
    comment: list[str] = []  # the comment block right above the current line
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        key = re.match(r"^(\s*)([A-Za-z_][\w-]*):", line)
        if key:
            indent = len(key.group(1))
            whole = [i for i in whole if i < indent]
            if not whole and not comment:
                undocumented.append(key.group(2))
            if comment and comment[0].startswith("# --"):
                whole.append(indent)
        if stripped:
            comment = []
    assert undocumented == []


def test_templates_only_reference_values_that_exist() -> None:
    with helm_python.Chart.load(CHART) as chart:
        defaults = chart.values
        sources = [t["data"] for t in chart.templates]
    known = _values_paths(defaults)
    used: set[str] = set()
    for src in sources:
        text = src if isinstance(src, str) else bytes(src).decode()
        used |= set(re.findall(r"\.Values\.([A-Za-z_][\w.]*\w)", text))
    assert used, "no .Values references found"
    assert sorted(used - known) == []


# --------------------------------------------------------------------------- dashboard


def _exported_metrics() -> dict[str, set[str]]:
    """Exposed series name -> label names, from the collectors in controller/observability."""
    series: dict[str, set[str]] = {}
    for obj in vars(observability).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        family = next(iter(obj.describe()))
        labels = set(obj._labelnames)  # no public accessor; reading it changes nothing
        if family.type == "counter":
            series[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            series[f"{family.name}_bucket"] = labels | {"le"}
            series[f"{family.name}_sum"] = labels
            series[f"{family.name}_count"] = labels
        else:
            series[family.name] = labels
    return series


SCRAPE_LABELS = {"pod", "instance", "job"}  # added by Prometheus to every scraped series


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend) for every panel target and templating query."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"], target.get("legendFormat", "")
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield f"${var['name']}", var["query"]["query"], ""


def test_dashboard_is_valid_standalone_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "llm-canary" and dashboard["title"]
    assert "id" not in dashboard, "an id breaks import into another Grafana"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names[0] == "datasource"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("decisions", "delta", "rollbacks", "judge cost"):
        assert topic in titles


def _query_problems(where: str, expr: str, legend: str, exported: dict[str, set[str]],
                    used: set[str]) -> list[str]:
    """What is wrong with one panel query: unknown metrics, labels, groupings, legends
    (the metrics it names are added to ``used``)."""
    problems: list[str] = []
    names = re.findall(r"\b(llmcanary_\w+)", expr)
    if not names:
        problems.append(f"{where}: no llmcanary metric in {expr!r}")
    labels: set[str] = set(SCRAPE_LABELS)
    for name in names:
        if name not in exported:
            problems.append(f"{where}: unknown metric {name}")
            continue
        used.add(name)
        labels |= exported[name]
    for name, selector in re.findall(r"\b(llmcanary_\w+)\{([^}]*)\}", expr):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
            if label not in exported.get(name, set()):
                problems.append(f"{where}: {name} has no label {label}")
    return problems + _grouping_problems(where, expr, legend, labels, exported)


def _grouping_problems(where: str, expr: str, legend: str, labels: set[str],
                       exported: dict[str, set[str]]) -> list[str]:
    """``by (...)`` labels, legend ``{{label}}`` and ``label_values`` the result has."""
    problems: list[str] = []
    grouped: set[str] = set()
    for clause in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        grouped |= {s.strip() for s in clause.split(",") if s.strip()}
    if grouped - labels:
        problems.append(f"{where}: groups by unknown labels {grouped - labels}")
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
        if label not in (grouped or labels):
            problems.append(f"{where}: legend uses {label}, absent from the result")
    label_values = re.fullmatch(r"label_values\((llmcanary_\w+).*,\s*(\w+)\)", expr)
    if label_values and label_values.group(2) not in exported.get(label_values.group(1), ()):
        problems.append(f"{where}: {label_values.group(1)} has no label {label_values.group(2)}")
    return problems


def test_dashboard_queries_only_exported_metrics_and_labels() -> None:
    exported = _exported_metrics()
    assert "llmcanary_decisions_total" in exported, "collectors not found"
    dashboard = json.loads(DASHBOARD.read_text())
    problems: list[str] = []
    used: set[str] = set()
    for where, expr, legend in _queries(dashboard):
        problems += _query_problems(where, expr, legend, exported, used)
    assert problems == []
    for needed in (
        "llmcanary_decisions_total",
        "llmcanary_rollbacks_total",
        "llmcanary_guard_delta",
        "llmcanary_guard_lower",
        "llmcanary_guard_upper",
        "llmcanary_judge_cost_usd_total",
    ):
        assert needed in used


def test_dashboard_configmap_ships_the_same_json(
    custom_docs: list[dict[str, Any]], default_docs: list[dict[str, Any]]
) -> None:
    assert by_kind(default_docs, "ConfigMap") == []
    cm = one(custom_docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert list(cm["data"]) == ["llm-canary.json"]
    assert json.loads(cm["data"]["llm-canary.json"]) == json.loads(DASHBOARD.read_text())
