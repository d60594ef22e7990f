"""``canaryctl analyze``: replay recorded samples through the decision engine, no cluster."""

from __future__ import annotations

import json
import re
from typing import Any

import click
from rich.table import Table

from controller.judge import JudgeSettings, MissingApiKey, api_key_from_env, judge_samples
from controller.models import (
    Action,
    CanaryRule,
    CanaryRuleSpec,
    GuardResult,
    Outcome,
    Sample,
    parse_duration,
)
from controller.models.rule import JudgeBudget
from controller.replay import ReplayResult, replay
from controller.sources.manifests import load_rules
from controller.sources.samples_io import LoadReport, load_samples

from .output import console, echo_err, fail

EXIT_CODES = {Action.PROMOTE: 0, Action.ROLLBACK: 3, Action.CONTINUE: 4}
OUTCOME_STYLE = {
    Outcome.PASS: "green",
    Outcome.FAIL: "bold red",
    Outcome.INCONCLUSIVE: "yellow",
    Outcome.NO_DATA: "dim",
    Outcome.ERROR: "magenta",
}


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _needs(g: GuardResult) -> str:
    """Extra samples (baseline/canary) this row needs to pass at its current estimate."""
    if g.outcome is not Outcome.INCONCLUSIVE or g.needed_canary is None:
        return "-"
    base = "" if g.needed_baseline is None else f"+{g.needed_baseline}/"
    return f"{base}+{g.needed_canary}"


_OVERALL = re.compile(r"^fails on .+?; all traffic: (\w+)")


def row_outcome(g: GuardResult) -> Outcome:
    """The outcome of the test this row shows. A guard's all-traffic entry carries the
    guard's overall outcome (``fail`` when any of its slices fails, as the decision
    needs); its reason keeps the all-traffic test's own (``fails on queue=refunds; all
    traffic: inconclusive (...)``). The table shows the row's own test, so an ``all`` row
    never says ``fail`` beside bounds that straddle the tolerance; the failing slice has
    its own row and the decision names it."""
    own = _OVERALL.match(g.reason) if g.outcome is Outcome.FAIL else None
    if own is None:
        return g.outcome
    try:
        return Outcome(own.group(1))
    except ValueError:
        return g.outcome


def guards_table(guards: list[GuardResult], title: str | None = None) -> Table:
    """One row per guard and slice: outcome, n per cohort, estimates, delta and bounds,
    and for undecided rows the extra samples they need to pass. Required slices are
    marked ``*``; floors and ceilings show as ``all minimum`` / ``all maximum``."""
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in ("guard", "slice", "stat", "outcome", "n base/canary", "baseline", "canary"):
        table.add_column(col)
    for col in ("delta", "bounds", "tolerance", "needs"):
        table.add_column(col, justify="right")
    for g in guards:
        tol = f"{g.tolerance:+.4g}{' rel' if g.relative else ''}"
        no_bounds = g.lower is None and g.upper is None
        bounds = "-" if no_bounds else f"[{_num(g.lower)}, {_num(g.upper)}]"
        clipped = g.clipped_baseline + g.clipped_canary
        counts = f"{g.n_baseline}/{g.n_canary}" + (f" ({clipped} clipped)" if clipped else "")
        table.add_row(
            g.name,
            g.slice_label + (" *" if g.required else ""),
            g.statistic or "-",
            f"[{OUTCOME_STYLE[row_outcome(g)]}]{row_outcome(g).value}[/]",
            counts,
            _num(g.baseline),
            _num(g.canary),
            _num(g.delta),
            bounds,
            tol,
            _needs(g),
        )
    return table


def _report_json(report: LoadReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "accepted": report.accepted,
        "skipped": dict(report.skipped),
        "out_of_order": report.out_of_order,
        "messages": report.messages,
        "messages_dropped": report.messages_dropped,
    }


