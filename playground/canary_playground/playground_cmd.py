"""``canaryctl playground up|down`` (see canary_playground.playground)."""

from __future__ import annotations

from pathlib import Path

import click

from controller.cli.output import fail

DEFAULT_DIR = Path(".playground")


@click.group()
def playground() -> None:
    """Start or stop a local playground: a Kubernetes API emulator with the chart's RBAC,
    the controller, a scripted judge, and Prometheus if installed."""


@playground.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DIR, show_default=True,
              help="Where pid files, logs, the kubeconfig and the env file go.")
@click.option("--controller-rbac", type=click.Choice(["chart", "admin"]), default="chart",
              show_default=True, help="Run the controller under the Helm chart's RBAC, or as "
              "the cluster admin.")
@click.option("--analysis-interval", default=None,
              help="Override every rule's analysis interval (e.g. 10s).")
def up(directory: Path, controller_rbac: str, analysis_interval: str | None) -> None:
    """Start everything in the background and print the environment to use it.

    Then: `source DIR/env`, `canaryctl apply -f rules/support-assistant.yaml`,
    `canaryctl watch support-assistant`, `kubectl get canaryrules,deployments`.
    """
    from .playground import up as start

    click.echo(f"starting the playground in {directory} ...", err=True)
    try:
        started = start(directory, controller_rbac=controller_rbac,
                        analysis_interval=analysis_interval)
    except (RuntimeError, OSError) as exc:
        fail(f"playground could not start: {exc}", 1)
    click.echo(started.env_text(), nl=False)
    click.echo(f"# written to {started.directory / 'env'}; stop with `canaryctl playground "
               f"down --dir {directory}`", err=True)


@playground.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DIR, show_default=True)
def down(directory: Path) -> None:
    """Stop everything `playground up` started in DIR (nothing running is fine)."""
    from .playground import down as stop

    stopped = stop(directory)
    if stopped:
        click.echo(f"stopped {', '.join(stopped)}")
    else:
        click.echo(f"nothing running in {directory}")
