"""Prometheus for tests: skip locally, fail in CI (``CI=true``) when the binary is missing.

The launcher itself is :mod:`canary_playground.prometheus_server` (the demo uses it too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from canary_playground import prometheus_server
from canary_playground.prometheus_server import PrometheusServer

__all__ = ["PrometheusServer", "require_prometheus", "run_prometheus"]


def require_prometheus() -> str:
    """The binary's path; skip (locally) or fail (in CI) when it is missing."""
    try:
        return prometheus_server.require_prometheus()
    except RuntimeError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{exc}; CI must install it", pytrace=False)
        pytest.skip(str(exc))


@contextmanager
def run_prometheus(
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    wait_for_scrape: bool = True,
    workdir: str | Path | None = None,
) -> Iterator[PrometheusServer]:
    require_prometheus()
    with prometheus_server.run_prometheus(targets, scrape_interval=scrape_interval,
                                          wait_for_scrape=wait_for_scrape,
                                          workdir=workdir) as server:
        yield server
