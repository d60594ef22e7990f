"""llm-canary's client SDK: report samples and feedback from a service (stdlib only).

``from llm_canary import CanaryReporter``; see :mod:`llm_canary.reporter`, a single
self-contained module that a service may also vendor as ``llm_canary.py``.
"""

from .reporter import CanaryReporter, __version__

__all__ = ["CanaryReporter", "__version__"]
