"""Ingestion under load: throughput, batch latency, peak memory against the chart's limit,
store growth and analysis ticks skipped, all in one run.

    python benchmarks/ingest_load.py [--quick] [--clients 4] [--seconds 30]

One ``canary-controller`` process (authenticated ingestion: a ServiceAccount token checked
by the Kubernetes API emulator's TokenReview; analysis every second) and N client threads
posting JSON batches as fast as the server takes them, honouring 429 + Retry-After as the
SDK does. Measured:

- accepted samples/s, and p50 / p99 batch latency (client side);
- 429 answers (back-pressure) and any other non-2xx;
- the controller's peak RSS (``VmHWM``) against the chart's memory limit, and per 1k
  samples/s of load;
- the store's bytes per sample (file + WAL);
- analysis ticks run and skipped, and tick lateness p99, from the controller's /metrics.

The reference is one client in the same run; the loaded figures are reported as ratios
to it. The emulator, the clients and the controller share the machine's cores, so
absolute figures are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canary_playground.kube import EmulatorHandle, running_emulator  # noqa: E402
from canary_playground.net import free_port  # noqa: E402

from benchmarks.controller_ticks import histogram  # noqa: E402
from controller.actuator import rules  # noqa: E402
from controller.actuator.client import Kube, connect  # noqa: E402
from controller.main import parse_size  # noqa: E402

NS = "default"
ACCOUNT = "bench-sa"


def chart_memory_limit() -> int:
    values = yaml.safe_load((ROOT / "charts" / "llm-canary" / "values.yaml").read_text())
    return parse_size(values["resources"]["limits"]["memory"])


def setup(kube: Kube) -> None:
    kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "bench"}},
                 "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {
                     "serviceAccountName": ACCOUNT,
                     "containers": [{"name": "app", "image": "app:1"}]}}}})
    rules.apply_rule(kube, {
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": "bench", "namespace": NS},
        "spec": {"targetRef": {"name": "bench"}, "canary": {"image": "app:2"},
                 "steps": [{"weight": 50}],
                 "analysis": {"minSamplesPerCohort": 10_000_000, "maxDuration": "1h",
                              "guards": [
                                  {"name": "fallback", "metric": "fallbackRate",
                                   "tolerance": 0.02, "groupBy": ["queue"]},
                                  {"name": "latency", "metric": "latency", "tolerance": 0.2,
                                   "relative": True}]}}})


def batch_template(size: int) -> bytes:
    """One batch of ``size`` samples, ``@@`` where each request puts its id prefix."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [json.dumps({
        "id": f"@@-{i}", "rule": "bench", "cohort": ("baseline", "canary")[i % 2], "ts": now,
        "queue": ("billing", "refunds", "general")[i % 3],
        "input": [{"role": "user", "content": f"Where is my refund for order {i}? " * 3}],
        "output": f"Your refund for order {i} was issued today; it takes 3-5 days. " * 2,
        "latency_ms": 800 + i % 400, "cost_usd": 0.0021, "fallback": i % 17 == 0})
        for i in range(size)]
    return "\n".join(lines).encode()


