"""A real Prometheus on 127.0.0.1 (the Debian ``prometheus`` binary), for tests and the demo.

``run_prometheus`` starts it on a free port with a temporary storage directory and a
generated config scraping the given targets every second, waits until it is ready and
until the first scrape has landed, and stops it on exit. ``tests/support/prometheus.py``
adds the pytest side (skip locally / fail in CI when the binary is missing, fixtures).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .net import free_port

JOB = "exporter"
START_TIMEOUT = 30.0


def prometheus_binary() -> str | None:
    return os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


def require_prometheus() -> str:
    """The binary's path, or RuntimeError naming how to install it."""
    binary = prometheus_binary()
    if binary:
        return binary
    raise RuntimeError("the prometheus binary is not installed (apt-get install prometheus, "
                       "or set PROMETHEUS_BIN)")


def render_config(targets: Sequence[str], *, scrape_interval: str = "1s", job: str = JOB) -> str:
    """A minimal prometheus.yml scraping ``targets`` (``host:port``). JSON is valid YAML."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass(frozen=True)
class PromtoolResult:
    ok: bool
    output: str


def promtool_check_config(path: str | Path) -> PromtoolResult | None:
    """``promtool check config PATH``; ``None`` when promtool is not installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    proc = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return PromtoolResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def query(url: str, promql: str) -> list[Any]:
    """Raw instant query against the Prometheus at ``url``."""
    qs = urllib.parse.urlencode({"query": promql})
    result: list[Any] = _get_json(f"{url}/api/v1/query?{qs}")["data"]["result"]
    return result


def wait_for_query(url: str, promql: str, predicate: Any, timeout: float = 15.0) -> list[Any]:
    """Poll an instant query until ``predicate(result)`` holds; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    result: list[Any] = []
    while time.monotonic() < deadline:
        try:
            result = query(url, promql)
        except (OSError, ValueError, KeyError):
            result = []
        if predicate(result):
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {promql!r}; last {result}")


def wait_for_scrape(url: str, job: str = JOB, timeout: float = START_TIMEOUT) -> None:
    """Until every target of ``job`` has been scraped successfully once."""
    wait_for_query(url, f'up{{job="{job}"}}',
                   lambda r: bool(r) and all(float(s["value"][1]) == 1 for s in r), timeout)


@dataclass
class PrometheusServer:
    url: str
    port: int
    config_path: Path
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def query(self, promql: str) -> list[Any]:
        """Raw instant query (for test assertions independent of the code under test)."""
        return query(self.url, promql)

    def wait_for(self, promql: str, predicate: Any, timeout: float = 15.0) -> list[Any]:
        """Poll an instant query until ``predicate(result)`` holds; bounded by ``timeout``."""
        return wait_for_query(self.url, promql, predicate, timeout)

    def wait_for_scrape(self, job: str = JOB, timeout: float = 15.0) -> None:
        """Until every target of ``job`` has been scraped successfully once."""
        wait_for_scrape(self.url, job, timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start(binary: str, config: Path, data: Path, log: Path) -> PrometheusServer:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return PrometheusServer(f"http://127.0.0.1:{port}", port, config, data, process, log)


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running:
            return False
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    return False


@contextmanager
def run_prometheus(
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    wait_for_scrape: bool = True,
    workdir: str | Path | None = None,
) -> Iterator[PrometheusServer]:
    """Start a real Prometheus scraping ``targets``; stop it and remove its data after."""
    binary = require_prometheus()
    with tempfile.TemporaryDirectory(prefix="prom-", dir=workdir) as tmp:
        root = Path(tmp)
        config = root / "prometheus.yml"
        config.write_text(render_config(targets, scrape_interval=scrape_interval))
        log = root / "prometheus.log"
        server: PrometheusServer | None = None
        # A port taken between probing and binding makes the process exit: try again.
        for attempt in range(3):
            data = root / f"data{attempt}"
            server = _start(binary, config, data, log)
            if _wait_ready(server, START_TIMEOUT):
                break
            server.stop()
        assert server is not None
        if not server.running:
            raise RuntimeError(f"prometheus did not start:\n{server.log()}")
        try:
            if wait_for_scrape and targets:
                server.wait_for_scrape(timeout=START_TIMEOUT)
            yield server
        finally:
            server.stop()
