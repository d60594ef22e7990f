"""The controller as its own process (``python -m controller``) on 127.0.0.1, for e2e tests
and benchmarks: started, probed, fed and stopped the way an operator would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Controller:
    """One ``python -m controller`` process and its HTTP port."""

    def __init__(self, kubeconfig: str, workdir: Path, *, extra: list[str] | None = None,
                 name: str = "c1", judge_url: str | None = None,
                 insecure: bool = True, token: str | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.store = workdir / f"{name}.db"
        self.token = token
        args = [sys.executable, "-m", "controller", "--kubeconfig", kubeconfig,
                "--host", "127.0.0.1", "--port", str(self.port), "--store", str(self.store),
                "--analysis-interval", "1s", "--resync", "2", "--identity", name,
                "--log-level", "debug", *(extra or ["--no-leader-elect"]),
                *(["--insecure-allow-unauthenticated-ingestion"] if insecure else []),
                *(["--judge-allowed-url", judge_url] if judge_url else [])]
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                break
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
