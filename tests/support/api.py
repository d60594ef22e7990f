"""The real ingestion server for integration tests: a rule directory filled by hand (as the
controller's watches fill it) and, with an emulator, tokens checked by its TokenReview."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from canary_playground.kube import EmulatorHandle

from controller.actuator.client import connect
from controller.actuator.tokenreview import TokenReviewer
from controller.api import ApiServer, Ingestion, Insecure, TokenReviewAuthenticator
from controller.api.auth import Authenticator
from controller.reconciler.directory import Directory
from controller.sources.store import SampleStore


def directory(*rules: tuple[str, str, str], reporters: dict[str, list[str]] | None = None
              ) -> Directory:
    """Rules as ``("namespace/rule", "target Deployment", "its ServiceAccount")``;
    ``reporters`` adds ``spec.ingest.serviceAccounts`` per ``namespace/rule``."""
    objects: list[dict[str, Any]] = []
    accounts: dict[tuple[str, str], str] = {}
    for key, target, account in rules:
        namespace, name = key.split("/")
        spec: dict[str, Any] = {"targetRef": {"name": target}}
        if reporters and key in reporters:
            spec["ingest"] = {"serviceAccounts": reporters[key]}
        objects.append({"metadata": {"name": name, "namespace": namespace}, "spec": spec})
        accounts[(namespace, target)] = account or "default"
    d = Directory(lookup=lambda namespace, name: accounts.get((namespace, name)))
    d.replace_rules(objects)
    return d


@contextmanager
def serving(store: SampleStore, rules: Directory, *, emulator: EmulatorHandle | None = None,
            auth: Authenticator | None = None, **kw: Any) -> Iterator[ApiServer]:
    """The API on 127.0.0.1 (a free port); tokens reviewed by ``emulator`` when given,
    anonymous otherwise."""
    kube = connect(emulator.kubeconfig) if emulator is not None else None
    if auth is None:
        auth = TokenReviewAuthenticator(TokenReviewer(kube)) if kube is not None else Insecure()
    server = ApiServer(Ingestion(store, rules), auth, host="127.0.0.1", port=0,
                       directory_synced=lambda: rules.synced, **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if kube is not None:
            kube.close()
