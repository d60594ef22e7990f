"""Controller throughput: many rules in one controller, tick lateness, rollback latency.

    python benchmarks/controller_ticks.py [--quick] [--rules 200]

One ``canary-controller`` process (as in production, analysis every ``--interval``
seconds instead of every minute) against the Kubernetes API emulator on 127.0.0.1:

1. **start-up**: N rules and their target Deployments exist; time until every rule is
   Progressing with its canary Deployment created (rules reconciled per second);
2. **steady state**: for ``--steady`` seconds every rule is analysed each interval; the
   controller's own histogram ``llmcanary_tick_lateness_seconds`` (schedule → start) and
   ``llmcanary_tick_duration_seconds`` are read from ``/metrics``;
3. **rollback latency**: bad samples for one rule; time from the decision recorded in
   its status history to its canary scaled to zero (seen by polling every 20 ms).

The emulator is a single Python process on the same two cores, so absolute figures are
pessimistic; the reference for ratios is one rule in the same run.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canary_playground.kube import running_emulator  # noqa: E402
from canary_playground.net import free_port  # noqa: E402

from controller.actuator import deployments, rules  # noqa: E402
from controller.actuator.client import Kube, connect  # noqa: E402
from controller.actuator.errors import NotFound  # noqa: E402

NS = "default"


def create(kube: Kube, i: int) -> None:
    name = f"svc-{i}"
    kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                     {"name": "app", "image": "app:1"}]}}}})
    rules.apply_rule(kube, {
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetRef": {"name": name}, "canary": {"image": "app:2"},
                 "steps": [{"weight": 25}, {"weight": 50}],
                 "analysis": {"minSamplesPerCohort": 100, "settle": "1s", "guards": [
                     {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.02,
                      "groupBy": ["queue"]}]}}})


def progressing(kube: Kube, n: int) -> int:
    items, _ = rules.list_rules(kube, NS)
    return sum((o.get("status") or {}).get("phase") == "Progressing" for o in items[:n])


def histogram(text: str, name: str) -> dict[str, float]:
    """count, sum and p50/p99 estimates (bucket upper bounds) from Prometheus text."""
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le),
                            float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])

    def quantile(q: float) -> float | None:
        for le, c in buckets:
            if count and c >= q * count:
                return le
        return None

    return {"count": count, "mean": total / count if count else 0.0,
            "p50_le": quantile(0.5) or 0.0, "p99_le": quantile(0.99) or 0.0}


def bad_samples(rule: str, n: int) -> list[dict[str, Any]]:
    """``n`` canary samples falling back half the time and, as the first step's pods serve
    (1 canary pod of 4: 25%), three times as many healthy baseline samples. (With no
    baseline fallback a canary must expect 5 fallbacks at the 2-point tolerance before
    the guard may fail: 250 samples.)"""
    now = datetime.now().astimezone().isoformat()
    sizes = {"baseline": 3 * n, "canary": n}
    return [{"id": f"{rule}-{c}-{i}", "rule": rule, "cohort": c, "ts": now, "input": "q",
             "output": "a", "latency_ms": 1, "cost_usd": 0,
             "fallback": c == "canary" and i % 2 == 0}
            for c in ("baseline", "canary") for i in range(sizes[c])]


def wait_until_analysable(kube: Kube, rule: str, deadline: float) -> None:
    """Until the rule's first step has all its pods available and its settle time (1 s)
    has passed: canary samples count from then (earlier ones are the step before's)."""
    while not (rules.get_rule(kube, NS, rule).get("status") or {}).get("stepReadyAt"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{rule}: the first step's pods never became available")
        time.sleep(0.05)
    time.sleep(1.5)


def measure(n_rules: int, interval: float, steady: float, workdir: Path) -> dict[str, Any]:
    with running_emulator(workdir / f"kube-{n_rules}", readiness_delay=0.05) as emu:
        kube = connect(emu.kubeconfig)
        for i in range(n_rules):
            create(kube, i)
        port = free_port()
        log = (workdir / f"controller-{n_rules}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "--kubeconfig", emu.kubeconfig,
             "--host", "127.0.0.1", "--port", str(port), "--no-leader-elect",
             "--store", str(workdir / f"store-{n_rules}.db"), "--analysis-interval",
             f"{interval}s", "--log-level", "warning",
             "--insecure-allow-unauthenticated-ingestion"], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            t0 = time.monotonic()
            deadline = t0 + 600
            while progressing(kube, n_rules) < n_rules:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("rules did not all start; see the controller log")
                time.sleep(0.2)
            startup = time.monotonic() - t0
            time.sleep(steady)
            metrics = httpx.get(url + "/metrics", timeout=10).text
            lateness = histogram(metrics, "llmcanary_tick_lateness_seconds")
            duration = histogram(metrics, "llmcanary_tick_duration_seconds")
            # rollback latency for one rule
            wait_until_analysable(kube, "svc-0", time.monotonic() + 60)
            answer = httpx.post(url + "/v1/samples",
                                content=json.dumps(bad_samples("svc-0", 300)), timeout=30)
            answer.raise_for_status()
            rolled_at = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    dep = deployments.get_deployment(kube, NS, "svc-0-canary")
                except NotFound:
                    dep = {"spec": {"replicas": 1}}
                if dep["spec"].get("replicas") == 0:
                    rolled_at = datetime.now().astimezone()
                    break
                time.sleep(0.02)
            history = (rules.get_rule(kube, NS, "svc-0").get("status") or {}).get("history", [])
            decided = next((h["time"] for h in history if h["action"] == "rollback"), None)
            if rolled_at is None or decided is None:
                st = rules.get_rule(kube, NS, "svc-0").get("status") or {}
                raise RuntimeError("svc-0 was not rolled back within 60 s of its bad "
                                   f"samples: {st.get('phase')}: {st.get('message')}")
            latency = (rolled_at - datetime.fromisoformat(decided.replace("Z", "+00:00"))
                       ).total_seconds()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            log.close()
            kube.close()
    return {"rules": n_rules, "interval_s": interval,
            "startup_s": round(startup, 2), "rules_per_s": round(n_rules / startup, 1),
            "tick_lateness": lateness, "tick_duration": duration,
            "decision_to_rollback_patch_s": round(latency, 3)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 rules, short steady state")
    p.add_argument("--rules", type=int, default=None)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    n = args.rules or (20 if args.quick else 200)
    steady = 10.0 if args.quick else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        reference = measure(1, args.interval, steady, Path(tmp))
        print(json.dumps(reference), flush=True)
        loaded = measure(n, args.interval, steady, Path(tmp))
        print(json.dumps(loaded), flush=True)
    result = {"reference": reference, "loaded": loaded,
              "lateness_mean_ratio": (loaded["tick_lateness"]["mean"] /
                                      max(reference["tick_lateness"]["mean"], 1e-6))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "controller_ticks.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'controller_ticks.json'}")


if __name__ == "__main__":
    main()
