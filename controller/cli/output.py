"""Small output helpers shared by the commands."""

from __future__ import annotations

import sys

import click


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a distinct exit code; never a traceback for user errors."""
    echo_err(f"canaryctl: {message}")
    sys.exit(code)
