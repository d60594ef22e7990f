"""Running the emulator: as a process (``python -m canary_playground.kube``), from tests
(``with running_emulator() as emu:``), and the handle tests use (side API, kubeconfigs,
tokens).

``running_emulator`` starts the server as a subprocess on a free port (the controller
under test is its own process too), waits for it, yields an :class:`EmulatorHandle`, and
stops it. With ``rbac_from_chart`` it turns RBAC enforcement on, renders the Helm chart and
loads its RBAC objects and ServiceAccount, and issues a token and a kubeconfig for the
controller's ServiceAccount (``emu.controller``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import JSON
from .tls import client_context, make_certificate, server_context

if TYPE_CHECKING:
    from .chart import ChartIdentity

PLAYGROUND_ROOT = Path(__file__).resolve().parents[2]


def write_kubeconfig(path: Path | str, url: str, token: str | None,
                     namespace: str = "default", user: str = "emulator",
                     ca_pem: str | None = None) -> None:
    user_entry: JSON = {"token": token} if token else {}
    cluster: JSON = {"server": url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": cluster}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": user,
                                                      "namespace": namespace}}],
    }
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(path)


class EmulatorHandle:
    """A running emulator: its URL, kubeconfig, and the side API for tests."""

    def __init__(self, url: str, kubeconfig: Path | str, token: str | None,
                 ca_pem: str | None = None) -> None:
        self.url, self.kubeconfig, self.token = url, str(kubeconfig), token
        self.ca_pem = ca_pem
        self._ssl = client_context(ca_pem)
        self.controller: ChartIdentity | None = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self._ssl) as resp:
            return json.loads(resp.read())

    def api(self, method: str, path: str, body: Any = None, *,
            content_type: str = "application/json") -> Any:
        """One admin request to the Kubernetes API (JSON in, JSON out)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=10, context=self._ssl) as resp:
            return json.loads(resp.read() or b"null")

    def add_fault(self, path_regex: str, *, status: int = 500, method: str = "*",
                  count: int = 1, delay: float = 0.0, timeout: bool = False,
                  after: bool = False, message: str = "") -> JSON:
        """Fail the next ``count`` matching requests (``-1``: until cleared)."""
        return dict(self._call("POST", "/_emulator/faults", {
            "path_regex": path_regex, "method": method, "status": status, "count": count,
            "delay": delay, "timeout": timeout, "after": after, "message": message}))

    def faults(self) -> list[JSON]:
        return list(self._call("GET", "/_emulator/faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def mark(self) -> int:
        """The sequence number of the last logged request (to pass to ``requests``)."""
        return int(self._call("GET", "/_emulator/requests?since=999999999999")["last"])

    def requests(self, since: int = 0, *, writes: bool = False) -> list[JSON]:
        out = list(self._call("GET", f"/_emulator/requests?since={since}")["requests"])
        if writes:
            out = [r for r in out if r["method"] in ("POST", "PUT", "PATCH", "DELETE")]
        return out

    def reset(self) -> None:
        """Back to the objects present at start (and at the last :meth:`baseline`)."""
        self._call("POST", "/_emulator/reset", {})

    def baseline(self) -> None:
        """Make the current objects what :meth:`reset` restores."""
        self._call("POST", "/_emulator/baseline", {})

    def compact(self) -> None:
        self._call("POST", "/_emulator/compact", {})

    def disconnect_watches(self) -> None:
        self._call("POST", "/_emulator/disconnect-watches", {})

    def configure(self, **settings: Any) -> JSON:
        """``readinessDelay`` (old name ``deploymentDelay``), ``slowReadyDelay``,
        ``podStartDelay``, ``crashLoopInterval``, ``hpaInterval``, ``bookmarkInterval``,
        ``historyLimit``, ``rbac``."""
        return dict(self._call("POST", "/_emulator/config", settings))

    def config(self) -> JSON:
        return dict(self._call("GET", "/_emulator/config"))

    def issue_token(self, service_account: str | None = None, *, user: str | None = None,
                    groups: list[str] | None = None, audiences: list[str] | None = None,
                    expiration_seconds: float | None = None) -> str:
        """A bearer token for ``namespace/name`` (a ServiceAccount) or a ``user``."""
        body: JSON = {"audiences": audiences or [], "groups": groups or []}
        if service_account:
            body["serviceAccount"] = service_account
        if user:
            body["user"] = user
        if expiration_seconds is not None:
            body["expirationSeconds"] = expiration_seconds
        return str(self._call("POST", "/_emulator/tokens", body)["token"])

    def kubeconfig_for(self, token: str, path: Path | str, namespace: str = "default") -> str:
        """Write a kubeconfig for ``token`` (trusting this server's certificate)."""
        write_kubeconfig(path, self.url, token, namespace, ca_pem=self.ca_pem)
        return str(path)

    def wait_healthy(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/_emulator/health")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no controller work is due now (timers may still be pending)."""
        deadline = time.monotonic() + timeout
        while not self._call("GET", "/_emulator/idle")["idle"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the emulator's controllers did not settle")
            time.sleep(0.02)


def emulator_args(kubeconfig: Path, *, readiness_delay: float, slow_ready_delay: float,
                  bookmark_interval: float, history_limit: int, token: bool, rbac: bool,
                  hpa_interval: float, crash_loop_interval: float, tls: bool = False
                  ) -> list[str]:
    args = [sys.executable, "-m", "canary_playground.kube", "--port", "0",
            "--kubeconfig", str(kubeconfig), "--readiness-delay", str(readiness_delay),
            "--slow-ready-delay", str(slow_ready_delay),
            "--bookmark-interval", str(bookmark_interval), "--history-limit", str(history_limit),
            "--hpa-interval", str(hpa_interval), "--crash-loop-interval",
            str(crash_loop_interval)]
    if not token:
        args.append("--no-token")
    if rbac:
        args.append("--rbac")
    if tls:
        args.append("--tls")
    return args


def child_env() -> dict[str, str]:
    """The environment of a child process, resolving this very playground package."""
    env = dict(os.environ)
    paths = [str(PLAYGROUND_ROOT), str(PLAYGROUND_ROOT.parent)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return env


def wait_for_kubeconfig(proc: subprocess.Popen[bytes], kubeconfig: Path, log: Path,
                        timeout: float = 15.0) -> EmulatorHandle:
    deadline = time.monotonic() + timeout
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"kube emulator did not start; see {log}")
        time.sleep(0.02)
    return handle_from_kubeconfig(kubeconfig)


def handle_from_kubeconfig(kubeconfig: Path) -> EmulatorHandle:
    """A handle for an emulator that wrote (admin) ``kubeconfig``; waits until it answers."""
    config = json.loads(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority-data")
    handle = EmulatorHandle(cluster["server"], kubeconfig,
                            config["users"][0]["user"].get("token"),
                            base64.b64decode(ca).decode() if ca else None)
    handle.wait_healthy()
    return handle


@contextmanager
def running_emulator(directory: str | Path | None = None, *, readiness_delay: float = 0.3,
                     deployment_delay: float | None = None, slow_ready_delay: float = 20.0,
                     bookmark_interval: float = 5.0, history_limit: int = 10_000,
                     token: bool = True, rbac: bool = False,
                     rbac_from_chart: bool | JSON | None = None, hpa_interval: float = 2.0,
                     crash_loop_interval: float = 1.0, tls: bool = False
                     ) -> Iterator[EmulatorHandle]:
    """Start the emulator as a subprocess on a free port; yield its handle; stop it.

    ``deployment_delay`` is the old name of ``readiness_delay``. ``rbac_from_chart``: True
    (or chart values) loads the chart's RBAC and enforces it; ``emu.controller`` then has
    the controller's ServiceAccount, token and kubeconfig. ``tls``: serve HTTPS with a
    self-signed certificate (kubectl sends credentials over TLS only).
    """
    if deployment_delay is not None:
        readiness_delay = deployment_delay
    with tempfile.TemporaryDirectory(prefix="kube-emulator-") as tmp:
        base = Path(directory) if directory is not None else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        kubeconfig = base / "kubeconfig"
        kubeconfig.unlink(missing_ok=True)
        log_path = base / "kube-emulator.log"
        log = log_path.open("wb")
        args = emulator_args(kubeconfig, readiness_delay=readiness_delay,
                             slow_ready_delay=slow_ready_delay,
                             bookmark_interval=bookmark_interval, history_limit=history_limit,
                             token=token, rbac=rbac or bool(rbac_from_chart),
                             hpa_interval=hpa_interval, crash_loop_interval=crash_loop_interval,
                             tls=tls)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=child_env())
        try:
            handle = wait_for_kubeconfig(proc, kubeconfig, log_path)
            if rbac_from_chart:
                from .chart import load_chart_rbac

                values = rbac_from_chart if isinstance(rbac_from_chart, dict) else None
                handle.controller = load_chart_rbac(handle, base, values=values)
            yield handle
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()


def main(argv: list[str] | None = None) -> int:
    from .emulator import DEFAULT_CRD, Emulator, Settings
    from .http import EmulatorServer

    p = argparse.ArgumentParser(description="Kubernetes API emulator for tests")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--kubeconfig", type=Path, help="write an admin kubeconfig here")
    p.add_argument("--readiness-delay", "--deployment-delay", type=float, default=0.3)
    p.add_argument("--slow-ready-delay", type=float, default=20.0)
    p.add_argument("--pod-start-delay", type=float, default=0.05)
    p.add_argument("--crash-loop-interval", type=float, default=1.0)
    p.add_argument("--bookmark-interval", type=float, default=5.0)
    p.add_argument("--history-limit", type=int, default=10_000)
    p.add_argument("--hpa-interval", type=float, default=2.0)
    p.add_argument("--crd", type=Path, action="append", help="CRD manifests (repeatable)")
    p.add_argument("--rbac", action="store_true", help="enforce RBAC for non-admin users")
    p.add_argument("--no-token", action="store_true", help="accept unauthenticated requests")
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed "
                   "certificate (its CA goes into the kubeconfig)")
    args = p.parse_args(argv)
    token = None if args.no_token else secrets.token_hex(16)
    emulator = Emulator(Settings(
        token=token, readiness_delay=args.readiness_delay,
        slow_ready_delay=args.slow_ready_delay, pod_start_delay=args.pod_start_delay,
        crash_loop_interval=args.crash_loop_interval, bookmark_interval=args.bookmark_interval,
        history_limit=args.history_limit, hpa_interval=args.hpa_interval, rbac=args.rbac,
        crds=tuple(args.crd or [DEFAULT_CRD])))
    ca_pem, context = None, None
    with tempfile.TemporaryDirectory(prefix="kube-emulator-tls-") as tmp:
        if args.tls:
            cert, key, ca_pem = make_certificate(Path(tmp))
            context = server_context(cert, key)
        server = EmulatorServer(emulator, args.port, context)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, server.url, token, ca_pem=ca_pem)
    print(f"listening on {server.url}", flush=True)
    stop.wait()
    server.close()
    return 0
