"""The controller as its own process (``python -m controller``) on 127.0.0.1, for the e2e
tests (scenarios and hostile clients): started, probed, fed and stopped the way an operator
would.

Against an emulator that enforces the Helm chart's RBAC (``rbac_from_chart``), the process
runs as the chart's ServiceAccount (the emulator's ``controller`` identity, with its lease
namespace and name), so a call the chart does not grant fails with a 403.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from canary_playground.kube import EmulatorHandle
from canary_playground.net import free_port

FAST = ["--analysis-interval", "1s", "--resync", "2", "--poll-seconds", "0.3"]
"""Short periods, so a scenario's steps follow each other in seconds."""


def _arguments(emu: EmulatorHandle, port: int, store: Path, name: str, *,
               leader_elect: bool, insecure: bool, judge_url: str | None) -> list[str]:
    identity = emu.controller
    kubeconfig = identity.kubeconfig if identity else emu.kubeconfig
    args = [sys.executable, "-X", "faulthandler", "-m", "controller",
            "--kubeconfig", kubeconfig, "--host", "127.0.0.1", "--port", str(port),
            "--store", str(store), "--identity", name, "--log-level", "debug", *FAST]
    if leader_elect:
        args += ["--leader-elect", "--lease-seconds", "3", "--renew-seconds", "2",
                 "--retry-seconds", "0.5"]
        if identity:
            args += ["--lease-namespace", identity.namespace, "--lease-name", identity.lease_name]
    else:
        args.append("--no-leader-elect")
    if insecure:  # posting as the application on 127.0.0.1, without a token
        args.append("--insecure-allow-unauthenticated-ingestion")
    if judge_url:
        args += ["--judge-allowed-url", judge_url]
    return args


class Controller:
    """One ``python -m controller`` process and its HTTP port; ``token`` is the bearer
    token its clients send (when ingestion is authenticated, ``insecure=False``)."""

    def __init__(self, emu: EmulatorHandle, workdir: Path, *, name: str = "c1",
                 leader_elect: bool = False, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, judge_url: str | None = None,
                 insecure: bool = True, token: str | None = None) -> None:
        self.port = free_port()
        self.name = name
        self.token = token
        self.log_path = workdir / f"{name}.log"
        self.store = workdir / f"{name}.db"
        args = _arguments(emu, self.port, self.store, name, leader_elect=leader_elect,
                          insecure=insecure, judge_url=judge_url) + (extra or [])
        child = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        child.update(env or {})
        self.log = self.log_path.open("ab")  # a restart under the same name appends
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=child)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_until_serving(deadline=time.monotonic() + 30)

    def _wait_until_serving(self, deadline: float) -> None:
        while True:
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("controller did not start:\n" + self.logs()) from None
                time.sleep(0.1)

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def post(self, path: str, body: bytes | str, *, headers: dict[str, str] | None = None,
             retry_503: float = 20.0) -> httpx.Response:
        """POST, retrying 503 (standby, or rules not loaded yet) as a client would."""
        deadline = time.monotonic() + retry_503
        while True:
            r = httpx.post(self.url + path, content=body, timeout=30,
                           headers=self.headers() if headers is None else headers)
            if r.status_code != 503 or time.monotonic() > deadline:
                return r
            time.sleep(0.2)

    def post_samples(self, records: list[dict[str, Any]]) -> httpx.Response:
        return self.post("/v1/samples", json.dumps(records))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.log.closed:
            self.log.close()


@contextmanager
def controller_processes(emu: EmulatorHandle, workdir: Path, *, secret: str,
                         **defaults: Any) -> Iterator[Callable[..., Controller]]:
    """A function starting controllers (``defaults`` overridden per call), all stopped at
    the end; then no log may hold ``secret`` or a client's bearer token, nor show a call
    the Helm chart's RBAC refused."""
    started: list[Controller] = []

    def start(**kw: Any) -> Controller:
        c = Controller(emu, workdir, **{**defaults, **kw})
        started.append(c)
        return c

    try:
        yield start
    finally:
        for c in started:
            c.stop()
    for c in started:
        text = c.log_path.read_text(errors="replace")
        assert secret not in text, "API key in logs"
        assert c.token is None or c.token not in text, "bearer token in logs"
        assert 'forbidden: User \\"system:serviceaccount:' not in text, \
            f"the chart's RBAC refused a call of the controller:\n{text[-3000:]}"
