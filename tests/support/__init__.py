"""Helpers shared by the test layers (fixtures live in ``tests/conftest.py``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""
