"""Helpers shared by the test layers (fixtures live in ``tests/conftest.py``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""

PRODUCT_PACKAGES = frozenset({"controller", "llm_canary"})
"""The top-level packages of the product wheel (and so of the image): never the doubles."""
