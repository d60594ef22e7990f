"""The sample app of the install path (examples/assistant): manifests that match the rule
and pass strict Kubernetes validation, and the app itself, run exactly as its pod runs it
(the files of the generated ConfigMap, stdlib Python), reporting to the real ingestion
server through the SDK."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from canary_playground.kube import EmulatorHandle
from canary_playground.net import free_port

from controller.api import ApiServer
from controller.models import RuleKey
from controller.sources.store import SampleStore
from examples.assistant.render import CONFIGMAP_FILE, render_configmap
from llm_canary.reporter import DEFAULT_TOKEN_FILE
from tests.support import ROOT
from tests.support.api import directory, serving

KEY = RuleKey("default", "support-assistant")
K8S = ROOT / "examples" / "assistant" / "k8s"
KUBE_VERSIONS = ("1.27.0", f"{kubernetes_validate.latest_version()}.0")


def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return {d["kind"]: d for d in docs if d}


def test_the_configmap_is_generated_from_the_app_and_the_sdk() -> None:
    assert (ROOT / CONFIGMAP_FILE).read_text() == render_configmap(), (
        "the example ConfigMap is stale: run `scripts/generate` and commit the result")


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifests_pass_strict_kubernetes_validation(version: str) -> None:
    docs = manifests()
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "ServiceAccount"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("rule_file", ["rules/support-assistant.yaml",
                                       "examples/assistant/canaryrule.yaml"])
def test_the_deployment_is_the_rules_target_and_mounts_what_the_sdk_reads(
        rule_file: str) -> None:
    rule = yaml.safe_load((ROOT / rule_file).read_text())
    docs = manifests()
    dep, svc, sa, cm = (docs[k] for k in ("Deployment", "Service", "ServiceAccount",
                                         "ConfigMap"))
    assert dep["metadata"]["name"] == rule["spec"]["targetRef"]["name"]
    assert dep["metadata"]["namespace"] == rule["metadata"]["namespace"]
    assert dep["spec"]["replicas"] == 10
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == rule["spec"]["canary"]["container"]
    assert container["image"].startswith("python:3.11")  # stock image, nothing to build
    env = {e["name"]: e["value"] for e in container["env"]}
    canary_env = {e["name"] for e in rule["spec"]["canary"]["env"]}
    assert canary_env <= set(env)  # the canary overrides what the baseline sets
    assert env["CANARY_RULE"] == rule["metadata"]["name"]
    assert "CANARY_COHORT" not in env  # baseline pods have none
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (source,) = volumes["llm-canary-token"]["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "llm-canary"
    assert f"{mounts['llm-canary-token']}/{token['path']}" == DEFAULT_TOKEN_FILE
    assert volumes["app"]["configMap"]["name"] == cm["metadata"]["name"]
    assert container["command"][-1].startswith(mounts["app"])
    assert set(cm["data"]) == {"app.py", "llm_canary.py"}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_install_paths_rule_needs_only_what_the_readme_creates() -> None:
    """examples/assistant/canaryrule.yaml is what the README's install path applies: valid
    with no warning, no Prometheus (the path installs none), the judge key in the Secret
    the README creates and labels, and steps that 10 replicas honour exactly."""
    from click.testing import CliRunner

    from controller.cli import cli

    path = ROOT / "examples" / "assistant" / "canaryrule.yaml"
    result = CliRunner().invoke(cli, ["validate", "-f", str(path), "--replicas", "10"])
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.stderr
    rule = yaml.safe_load(path.read_text())
    spec = rule["spec"]
    assert "metrics" not in spec
    assert all(g["metric"] != "prometheus" for g in spec["analysis"]["guards"])
    assert spec["judge"]["apiKeySecretRef"] == {"name": "judge-openai", "key": "api-key"}
    assert spec["judge"]["baseUrl"] == "https://api.openai.com/v1"  # what the README's sed swaps
    assert spec["judge"]["model"] == "gpt-4.1-mini"
    readme = (ROOT / "README.md").read_text()
    for line in ("kubectl -n default create secret generic judge-openai",
                 "kubectl -n default label secret judge-openai canary.llmops.dev/judge-key=true",
                 "kubectl apply -f examples/assistant/k8s/",
                 "examples/assistant/canaryrule.yaml"):
        assert line in readme, line


# -- the app, run as its pod runs it ---------------------------------------------------------


@pytest.fixture
def controller_api(tmp_path: Path, emulator: EmulatorHandle
                   ) -> Iterator[tuple[ApiServer, SampleStore]]:
    """The real server, reviewing tokens with the emulator's TokenReview; the rule's target
    pods run as the example's ServiceAccount."""
    store = SampleStore(tmp_path / "samples.db")
    rules = directory(("default/support-assistant", "support-assistant", "support-assistant"))
    with serving(store, rules, emulator=emulator) as server:
        yield server, store
    store.close()


