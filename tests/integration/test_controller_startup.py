"""``canary-controller`` started without any cluster configuration: one line, exit 2.

It used to print a traceback and call a missing file "invalid"; a platform engineer
trying it on a laptop needs to know which file it looked for and that it is not in a pod.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def start(tmp_path: Path, *args: str, kubeconfig_env: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    env["HOME"] = str(tmp_path / "home")
    if kubeconfig_env is not None:
        env["KUBECONFIG"] = kubeconfig_env
    return subprocess.run(
        [sys.executable, "-m", "controller", "--store", str(tmp_path / "s.db"), *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_no_kubeconfig_and_not_in_a_pod(tmp_path: Path) -> None:
    result = start(tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    default = tmp_path / "home" / ".kube" / "config"
    assert f"kubeconfig {default}" in lines[0]
    assert "does not exist" in lines[0] and "not running in a pod" in lines[0]
    assert "invalid" not in lines[0].lower() and "Traceback" not in result.stderr


def test_a_named_kubeconfig_that_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for result in (start(tmp_path, "--kubeconfig", str(missing)),
                   start(tmp_path, kubeconfig_env=str(missing))):
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"canary-controller: no Kubernetes configuration: kubeconfig {missing} "
            "does not exist")


def test_a_kubeconfig_that_is_not_one_is_called_invalid(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    result = start(tmp_path, "--kubeconfig", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "Traceback" not in result.stderr
