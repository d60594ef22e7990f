"""``canaryctl validate``: check CanaryRule manifests with no cluster."""

from __future__ import annotations

import json

import click

from controller.engine import ratio_warnings
from controller.models.manifest import ManifestWarning
from controller.sources.manifests import load_rules

from .output import echo_err, echo_warnings


@click.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="Manifest file or directory (repeatable; '-' reads stdin). A directory's other "
         "Kubernetes objects are skipped.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="The target's replica count: warn about steps replica ratio cannot honour.")
@click.option("--autoscaled", is_flag=True,
              help="With --replicas: an HPA owns the target's replicas (canary as surge).")
def validate(files: tuple[str, ...], output: str, replicas: int | None,
             autoscaled: bool) -> None:
    """Validate CanaryRule manifests. Exit 0 when all are valid, 2 when any is not.

    Warnings (a valid setting that weakens a guard, e.g. trusted completion without a
    latency budget; with --replicas, a step that replica ratio cannot honour) are printed
    but never change the exit code."""
    skipped: list[ManifestWarning] = []
    rules, errors = load_rules(files, skipped)
    warnings = [w for r in rules for w in r.warnings]
    ratio = [ManifestWarning(r.file, r.doc, f"spec.steps[{i}].weight", text)
             for r in rules if replicas
             for i, text in ratio_warnings([s.weight for s in r.rule.spec.steps], replicas,
                                           autoscaled=autoscaled)]
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "valid": [
                        {"file": r.file, "doc": r.doc, "name": r.rule.metadata.name}
                        for r in rules
                    ],
                    "errors": [
                        {
                            "file": e.file,
                            "doc": e.doc,
                            "line": e.line,
                            "path": e.path,
                            "reason": e.reason,
                        }
                        for e in errors
                    ],
                    "skipped": [{"file": s.file, "doc": s.doc, "reason": s.reason}
                                for s in skipped],
                    "warnings": [
                        {"file": w.file, "doc": w.doc, "path": w.path, "reason": w.reason}
                        for w in [*warnings, *ratio]
                    ],
                },
                indent=2,
            )
        )
    else:
        for r in rules:
            click.echo(f"ok   {r.file}[{r.doc}]: CanaryRule {r.rule.metadata.name}")
        for s in skipped:
            click.echo(f"skip {s}")
        echo_warnings(warnings)
        for w in ratio:
            echo_err(f"WARNING {w}")
        for e in errors:
            echo_err(f"error {e}")
        if errors:
            echo_err(f"{len(errors)} error(s); {len(rules)} valid rule(s)")
    raise SystemExit(2 if errors else 0)