def _start_app(tmp_path: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen[str],
                                                                        str]:
    """The ConfigMap's files in a directory, run with the stdlib only (``-S``)."""
    app_dir = tmp_path / name
    app_dir.mkdir()
    for filename, text in yaml.safe_load(render_configmap())["data"].items():
        (app_dir / filename).write_text(text)
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
    proc = subprocess.Popen(
        [sys.executable, "-S", str(app_dir / "app.py")],
        env={**base, "PYTHONPATH": str(app_dir), "PORT": str(port), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the app did not start: {proc.communicate()[0]}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_the_app_reports_its_samples_and_feedback(
    controller_api: tuple[ApiServer, SampleStore], tmp_path: Path, emulator: EmulatorHandle
) -> None:
    server, store = controller_api
    token = tmp_path / "token"  # what the kubelet projects for the example's ServiceAccount
    token.write_text(emulator.issue_token(service_account="default/support-assistant",
                                          audiences=["llm-canary"]))
    common = {"CANARY_INGEST_URL": f"http://127.0.0.1:{server.port}",
              "CANARY_TOKEN_FILE": str(token), "CANARY_RULE": "support-assistant"}
    baseline, b_url = _start_app(tmp_path, "baseline", {**common, "MODEL_NAME": "gpt-4.1"})
    canary, c_url = _start_app(tmp_path, "canary", {
        **common, "MODEL_NAME": "gpt-4.1-mini", "PROMPT_VERSION": "2026-11-15",
        "CANARY_COHORT": "canary", "CANARY_REVISION": "5d41402abc4b",
        "UPSTREAM_URL": f"http://127.0.0.1:{free_port()}/v1"})  # nothing listens: fallback
    ids: dict[str, list[str]] = {"baseline": [], "canary": []}
    try:
        for i in range(6):
            for cohort, url in (("baseline", b_url), ("canary", c_url)):
                r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
                    "messages": [{"role": "user", "content": f"Refund order {i}"}],
                    "metadata": {"queue": "billing", "risk": "medium", "task": "refund"}})
                assert r.status_code == 200
                assert r.json()["choices"][0]["message"]["content"]
                ids[cohort].append(r.headers["X-Canary-Sample-Id"])
        feedback = {"id": ids["canary"][0], "correction_minutes": 3, "label": "approve"}
        assert httpx.post(c_url + "/v1/feedback", json=feedback).status_code == 202
        assert httpx.post(b_url + "/v1/chat/completions", json={"messages": []}).status_code \
            == 400
    finally:
        logs = _stop(baseline) + _stop(canary)  # SIGTERM: the reporter flushes on the way out
    assert store.count(KEY) == 12, logs
    first = store.get(KEY, ids["canary"][0])
    assert first is not None
    s = first.sample
    assert (s.cohort, s.revision, s.queue, s.risk, s.task) == (
        "canary", "5d41402abc4b", "billing", "medium", "refund")
    assert s.fallback is True and s.correction_minutes == 3 and s.label == "approve"
    assert s.extras()["model"] == "gpt-4.1-mini" and s.cost_usd and s.cost_usd > 0
    base = store.get(KEY, ids["baseline"][0])
    assert base is not None and base.sample.cohort == "baseline" and not base.sample.fallback
    assert base.sample.revision is None
    assert json.dumps(base.sample.output).count("Refund order 0") == 1
