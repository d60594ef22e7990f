"""The product wheel carries the product only: no test doubles, no tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import ROOT


def test_product_wheel_has_no_test_doubles(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("llm_canary-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info" not in n}
    assert packages == {"controller"}, packages
    assert not [n for n in names if "playground" in n or "emulator" in n or "scripted" in n]
    assert "controller/cli/plugins.py" in names