class Client(threading.Thread):
    def __init__(self, n: int, url: str, token: str, template: bytes, until: float) -> None:
        super().__init__(daemon=True)
        self.n, self.url, self.template, self.until = n, url, template, until
        self.headers = {"Authorization": f"Bearer {token}"}
        self.latencies: list[float] = []
        self.accepted = self.busy = self.other = 0

    def run(self) -> None:
        with httpx.Client(timeout=60) as http:
            k = 0
            while time.monotonic() < self.until:
                body = self.template.replace(b"@@", f"c{self.n}-{k}".encode())
                k += 1
                started = time.perf_counter()
                r = http.post(self.url + "/v1/samples", content=body, headers=self.headers)
                self.latencies.append(time.perf_counter() - started)
                if r.status_code == 429:
                    self.busy += 1
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                elif r.status_code == 200:
                    self.accepted += int(r.json()["accepted"])
                else:
                    self.other += 1


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(emu: EmulatorHandle, clients: int, seconds: float, workdir: Path, batch: int
            ) -> dict[str, Any]:
    port = free_port()
    store = workdir / f"store-{clients}.db"
    log = (workdir / f"controller-{clients}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "--kubeconfig", emu.kubeconfig,
         "--host", "127.0.0.1", "--port", str(port), "--no-leader-elect", "--store", str(store),
         "--analysis-interval", "1s", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    token = emu.issue_token(service_account=f"{NS}/{ACCOUNT}", audiences=["llm-canary"])
    try:
        deadline = time.monotonic() + 60
        while True:  # until the rule is loaded and the token accepted
            try:
                r = httpx.post(url + "/v1/samples", content=b"",
                               headers={"Authorization": f"Bearer {token}"}, timeout=5)
                if r.status_code == 400:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"controller not ready; see {log.name}")
            time.sleep(0.2)
        before = httpx.get(url + "/metrics").text
        template = batch_template(batch)
        until = time.monotonic() + seconds
        threads = [Client(i, url, token, template, until) for i in range(clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        time.sleep(2.0)  # the last ticks
        after = httpx.get(url + "/metrics").text
        rss = peak_rss(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    latencies = sorted(x for t in threads for x in t.latencies)
    accepted = sum(t.accepted for t in threads)
    on_disk = sum(p.stat().st_size for p in workdir.glob(f"store-{clients}.db*"))
    ticks_run = (histogram(after, "llmcanary_tick_duration_seconds")["count"]
                 - histogram(before, "llmcanary_tick_duration_seconds")["count"])
    skipped = metric(after, "llmcanary_ticks_skipped_total") - \
        metric(before, "llmcanary_ticks_skipped_total")
    return {
        "clients": clients, "seconds": round(elapsed, 1), "batch": batch,
        "body_kib": round(len(template) / 1024),
        "accepted": accepted, "samples_per_s": round(accepted / elapsed),
        "batch_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "batch_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies else None,
        "answers_429": sum(t.busy for t in threads), "answers_other": sum(t.other for t in threads),
        "peak_rss_mib": round(rss / 2**20, 1),
        "store_bytes_per_sample": round(on_disk / accepted) if accepted else None,
        "ticks_run": int(ticks_run), "ticks_skipped": int(skipped),
        "tick_lateness": histogram(after, "llmcanary_tick_lateness_seconds"),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 clients for 4 s")
    p.add_argument("--clients", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--batch", type=int, default=500, help="samples per request")
    p.add_argument("--worst-case", action="store_true",
                   help="also 8 clients posting ~10 MiB bodies (the memory bound)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    clients = args.clients or (2 if args.quick else 4)
    seconds = args.seconds or (4.0 if args.quick else 30.0)
    limit = chart_memory_limit()
    with tempfile.TemporaryDirectory() as tmp, running_emulator(Path(tmp) / "kube") as emu:
        kube = connect(emu.kubeconfig)
        setup(kube)
        kube.close()
        reference = measure(emu, 1, seconds, Path(tmp), args.batch)
        print(json.dumps(reference), flush=True)
        loaded = measure(emu, clients, seconds, Path(tmp), args.batch)
        print(json.dumps(loaded), flush=True)
        worst = measure(emu, 8, seconds, Path(tmp), 22_000) if args.worst_case else None
        if worst:
            print(json.dumps(worst), flush=True)
    rate = max(loaded["samples_per_s"], 1)
    result = {
        "reference": reference, "loaded": loaded,
        "chart_memory_limit_mib": round(limit / 2**20),
        "peak_rss_vs_limit": round(loaded["peak_rss_mib"] * 2**20 / limit, 2),
        "peak_rss_mib_per_1k_samples_per_s": round(loaded["peak_rss_mib"] / (rate / 1000), 1),
        "throughput_ratio": round(loaded["samples_per_s"] / max(reference["samples_per_s"], 1),
                                  2),
        "batch_p99_ratio": round((loaded["batch_p99_ms"] or 0) /
                                 max(reference["batch_p99_ms"] or 1, 1e-3), 2),
    }
    if worst:
        result["worst_case"] = worst
        result["worst_case_rss_vs_limit"] = round(worst["peak_rss_mib"] * 2**20 / limit, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest_load.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'ingest_load.json'}")


if __name__ == "__main__":
    main()
