"""The building blocks of a local playground: processes with pid files and logs in one
directory, and the parts of an llm-canary setup (Kubernetes API emulator, scripted judge,
Prometheus, controller) started as those processes.

``canaryctl playground up`` starts them detached (they outlive the command; ``down``
stops them by their pid files); ``canaryctl demo`` starts the same parts attached and
stops them when the scenario ends. A pid file records the command line, so ``down``
never signals an unrelated process that happens to reuse the pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kube.handle import EmulatorHandle, child_env, handle_from_kubeconfig
from .net import free_port
from .prometheus_server import prometheus_binary, render_config

START_TIMEOUT = 30.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _same_process(pid: int, argv: list[str]) -> bool:
    """Whether ``pid`` still runs ``argv`` (always true where /proc is missing)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)
    return [c.decode(errors="replace") for c in cmdline if c][:len(argv)] == argv


@dataclass
class Stack:
    """Processes of one playground, each ``<dir>/<name>.pid`` and ``<dir>/<name>.log``."""

    directory: Path
    detached: bool = False
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        with self.log_path(name).open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env or child_env(),
                                    start_new_session=self.detached, cwd=self.directory)
        self.children[name] = proc
        (self.directory / f"{name}.pid").write_text(json.dumps(
            {"pid": proc.pid, "argv": argv, "started": time.time()}))
        return proc

    def running(self) -> dict[str, int]:
        """Name -> pid of the recorded processes that still run."""
        out = {}
        for path in sorted(self.directory.glob("*.pid")):
            try:
                record = json.loads(path.read_text())
                pid, argv = int(record["pid"]), list(record["argv"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if _alive(pid) and _same_process(pid, argv):
                out[path.stem] = pid
        return out

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if it was running."""
        pid_file = self.directory / f"{name}.pid"
        pid = self.running().get(name)
        was_running = pid is not None
        if pid is not None:
            with _suppress_gone():
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._still(name, pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._still(name, pid):
                with _suppress_gone():
                    os.kill(pid, signal.SIGKILL)
                while self._still(name, pid) and time.monotonic() < deadline + 5:
                    time.sleep(0.05)
        child = self.children.pop(name, None)
        if child is not None:
            child.poll()
        pid_file.unlink(missing_ok=True)
        return was_running

    def _still(self, name: str, pid: int) -> bool:
        child = self.children.get(name)
        if child is not None:
            return child.poll() is None
        return _alive(pid)

    def stop_all(self) -> list[str]:
        """Stop every recorded process, the controller first (it holds the lease)."""
        names = sorted({p.stem for p in self.directory.glob("*.pid")} | set(self.children),
                       key=lambda n: (n != "controller", n != "emulator", n))
        return [n for n in names if self.stop(n)]

    def check(self, name: str) -> None:
        child = self.children.get(name)
        if child is not None and child.poll() is not None:
            raise RuntimeError(f"{name} exited ({child.returncode}); see {self.log_path(name)}")


class _suppress_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is ProcessLookupError


def _wait_http(stack: Stack, name: str, url: str, *, status: int = 200,
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stack.check(name)
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == status:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not become ready at {url}; see "
                               f"{stack.log_path(name)}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- the parts


def start_emulator(stack: Stack, *, tls: bool = False, rbac: bool = False,
                   readiness_delay: float = 0.3) -> EmulatorHandle:
    """The Kubernetes API emulator; its admin kubeconfig is ``<dir>/kubeconfig``."""
    kubeconfig = stack.directory / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "canary_playground.kube", "--port", "0", "--kubeconfig",
            str(kubeconfig), "--readiness-delay", str(readiness_delay)]
    argv += ["--tls"] * tls + ["--rbac"] * rbac
    stack.start("emulator", argv)
    deadline = time.monotonic() + START_TIMEOUT
    while not kubeconfig.exists():
        stack.check("emulator")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the emulator did not start; see {stack.log_path('emulator')}")
        time.sleep(0.02)
    return handle_from_kubeconfig(kubeconfig)


def start_judge(stack: Stack, api_key: str) -> str:
    """The scripted OpenAI-compatible judge; returns its base URL (``.../v1``)."""
    port = free_port()
    stack.start("judge", [sys.executable, "-m", "canary_playground.scripted_judge",
                          "--port", str(port), "--api-key", api_key])
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        stack.check("judge")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return url
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the judge did not start; see "
                                   f"{stack.log_path('judge')}") from exc
            time.sleep(0.05)


def start_prometheus(stack: Stack, targets: list[str], *, scrape_interval: str = "1s"
                     ) -> str | None:
    """A real Prometheus scraping ``targets`` when the binary is installed (else None)."""
    binary = prometheus_binary()
    if binary is None:
        return None
    root = stack.directory / "prometheus"
    root.mkdir(exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(render_config(targets, scrape_interval=scrape_interval))
    port = free_port()
    stack.start("prometheus", [binary, f"--config.file={config}",
                               f"--storage.tsdb.path={root / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}",
                               "--storage.tsdb.retention.time=1h", "--log.level=warn"])
    url = f"http://127.0.0.1:{port}"
    _wait_http(stack, "prometheus", f"{url}/-/ready")
    return url


@dataclass
class ControllerOptions:
    kubeconfig: str
    port: int = 0
    store: str = ""
    judge_base_url: str | None = None
    prometheus_url: str | None = None
    leader_elect: bool = False
    lease_name: str = "llm-canary-controller"
    lease_namespace: str = "default"
    identity: str = "playground"
    analysis_interval: str | None = None
    resync: float | None = None
    judge_allowed_urls: list[str] = field(default_factory=list)
    insecure_ingestion: bool = False
    """Accept unauthenticated samples (the default checks ServiceAccount tokens)."""
    extra: list[str] = field(default_factory=list)


def controller_argv(opts: ControllerOptions, store: str) -> list[str]:
    argv = [sys.executable, "-m", "controller", "--kubeconfig", opts.kubeconfig,
            "--host", "127.0.0.1", "--port", str(opts.port), "--store", store,
            "--identity", opts.identity]
    if opts.leader_elect:
        argv += ["--leader-elect", "--lease-name", opts.lease_name, "--lease-namespace",
                 opts.lease_namespace]
    else:
        argv.append("--no-leader-elect")
    for flag, value in (("--judge-base-url", opts.judge_base_url),
                        ("--prometheus-url", opts.prometheus_url),
                        ("--analysis-interval", opts.analysis_interval),
                        ("--resync", opts.resync)):
        if value is not None:
            argv += [flag, str(value)]
    for url in opts.judge_allowed_urls:
        argv += ["--judge-allowed-url", url]
    if opts.insecure_ingestion:
        argv.append("--insecure-allow-unauthenticated-ingestion")
    return argv + opts.extra


def start_controller(stack: Stack, opts: ControllerOptions) -> str:
    """``python -m controller``; returns its URL once it reports ready (the leader)."""
    opts.port = opts.port or free_port()
    store = opts.store or str(stack.directory / "samples.db")
    env = {k: v for k, v in child_env().items()
           if k not in ("OPENAI_API_KEY", "CANARY_INGEST_TOKEN")}
    stack.start("controller", controller_argv(opts, store), env=env)
    url = f"http://127.0.0.1:{opts.port}"
    _wait_http(stack, "controller", f"{url}/readyz")
    return url