def result_json(name: str, result: ReplayResult, reports: list[LoadReport]) -> dict[str, Any]:
    d = result.decision
    return {
        "rule": name,
        "decision": d.action.value,
        "reason": d.reason,
        "decided_at": result.decided_at.isoformat() if result.decided_at else None,
        "looks": result.looks,
        "samples_seen": result.seen,
        "feedback_closed": result.feedback_closed,
        "samples_per_minute": result.rate_per_minute(),
        "guards": [g.model_dump(mode="json") for g in d.guards],
        "skipped": dict(result.skipped),
        "inputs": [_report_json(r) for r in reports],
    }


@click.command()
@click.argument("rule_file", type=click.Path(dir_okay=False))
@click.option(
    "--samples",
    "sample_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Samples as JSON Lines or a JSON array (repeatable).",
)
@click.option("--name", help="Which CanaryRule in RULE_FILE, when it holds several.")
@click.option("--interval", help="Look this often (default: the rule's analysis.interval).")
@click.option("--canary-share", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None,
              help="The canary's expected share of samples (canary pods / all pods): also "
                   "check that the samples match it.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--judge-url", default=None,
              help="Judge samples that carry no verdict first, at this OpenAI-compatible URL.")
@click.option("--model", default=None, help="Judge model (default: the rule's judge.model).")
@click.option("--mode", type=click.Choice(["fast", "thorough"]), default=None)
@click.option("--api-key-env", default=None, metavar="NAME",
              help="Environment variable holding the judge API key (default OPENAI_API_KEY).")
@click.option("--judge-cache", default=None, type=click.Path(dir_okay=False),
              help="SQLite verdict cache, so re-runs do not pay twice.")
def analyze(
    rule_file: str,
    sample_files: tuple[str, ...],
    name: str | None,
    interval: str | None,
    canary_share: float | None,
    output: str,
    judge_url: str | None,
    model: str | None,
    mode: str | None,
    api_key_env: str | None,
    judge_cache: str | None,
) -> None:
    """Replay recorded samples through the decision engine, looking every interval.

    Stops at the first rollback or promote, or at the end of the data. With --judge-url,
    samples without a recorded verdict are judged first (both cohorts interleaved);
    those the judge cannot score stay unjudged, never counted as successes.
    Exit codes: 0 promote, 3 rollback, 4 continue, 2 bad input.
    """
    rule = _one_rule(rule_file, name)
    try:
        interval_s = parse_duration(interval) if interval else None
    except ValueError as exc:
        fail(f"--interval: {exc}", 2)
    unique, reports, cross_file_dups = _load_samples_once(sample_files)

    if judge_url:
        unique = _judge_first(rule.spec, unique, judge_url, model, mode, api_key_env,
                              judge_cache, parse_duration(rule.spec.analysis.interval))
    result = replay(rule.spec, rule.metadata.name, unique, interval_seconds=interval_s,
                    expected_share=canary_share)
    if cross_file_dups:
        result.skipped["duplicate id across files"] += cross_file_dups
    usable = sum(result.seen.values())

    _print_input_problems(reports, result)
    if usable == 0:
        fail(f"no usable samples for rule {rule.metadata.name!r}: nothing to analyse", 2)
    if output == "json":
        click.echo(json.dumps(result_json(rule.metadata.name, result, reports), indent=2))
    else:
        _print_table(rule.metadata.name, result)
    raise SystemExit(EXIT_CODES[result.decision.action])


def _one_rule(rule_file: str, name: str | None) -> CanaryRule:
    """The one CanaryRule of ``rule_file`` (the one named ``name``); exit 2 otherwise."""
    rules, errors = load_rules([rule_file])
    for e in errors:
        echo_err(f"error {e}")
    if errors:
        fail(f"{rule_file} is not a valid CanaryRule manifest", 2)
    if name:
        rules = [r for r in rules if r.rule.metadata.name == name]
    if len(rules) != 1:
        fail(f"{rule_file} holds {len(rules)} matching rules; choose one with --name", 2)
    return rules[0].rule


