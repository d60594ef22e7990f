"""``canaryctl plan``: how long a rollout of a rule will take, before it starts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import click

from controller.analysis.plan import Plan, PlanInputError, Quantiles, parse_baseline, plan_rollout
from controller.sources.manifests import load_rules

from .output import console, echo_err, fail


def _baseline_items(raw: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--baseline {item!r}: expected KEY=VALUE (e.g. trustedCompletion=0.92)")
        try:
            number = float(value)
        except ValueError:
            fail(f"--baseline {item!r}: {value!r} is not a number")
        if not math.isfinite(number):
            fail(f"--baseline {item!r}: must be a finite number")
        out[key] = number
    return out


def _q(q: Quantiles, unit: str = "") -> str:
    if q.median is None or q.p90 is None:
        return "–"
    return f"{q.median:,.0f}{unit} (p90 {q.p90:,.0f}{unit})"


@click.command()
@click.argument("rule_file", metavar="RULE.yaml")
@click.option("--rate", type=float, required=True,
              help="Samples per minute reaching the service (both cohorts).")
@click.option("--baseline", "baseline", multiple=True, metavar="KEY=VALUE",
              help="Baseline value of a metric or guard (repeatable), e.g. "
                   "trustedCompletion=0.92, latency=1800, latency.cv=0.8.")
@click.option("--runs", type=click.IntRange(5, 1000), default=20, show_default=True,
              help="Simulated rollouts per scenario.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def plan(rule_file: str, rate: float, baseline: tuple[str, ...], runs: int, seed: int,
         output: str) -> None:
    """Expected time to promote a healthy canary and to catch a regression of twice each
    guard's tolerance, per step, at RATE samples per minute (simulated through the
    controller's own decision). Exit 0, or 2 for bad input."""
    rules, errors = load_rules([rule_file])
    if errors:
        for e in errors:
            echo_err(f"error {e}")
        raise SystemExit(2)
    if len(rules) != 1:
        fail(f"{rule_file}: expected exactly one CanaryRule, found {len(rules)}")
    spec = rules[0].rule.spec
    try:
        base = parse_baseline(_baseline_items(baseline), spec)
        result = plan_rollout(spec, rate, base, runs=runs, seed=seed)
    except PlanInputError as exc:
        fail(str(exc))
    if output == "json":
        click.echo(json.dumps(asdict(result), indent=2))
        return
    _table(rules[0].rule.metadata.name, result)


def _table(name: str, p: Plan) -> None:
    from rich.table import Table

    out = console()
    out.print(f"[bold]{name}[/bold] at {p.rate_per_minute:g} samples/min, a look every "
              f"{p.interval_minutes:g} min, maxDuration {p.max_duration_minutes:g} min "
              f"({p.runs} simulated rollouts per row)")
    steps = Table(title="healthy canary")
    for col in ("step", "weight", "reached", "minutes at the step", "canary samples there"):
        steps.add_column(col, justify="right")
    for s in p.steps:
        steps.add_row(str(s.step), f"{s.weight}%", f"{s.reached:.0%}", _q(s.minutes),
                      _q(s.canary_samples))
    steps.add_row("promote", "", f"{p.promoted:.0%}", _q(p.minutes_to_promote),
                  _q(p.canary_samples_to_promote))
    out.print(steps)
    guards = Table(title="regression of twice the tolerance (one guard at a time)")
    for col in ("guard", "metric", "baseline → canary", "minutes to rollback",
                "canary samples", "missed", "undecided if healthy"):
        guards.add_column(col, justify="right")
    for g in p.guards:
        guards.add_row(g.name, g.metric, f"{g.baseline:.4g} → {g.regression:.4g}",
                       _q(g.minutes_to_rollback), _q(g.canary_samples_to_rollback),
                       f"{g.missed:.0%}", f"{g.undecided_when_healthy:.0%}")
    out.print(guards)
    for w in p.warnings:
        out.print(f"[yellow]warning:[/yellow] {w}")
