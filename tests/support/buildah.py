"""buildah for the image tests: skip locally, fail in CI (``CI=true``) when it is missing.

The tests use the same storage driver and isolation as ``scripts/build-image`` (``vfs`` and
``chroot`` unless ``STORAGE_DRIVER`` / ``BUILDAH_ISOLATION`` say otherwise), so they see the
images it builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

__all__ = ["buildah", "require_buildah"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_buildah() -> str:
    """buildah's path; skip (locally) or fail (in CI) when it is missing or unusable."""
    path = shutil.which("buildah")
    problem = ""
    if path is None:
        problem = "buildah is not installed (Debian: apt-get install buildah mmdebstrap)"
    elif os.geteuid() != 0:
        probe = subprocess.run([path, "unshare", "true"], capture_output=True, timeout=60)
        if probe.returncode != 0:
            problem = ("buildah cannot run rootless here (no /etc/subuid range?); "
                       "run the image tests as root")
    if problem:
        if _in_ci():
            pytest.fail(f"{problem}; CI must install it", pytrace=False)
        pytest.skip(problem)
    assert path is not None
    return path


def buildah(*args: str, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``buildah --storage-driver DRIVER ARGS`` and return its result (text)."""
    cmd = ["buildah", "--storage-driver", os.environ.get("STORAGE_DRIVER", "vfs"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result
