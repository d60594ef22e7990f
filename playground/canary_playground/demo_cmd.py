"""``canaryctl demo``: a playground rollout on this machine (see canary_playground.demo)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.live import Live

from controller.cli.cluster_cmds import EXIT_ROLLED_BACK, status_line, watch_view
from controller.cli.output import console, fail
from controller.models import Phase


class _Progress:
    """What the demo shows while it runs: a live view on a terminal, else one line per
    change of the rule (table output), else nothing (JSON output)."""

    def __init__(self, live_view: bool, output: str) -> None:
        self.live_view = live_view
        self.output = output
        self.live: Live | None = None
        self.last = ""

    def update(self, obj: dict[str, Any]) -> None:
        if self.live_view:
            if self.live is None:
                self.live = Live(watch_view(obj), console=console(), refresh_per_second=4)
                self.live.start()
            self.live.update(watch_view(obj))
        elif self.output == "table":
            line = status_line(obj)
            if line != self.last:
                self.last = line
                click.echo(line[:200], err=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


@click.command()
@click.option("--scenario", type=click.Choice(["healthy", "regression", "fallback-spike"]),
              default="regression", show_default=True)
@click.option("--no-tty", is_flag=True, help="No live view (for scripts and CI).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Give up this many seconds after the rule is applied (start-up, a few "
                   "seconds, is not counted).")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep logs and state in this directory (default: a temporary one).")
def demo(scenario: str, no_tty: bool, output: str, timeout: float, keep: Path | None) -> None:
    """Run a whole canary rollout locally: Kubernetes API emulator, the real controller,
    a scripted OpenAI-compatible judge, synthetic traffic, and Prometheus if installed.

    Exit 0 when the canary is promoted, 3 when it is rolled back.
    """
    from .demo import run_demo, summary

    live_view = not no_tty and output == "table" and sys.stdout.isatty()
    err = console(stderr=True)

    def say(message: str) -> None:
        err.print(f"[dim]{message}[/]", highlight=False)

    progress = _Progress(live_view, output)

    try:
        result = run_demo(scenario, on_update=progress.update, timeout=timeout, keep=keep,
                          say=say)
    except (RuntimeError, OSError) as exc:
        fail(f"demo could not run: {exc}", 1)
    finally:
        progress.stop()
    if output == "json":
        click.echo(json.dumps(summary(result), indent=2, default=str))
    if not result.phase.terminal:
        # one line, and no "Progressing after 11s" after it: the timeout counts from the
        # rule's apply, the wall time also holds the start-up
        fail(f"timed out: still {result.phase.value} {result.rollout_seconds:.0f}s after the "
             f"rule was applied (--timeout {timeout:g}; {result.seconds:.0f}s in all, "
             f"start-up included), {result.samples_sent} samples sent", 4)
    if output != "json":
        if not live_view:
            say("final state:")
        console().print(f"[bold]{result.phase.value}[/] after {result.seconds:.0f}s, "
                        f"{result.samples_sent} samples "
                        f"({'with' if result.prometheus else 'without'} Prometheus)")
    raise SystemExit(0 if result.phase is Phase.SUCCEEDED else EXIT_ROLLED_BACK)
