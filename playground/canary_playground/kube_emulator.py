"""Compatibility: the Kubernetes API emulator now lives in :mod:`canary_playground.kube`.

``python -m canary_playground.kube_emulator`` still starts it.
"""

from __future__ import annotations

import sys

from .kube import (
    UNAVAILABLE_ANNOTATION,
    EmulatorHandle,
    json_patch,
    merge_patch,
    running_emulator,
    strategic_merge,
    write_kubeconfig,
)
from .kube.handle import main

__all__ = ["UNAVAILABLE_ANNOTATION", "EmulatorHandle", "json_patch", "main", "merge_patch",
           "running_emulator", "strategic_merge", "write_kubeconfig"]

if __name__ == "__main__":
    sys.exit(main())
