"""The product wheel carries the product and the client SDK only: no test doubles, no
tests; and the SDK imports nothing but the standard library."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import PRODUCT_PACKAGES, ROOT


def test_product_wheel_has_no_test_doubles(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("llm_canary-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info" not in n}
    assert packages == PRODUCT_PACKAGES, packages
    assert not [n for n in names if "playground" in n or "emulator" in n or "scripted" in n]
    assert "controller/cli/plugins.py" in names
    assert {"llm_canary/reporter.py", "llm_canary/py.typed"} <= set(names)


def test_the_sdk_imports_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import llm_canary\n"
        "roots = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(roots - set(sys.stdlib_module_names) - {'llm_canary'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_kubernetes_client_floor_is_what_the_actuator_needs() -> None:
    """``ApiClient.param_serialize`` and the new ``call_api`` exist from client 37 on; with
    36 an AttributeError killed the lease and watch threads. The floor says so, and the
    installed client has what the actuator calls."""
    import inspect
    import tomllib

    from kubernetes.client import ApiClient
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [Requirement(d) for d in deps if Requirement(d).name == "kubernetes"]
    assert "37.0.0" in spec.specifier and "36.0.0" not in spec.specifier
    assert hasattr(ApiClient, "param_serialize")
    params = inspect.signature(ApiClient.call_api).parameters
    assert {"method", "url", "header_params", "body", "_request_timeout"} <= set(params)
