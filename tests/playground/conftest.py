"""Fixtures of the emulator's tests. Each module defines ``emu`` (its own emulator, with the
options it needs); these build the official client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from canary_playground.kube import EmulatorHandle
from kubernetes import client, config

from tests.playground.kube_support import new_ns


@pytest.fixture(scope="module")
def api(emu: EmulatorHandle) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(emu.kubeconfig)
    yield api_client
    api_client.close()


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def ns() -> str:
    return new_ns()
