"""The README's install path ("Install on a cluster"), step by step, against a REAL cluster.

Opt-in: it creates and deletes objects in the cluster ``KUBECONFIG`` names (the namespace
``llm-canary``, the CRD, the sample app and a Secret in ``default``), so it runs only with

    LLM_CANARY_REAL_CLUSTER=1 KUBECONFIG=~/.kube/kind-config \\
    LLM_CANARY_IMAGE=registry.example.com/team/llm-canary:0.1.0 \\
    pytest -m cluster tests/cluster

and is skipped otherwise (and always on the playground's emulator: it is not a cluster,
no pod runs there). ``LLM_CANARY_IMAGE`` is the controller image the cluster can pull (or
has loaded: ``kind load image-archive``), built and pushed as the README says. Optional:
``OPENAI_API_KEY`` (the judge key; without it the judged guard reports errors and the rule
may pause, which the manual rollback handles the same), ``LLM_CANARY_JUDGE_URL`` and
``LLM_CANARY_JUDGE_MODEL`` (another OpenAI-compatible judge, put on the allow-list),
``LLM_CANARY_LOAD_IMAGE`` (the load generator's image, default curlimages/curl).

Steps, as in the README: namespace; judge Secret and its label; ``helm install`` with the
image, the judge allow-list and the store size (without a ``helm`` binary the same chart
is rendered by the Helm library of the test extras and applied with kubectl); the sample
app; the rule; load; the rollout reaches step 1 with the canary available and samples of
both cohorts counted (the SDK's projected token accepted through TokenReview); a manual
rollback ends ``RolledBack`` with the target back at 10 pods and no canary pod; uninstall.
Every wait is bounded. Nothing here ran in this repository's CI (no cluster there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

NS = "llm-canary"
APP_NS = "default"
RULE = "support-assistant"
RULE_FILE = ROOT / "examples" / "assistant" / "canaryrule.yaml"
APP_DIR = ROOT / "examples" / "assistant" / "k8s"
CHART = ROOT / "charts" / "llm-canary"
CRD = "canaryrules.canary.llmops.dev"
LOAD_POD = "canary-load"
OPENAI = "https://api.openai.com/v1"


def _why_not() -> str | None:
    """Why this machine cannot run the test (None: it can). Reads files only."""
    if os.environ.get("LLM_CANARY_REAL_CLUSTER") != "1":
        return "opt-in: set LLM_CANARY_REAL_CLUSTER=1 and KUBECONFIG to a real cluster"
    config = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not config or not Path(config).is_file():
        return "KUBECONFIG must name the kubeconfig file of a real cluster"
    try:
        doc = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"KUBECONFIG {config} is unreadable: {exc}"
    if not isinstance(doc, dict) or doc.get("current-context") == "emulator":
        return f"KUBECONFIG {config} is the playground's API emulator, not a cluster"
    if shutil.which("kubectl") is None:
        return "kubectl is not on PATH"
    if not os.environ.get("LLM_CANARY_IMAGE", "").rpartition(":")[2]:
        return "LLM_CANARY_IMAGE=REPOSITORY:TAG must name the controller image the cluster pulls"
    return None


pytestmark = [pytest.mark.cluster, pytest.mark.skipif(_why_not() is not None,
                                                      reason=_why_not() or "")]


def run(*argv: str, stdin: str | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n"
                             f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run("kubectl", *args, **kw)


def canaryctl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "controller.cli", *args, **kw)


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 5) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after
    ``timeout`` seconds (generous: a real cluster pulls images and schedules pods)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def rule_status() -> dict[str, Any]:
    out = canaryctl("status", RULE, "-n", APP_NS, "-o", "json").stdout
    status: dict[str, Any] = json.loads(out)["status"]
    return status


def condition(status: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == kind), None)


def deployment(name: str) -> dict[str, Any] | None:
    got = kubectl("-n", APP_NS, "get", "deployment", name, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


# ------------------------------------------------------------------------------ the steps


def install_chart(repository: str, tag: str, judge_url: str) -> None:
    """``helm install`` as the README writes it, or the same chart rendered by the Helm
    library (helm-python-sdk) and applied with kubectl when no helm binary is installed."""
    values = {"image": {"repository": repository, "tag": tag},
              "judge": {"allowedUrls": [judge_url]}, "store": {"maxSize": "600Mi"}}
    if shutil.which("helm"):
        run("helm", "install", "llm-canary", str(CHART), "-n", NS,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"judge.allowedUrls={{{judge_url}}}", "--set", "store.maxSize=600Mi",
            "--wait", "--timeout", "5m", timeout=360)
        return
    import helm_python

    kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="llm-canary", namespace=NS)
    manifests = "\n---\n".join(text for path, text in sorted(rendered.items())
                               if not path.endswith("NOTES.txt"))
    kubectl("-n", NS, "apply", "-f", "-", stdin=manifests)
    kubectl("-n", NS, "rollout", "status", "deployment/llm-canary", "--timeout=300s",
            timeout=330)


def uninstall_chart() -> None:
    if shutil.which("helm"):
        run("helm", "uninstall", "llm-canary", "-n", NS, "--wait", timeout=300, check=False)


@pytest.fixture
def installed() -> Iterator[str]:
    """Everything the README path creates, deleted afterwards whatever happened."""
    nodes = kubectl("get", "nodes", "-o", "name").stdout.split()
    assert nodes, "the cluster has no nodes: is KUBECONFIG a real cluster?"
    image = os.environ["LLM_CANARY_IMAGE"]
    repository, _, tag = image.rpartition(":")
    judge_url = os.environ.get("LLM_CANARY_JUDGE_URL", OPENAI)
    key = os.environ.get("OPENAI_API_KEY", "sk-no-key-given-to-tests-cluster")
    for leftover in (f"namespace/{NS}",):
        assert kubectl("get", leftover, check=False).returncode != 0, (
            f"{leftover} exists already: this test installs and uninstalls it; use a "
            "cluster without llm-canary")
    try:
        kubectl("create", "namespace", NS)
        kubectl("-n", APP_NS, "create", "secret", "generic", "judge-openai",
                f"--from-literal=api-key={key}")
        kubectl("-n", APP_NS, "label", "secret", "judge-openai",
                "canary.llmops.dev/judge-key=true")
        install_chart(repository, tag, judge_url)
        kubectl("apply", "-f", str(APP_DIR))
        kubectl("-n", APP_NS, "rollout", "status", "deployment/support-assistant",
                "--timeout=300s", timeout=330)
        yield judge_url
    finally:
        kubectl("-n", APP_NS, "delete", "pod", LOAD_POD, "--ignore-not-found", "--wait=false",
                check=False)
        # the rule first: its finalizer restores the target while the controller still runs
        kubectl("-n", APP_NS, "delete", "canaryrule", RULE, "--ignore-not-found",
                "--timeout=120s", timeout=150, check=False)
        kubectl("delete", "-f", str(APP_DIR), "--ignore-not-found", timeout=150, check=False)
        kubectl("-n", APP_NS, "delete", "secret", "judge-openai", "--ignore-not-found",
                check=False)
        uninstall_chart()
        kubectl("delete", "namespace", NS, "--ignore-not-found", "--timeout=180s",
                timeout=200, check=False)
        kubectl("delete", "crd", CRD, "--ignore-not-found", timeout=150, check=False)


def test_install_rollout_manual_rollback_uninstall(installed: str) -> None:
    judge_url = installed
    rule = RULE_FILE.read_text().replace(OPENAI, judge_url)
    if os.environ.get("LLM_CANARY_JUDGE_MODEL"):
        rule = rule.replace("model: gpt-4.1-mini", f"model: {os.environ['LLM_CANARY_JUDGE_MODEL']}")
    assert "applied" in canaryctl("apply", "-f", "-", stdin=rule).stdout

    body = json.dumps({"messages": [{"role": "user", "content": "Where is my refund?"}],
                       "metadata": {"queue": "billing"}})
    loop = ("while true; do curl -s -o /dev/null -H 'Content-Type: application/json' "
            f"-d '{body}' http://support-assistant.{APP_NS}/v1/chat/completions; "
            "sleep 0.1; done")
    kubectl("-n", APP_NS, "run", LOAD_POD, "--restart=Never",
            f"--image={os.environ.get('LLM_CANARY_LOAD_IMAGE', 'curlimages/curl')}",
            "--command", "--", "sh", "-c", loop)

    # step 1: the canary Deployment runs 2 of the 10 pods and they are available
    wait_for("the canary to be available at step 1", lambda: (
        (st := rule_status()).get("phase") in ("Progressing", "Paused")
        and condition(st, "CanaryAvailable") == "True"), timeout=600)
    canary = deployment(f"{RULE}-canary")
    assert canary is not None and canary["spec"]["replicas"] == 2

    # samples of both cohorts reached the analysis: the SDK's token passed TokenReview
    def counted() -> bool:
        return any(g.get("nBaseline", 0) > 0 and g.get("nCanary", 0) > 0
                   for g in rule_status().get("guards", []))
    wait_for("samples of both cohorts in the guards' evidence", counted, timeout=900,
             every=15)

    # roll back by hand, as an operator would
    assert "rollback requested" in canaryctl(
        "rollback", RULE, "-n", APP_NS, "--reason", "tests/cluster: manual rollback").stdout
    watched = canaryctl("watch", RULE, "-n", APP_NS, "--no-tty", "--timeout", "600",
                        timeout=660, check=False)
    assert watched.returncode == 3, watched.stderr[-2000:]
    assert rule_status()["phase"] == "RolledBack"

    wait_for("the target back at 10 available pods", lambda: (
        (d := deployment(RULE)) is not None and d["spec"]["replicas"] == 10
        and d.get("status", {}).get("availableReplicas") == 10), timeout=300)
    target = deployment(RULE)
    assert target is not None
    envs = {e["name"] for c in target["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])}
    assert "CANARY_COHORT" not in envs
    wait_for("no canary pod left", lambda: not kubectl(
        "-n", APP_NS, "get", "pods", "-l", "canary.llmops.dev/cohort=canary",
        "-o", "name").stdout.split(), timeout=300)
    history = [h["action"] for h in rule_status().get("history", [])]
    assert history[0] == "start" and "rollback" in history
