"""Small output helpers shared by the commands."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

import click
from rich.console import Console

PIPE_WIDTH = 160


def console(stderr: bool = False) -> Console:
    """A rich console; when output is piped or captured, wide enough for the tables."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def echo_warnings(warnings: Iterable[object]) -> None:
    """Warnings loudly on stderr (they never change an exit code)."""
    items = list(warnings)
    for w in items:
        echo_err(f"WARNING {w}")
    if items:
        echo_err(f"{len(items)} warning(s): the rules are valid, but the guards named above "
                 "measure less than they seem to")


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a distinct exit code; never a traceback for user errors."""
    echo_err(f"canaryctl: {message}")
    sys.exit(code)
