"""Connecting to the API server, and the one request path every actuator call takes.

The actuator speaks JSON dicts to the API through the official client's transport
(``ApiClient.param_serialize`` + ``call_api``: its configuration, TLS, tokens and exec
credential plugins) rather than through the generated typed models: those models forbid
unknown fields, so an object written by a newer API server (or another controller) would
fail to round-trip. The typed APIs are still on :class:`Kube` for callers that want them.

Timeouts are explicit on every call, and urllib3 never retries a request whose response
might have been lost (``read=0``): a retry is the caller's decision, made with the
resourceVersion in hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

if not hasattr(client.ApiClient, "param_serialize"):  # pragma: no cover - install-time check
    raise ImportError(
        "llm-canary needs the kubernetes client 37 or newer (ApiClient.param_serialize and "
        "the new call_api); install kubernetes>=37")

from controller.models.base import JSON

from .errors import Gone, KubeError, from_status, map_errors

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class Kube:
    """An API connection: the ApiClient, default namespace and timeouts."""

    api: client.ApiClient
    namespace: str = "default"
    timeout: tuple[float, float] = (5.0, 30.0)  # (connect, read) seconds

    def _serialize(self, method: str, path: str, query: dict[str, str] | None,
                   body: Any, content_type: str | None) -> tuple[str, str, Any, Any]:
        headers: dict[str, str] = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method, url, headers, body, _ = self.api.param_serialize(
            method=method, resource_path=path,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        return method, url, headers, body

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                body: Any = None, content_type: str | None = None,
                timeout: tuple[float, float] | None = None) -> JSON:
        """One API call; the decoded JSON answer, or a :class:`KubeError`."""
        method, url, headers, data = self._serialize(method, path, query, body, content_type)
        what = f"{method} {path}"
        with map_errors(what):
            resp = self.api.call_api(method, url, header_params=headers, body=data,
                                     _request_timeout=timeout or self.timeout)
            raw = resp.read()
        if not 200 <= resp.status < 300:
            err = from_status(resp.status, raw, resp.headers)
            err.message = f"{what}: {err.message}"
            err.args = (f"{err.reason}: {err.message}",)
            raise err
        try:
            answer = json.loads(raw or b"{}")
        except ValueError as exc:
            raise KubeError(f"{what}: answer is not JSON", reason="BadResponse") from exc
        return answer if isinstance(answer, dict) else {"items": answer}

    def watch(self, path: str, query: dict[str, str], timeout_seconds: float,
              on_open: Callable[[Callable[[], None]], None] | None = None
              ) -> Iterator[tuple[str, JSON]]:
        """Stream ``(type, object)`` watch events; :class:`Gone` when the version expired.

        Ends when the server closes the stream (``timeoutSeconds``). BOOKMARK events are
        yielded too: their object carries only ``metadata.resourceVersion``. ``on_open``
        receives a function that closes the stream from another thread (a blocked read
        then ends at once), so a watcher that must stop never waits for the timeout.
        """
        query = {**query, "watch": "true", "timeoutSeconds": str(int(timeout_seconds))}
        method, url, headers, _ = self._serialize("GET", path, query, None, None)
        what = f"WATCH {path}"
        with map_errors(what):
            resp = self.api.call_api(method, url, header_params=headers,
                                     _request_timeout=(self.timeout[0], timeout_seconds + 15))
        if not 200 <= resp.status < 300:
            with map_errors(what):
                raw = resp.read()
            raise from_status(resp.status, raw, resp.headers)
        stream = resp.response
        if on_open is not None:
            on_open(lambda: _shutdown(stream))
        finished = False
        try:
            buffer = b""
            with map_errors(what):
                for chunk in stream.stream(decode_content=True):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield _event(line, what)
                if buffer.strip():
                    yield _event(buffer, what)
            finished = True
        finally:
            if not finished:  # a half-read stream must not go back to the pool
                stream.close()
            stream.release_conn()

    def close(self) -> None:
        self.api.close()


def _shutdown(stream: Any) -> None:
    """Close a streaming response's socket from another thread (urllib3 >= 2.3)."""
    try:
        stream.shutdown()
    except Exception:  # already closed, or a transport without shutdown
        stream.close()


def _event(line: bytes, what: str) -> tuple[str, JSON]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise KubeError(f"{what}: malformed watch event", reason="BadResponse") from exc
    kind, obj = str(event.get("type", "")), event.get("object") or {}
    if kind == "ERROR":
        code = int(obj.get("code") or 500)
        if code == 410:
            raise Gone(f"{what}: {obj.get('message', 'resource version expired')}",
                       reason=str(obj.get("reason") or "Expired"), status=410)
        raise from_status(code, obj)
    return kind, obj


def path_of(api_version: str, plural: str, namespace: str | None = None,
            name: str | None = None, subresource: str | None = None) -> str:
    """``/api/v1/...`` or ``/apis/group/version/...`` for a resource (names quoted)."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    if subresource:
        base += f"/{subresource}"
    return base


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and \
        (SERVICE_ACCOUNT_DIR / "token").exists()


def _no_config(path: str, *, given: bool) -> str:
    """Why there is no configuration, in one line: the file that is missing, and that this
    is not a pod (no in-cluster service account either)."""
    what = "is a directory" if Path(path).is_dir() else "does not exist"
    where = "" if given else (" (from $KUBECONFIG)" if os.environ.get("KUBECONFIG")
                              else " (the default; set --kubeconfig or $KUBECONFIG)")
    pod = "" if given else "; not running in a pod either (no KUBERNETES_SERVICE_HOST " \
        "and service account token), so there is no in-cluster configuration"
    return f"no Kubernetes configuration: kubeconfig {path}{where} {what}{pod}"


def connect(kubeconfig: str | None = None, context: str | None = None, *,
            timeout: tuple[float, float] = (5.0, 30.0)) -> Kube:
    """A :class:`Kube` from, in order: the given kubeconfig file; the in-cluster service
    account when running in a pod; ``$KUBECONFIG``; ``~/.kube/config``."""
    cfg = client.Configuration()
    namespace = "default"
    path = kubeconfig
    try:
        if path is None and in_cluster():
            config.load_incluster_config(client_configuration=cfg)
            ns_file = SERVICE_ACCOUNT_DIR / "namespace"
            if ns_file.exists():
                namespace = ns_file.read_text().strip() or namespace
        else:
            if path is None:
                path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
                    str(Path.home() / ".kube" / "config")
            if not Path(path).is_file():
                raise KubeError(_no_config(path, given=kubeconfig is not None),
                                reason="ConfigError")
            config.load_kube_config(config_file=path, context=context,
                                    client_configuration=cfg, persist_config=False)
            contexts, active = config.list_kube_config_contexts(path)
            chosen = next((c for c in contexts if c.get("name") == context), active) \
                if context else active
            namespace = ((chosen or {}).get("context") or {}).get("namespace") or namespace
    except (ConfigException, OSError) as exc:
        raise KubeError(f"cannot load Kubernetes configuration ({path or 'in-cluster'}): "
                        f"{exc}", reason="ConfigError") from exc
    cfg.retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0)
    cfg.connection_pool_maxsize = 16
    return Kube(client.ApiClient(configuration=cfg), namespace=namespace, timeout=timeout)