def _load_samples_once(sample_files: tuple[str, ...]
                       ) -> tuple[list[Sample], list[LoadReport], int]:
    """The samples of every file, each id once (the first wins), the files' reports and
    how many repeated an id seen in an earlier file."""
    samples = []
    reports = []
    for path in sample_files:
        got, report = load_samples(path)
        samples.extend(got)
        reports.append(report)
    seen_ids: set[str] = set()
    unique = []
    cross_file_dups = 0
    for s in samples:
        if s.id in seen_ids:
            cross_file_dups += 1
            continue
        seen_ids.add(s.id)
        unique.append(s)
    return unique, reports, cross_file_dups


def _judge_first(
    spec: CanaryRuleSpec,
    samples: list[Sample],
    url: str,
    model: str | None,
    mode: str | None,
    api_key_env: str | None,
    cache: str | None,
    interval_seconds: float,
) -> list[Sample]:
    """Judge the samples without a verdict; report what could not be judged."""
    overrides = {"base_url": url, "model": model, "mode": mode}
    if spec.judge is not None:
        # The rule's per-interval budget governs the live controller; an offline replay
        # judges what it was asked to (re-runs are paid once thanks to --judge-cache).
        unbudgeted = spec.judge.model_copy(update={"budget": JudgeBudget()})
        settings = JudgeSettings.from_spec(unbudgeted, interval_seconds=interval_seconds,
                                           **overrides)
    elif model:
        settings = JudgeSettings(**{k: v for k, v in overrides.items() if v is not None})
    else:
        fail("--judge-url needs --model (the rule has no spec.judge)", 2)
    try:
        key = api_key_from_env(api_key_env)
    except MissingApiKey as exc:
        fail(f"--api-key-env: {exc}", 2)
    run = judge_samples(samples, settings, api_key=key, cache=cache)
    if run.endpoint_unusable:
        fail(f"judge endpoint {settings.endpoint} is unusable: {run.fatal or 'no answers'}", 2)
    t = run.totals
    unjudged = ", ".join(f"{n} {reason}" for reason, n in t.unjudged.items()) or "none"
    cost = "cost unknown: no price" if t.cost_usd is None else f"${t.cost_usd:.4f}"
    echo_err(f"judged {t.judged} samples ({t.calls} calls, {t.cache_hits} cached, "
             f"{t.prompt_tokens + t.completion_tokens} tokens, {cost}); unjudged: {unjudged}")
    return run.samples


def _print_input_problems(reports: list[LoadReport], result: ReplayResult) -> None:
    """Every skipped line with file:line and field, and every line out of time order (kept),
    on stderr (also in JSON mode): an input with only out-of-order lines is still reported."""
    err = console(stderr=True)
    for report in reports:
        if not report.ok or report.out_of_order:
            err.print(f"[yellow]input[/] {report.summary()}", highlight=False)
            for message in report.messages:
                err.print(f"  {message}", highlight=False, markup=False)
            if report.messages_dropped:
                err.print(f"  ... and {report.messages_dropped} more", highlight=False)
    for reason, n in result.skipped.items():
        err.print(f"[yellow]skipped[/] {n} samples: {reason}", highlight=False)


def _print_table(name: str, result: ReplayResult) -> None:
    out = console()
    d = result.decision
    out.print(guards_table(d.guards, title=f"CanaryRule {name}"))
    colour = {Action.PROMOTE: "green", Action.ROLLBACK: "bold red", Action.CONTINUE: "yellow"}
    when = result.decided_at.isoformat() if result.decided_at else "-"
    out.print(
        f"[{colour[d.action]}]decision: {d.action.value}[/] at {when} after "
        f"{result.seen['baseline']} baseline / {result.seen['canary']} canary samples "
        f"({result.looks} looks)",
        highlight=False,
    )
    out.print(f"reason: {d.reason}", highlight=False, markup=False)
    rate = result.rate_per_minute()
    waiting = [g for g in d.guards if g.needed_canary is not None
               and g.outcome is Outcome.INCONCLUSIVE]
    if d.action is Action.CONTINUE and rate and waiting:
        most = max(max(g.needed_canary or 0, g.needed_baseline or 0) for g in waiting)
        out.print(f"at the replayed rate ({rate:.0f} samples per cohort per minute) the "
                  f"slowest undecided row needs about {most / rate:.0f} more minutes",
                  highlight=False)
