"""``canaryctl judge``: judge recorded samples offline, and calibrate the judge.

``canaryctl judge --samples S.jsonl --out V.jsonl`` writes each sample back with its
``judge`` verdict (feed the file to ``canaryctl analyze --samples``); samples the judge
could not score are written without ``judge`` and with ``unjudged_reason``.
``canaryctl judge calibrate --labeled L.jsonl`` compares verdicts with human labels.

Exit codes: 0 done, 2 bad input (files, options, missing key variable), 1 the endpoint is
unusable (bad key, unknown model, unreachable for every sample).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from controller.judge import (
    PROMPT_VERSION,
    Calibration,
    Judged,
    JudgeResult,
    JudgeRun,
    JudgeSettings,
    MissingApiKey,
    Price,
    api_key_from_env,
    calibrate,
    judge_samples,
    judge_trusted,
)
from controller.models import (
    DEFAULT_THRESHOLD,
    Aggregation,
    JudgeSpec,
    Sample,
    parse_duration,
    success_threshold,
)
from controller.models.errors import format_field_errors
from controller.sources.manifests import load_rules
from controller.sources.samples_io import DUPLICATE, LoadReport, load_samples

from .output import echo_err, fail

EXIT_OK, EXIT_UNUSABLE, EXIT_BAD_INPUT = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])


def _endpoint_options(f: F) -> F:
    """Options shared by ``judge`` and ``judge calibrate``."""
    options = [
        click.option("--judge-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1."),
        click.option("--model", help="Judge model (required unless --rule gives one)."),
        click.option("--mode", type=click.Choice(["fast", "thorough"]), default=None,
                     help="fast: 1 call per sample; thorough: one call per stage (3-4)."),
        click.option("--api-key-env", metavar="NAME",
                     help="Environment variable holding the API key (default OPENAI_API_KEY)."),
        click.option("--rule", "rule_file", type=click.Path(dir_okay=False),
                     help="CanaryRule YAML whose spec.judge supplies the settings."),
        click.option("--concurrency", type=click.IntRange(1, 256), default=None,
                     help="Maximum calls in flight."),
        click.option("--cache", "cache_path", type=click.Path(dir_okay=False),
                     help="SQLite verdict cache (re-runs do not pay twice)."),
        click.option("--threshold", type=click.FloatRange(0, 1), default=None,
                     help="Score at which a task succeeds (default: the rule's, else 0.7)."),
        click.option("--aggregation", type=click.Choice([a.value for a in Aggregation]),
                     default=None,
                     help="Score formula: evalLib (eval-ai-library's, the default) or softMin."),
        click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Aggregation strictness (evalLib 0.1-1.0, default 0.5; softMin 0.1)."),
        click.option("--price", metavar="IN,OUT",
                     help="USD per million input,output tokens. Without it only OpenAI's API "
                          "models are priced; others report tokens only."),
        click.option("--rejudge", is_flag=True, help="Judge samples that already carry a verdict."),
        click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(opts: dict[str, Any], need_model: bool) -> JudgeSettings | None:
    """Settings from --rule and the flags (flags win); None when nothing needs judging."""
    spec: JudgeSpec | None = None
    interval = 60.0
    if opts["rule_file"]:
        rules, errors = load_rules([opts["rule_file"]])
        if errors:
            fail("; ".join(str(e) for e in errors[:5]), EXIT_BAD_INPUT)
        if len(rules) != 1:
            fail(f"{opts['rule_file']}: expected exactly one CanaryRule", EXIT_BAD_INPUT)
        rule = rules[0].rule
        spec = rule.spec.judge
        if spec is None:
            fail(f"{opts['rule_file']}: the rule has no spec.judge section", EXIT_BAD_INPUT)
        interval = parse_duration(rule.spec.analysis.interval)
    price = None
    if opts["price"]:
        try:
            price = Price.parse(opts["price"])
        except ValueError as exc:
            fail(f"--price: {exc}", EXIT_BAD_INPUT)
    overrides = {
        "model": opts["model"],
        "base_url": opts["judge_url"],
        "mode": opts["mode"],
        "concurrency": opts["concurrency"],
        "threshold": opts["threshold"],
        "aggregation": opts["aggregation"],
        "temperature": opts["temperature"],
        "price": price,
    }
    if spec is None and not opts["model"]:
        if need_model:
            fail("--model is required (or --rule with a spec.judge)", EXIT_BAD_INPUT)
        return None
    try:
        if spec is not None:
            return JudgeSettings.from_spec(spec, interval_seconds=interval, **overrides)
        return JudgeSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(f"judge settings: {format_field_errors(exc)}", EXIT_BAD_INPUT)
    return None  # pragma: no cover - fail() exits


def _api_key(opts: dict[str, Any]) -> str | None:
    try:
        return api_key_from_env(opts["api_key_env"])
    except MissingApiKey as exc:
        fail(f"--api-key-env: {exc}", EXIT_BAD_INPUT)
    return None  # pragma: no cover - fail() exits


def _load(path: str) -> list[Sample]:
    samples, report = load_samples(path)
    _check_report(report)
    return samples


def _check_report(report: LoadReport) -> None:
    """Refuse to pay for a partly broken file: anything but duplicates is bad input."""
    bad = report.total_skipped - report.skipped.get(DUPLICATE, 0)
    for message in report.messages:
        echo_err(f"canaryctl: {message}")
    if report.empty or bad:
        fail(f"{report.summary()}; fix the file and retry", EXIT_BAD_INPUT)


def _run(samples: Sequence[Sample], settings: JudgeSettings, opts: dict[str, Any]) -> JudgeRun:
    """Judge with a progress bar on stderr (hidden when stderr is not a terminal)."""
    key = _api_key(opts)
    todo = sum(1 for s in samples if opts["rejudge"] or s.judge is None)
    console = Console(stderr=True)
    with Progress(
        TextColumn("judging"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("judge", total=todo)

        def advance(_: int, __: JudgeResult) -> None:
            progress.advance(task)

        run = judge_samples(
            samples,
            settings,
            api_key=key,
            cache=opts["cache_path"],
            rejudge=opts["rejudge"],
            on_result=advance,
        )
    if run.endpoint_unusable:
        reason = run.fatal or _first_reason(run)
        fail(f"judge endpoint {settings.endpoint} is unusable: {reason}", EXIT_UNUSABLE)
    return run


def _first_reason(run: JudgeRun) -> str:
    for r in run.results:
        if r is not None and not isinstance(r, Judged):
            return f"{r.reason}: {r.detail}"
    return "unknown"


def _write_jsonl(path: str, samples: Sequence[Sample]) -> None:
    """Atomic write: a crash never leaves a half-written verdicts file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps(s.model_dump(mode="json", exclude_none=True), ensure_ascii=False))
            fh.write("\n")
    os.replace(tmp, target)


def _summary(run: JudgeRun, settings: JudgeSettings, out: str | None) -> dict[str, Any]:
    skipped = sum(1 for r in run.results if r is None)
    return {
        "model": settings.model,
        "endpoint": settings.endpoint,
        "mode": settings.mode,
        "aggregation": str(settings.aggregation),
        "temperature": settings.effective_temperature,
        "prompt_version": PROMPT_VERSION,
        "structured_output": run.structured_mode,
        "kept_existing_verdicts": skipped,
        **run.totals.as_dict(),
        **({"out": out} if out else {}),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="judge", show_header=False)
    for key, value in summary.items():
        if key == "cost_usd" and value is None:
            value = "unknown: no price for this model/endpoint (--price IN,OUT)"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, float):
            value = f"{value:.6f}"
        table.add_row(key.replace("_", " "), str(value))
    Console().print(table)


@click.group("judge", invoke_without_command=True)
@click.option("--samples", "samples_file", type=click.Path(dir_okay=False),
              help="Samples to judge (JSON Lines).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Where to write the judged samples (JSON Lines).")
@_endpoint_options
@click.pass_context
def judge(ctx: click.Context, samples_file: str | None, out_file: str | None, **opts: Any) -> None:
    """Judge samples with an LLM over any OpenAI-compatible endpoint.

    The API key comes from OPENAI_API_KEY or --api-key-env NAME; it is never printed.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not samples_file or not out_file:
        fail("--samples and --out are required (or use: canaryctl judge calibrate)", EXIT_BAD_INPUT)
    assert samples_file is not None and out_file is not None
    samples = _load(samples_file)
    settings = _settings(opts, need_model=True)
    assert settings is not None
    run = _run(samples, settings, opts)
    _write_jsonl(out_file, run.samples)
    summary = _summary(run, settings, out_file)
    if opts["output"] == "json":
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    ctx.exit(EXIT_OK)


def _labels(samples: Sequence[Sample]) -> tuple[list[bool], list[float | None]]:
    human: list[bool] = []
    scores: list[float | None] = []
    problems = []
    for s in samples:
        extra = s.extras()
        value = extra.get("human_success")
        if not isinstance(value, bool):
            problems.append(f"sample {s.id!r}: human_success must be true or false")
            continue
        score = extra.get("human_score")
        if score is not None and not (isinstance(score, int | float) and 0 <= score <= 1):
            problems.append(f"sample {s.id!r}: human_score must be a number in [0, 1]")
            continue
        human.append(value)
        scores.append(None if score is None else float(score))
    if problems:
        for p in problems[:10]:
            echo_err(f"canaryctl: {p}")
        fail(f"{len(problems)} labeled sample(s) are invalid", EXIT_BAD_INPUT)
    return human, scores


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_calibration(cal: Calibration, trusted: tuple[bool, str] | None) -> None:
    table = Table(title="judge calibration", show_header=False)
    table.add_row("samples", str(cal.n))
    table.add_row("judged", str(cal.judged))
    table.add_row("unjudged rate", _fmt(cal.unjudged_rate))
    table.add_row("agreement", _fmt(cal.agreement))
    table.add_row("Cohen's kappa", _fmt(cal.kappa))
    table.add_row("precision (success)", _fmt(cal.precision))
    table.add_row("recall (success)", _fmt(cal.recall))
    table.add_row("F1 (success)", _fmt(cal.f1))
    if cal.score_mae is not None:
        table.add_row("score MAE vs human", _fmt(cal.score_mae))
    if trusted is not None:
        table.add_row("trusted", f"{'yes' if trusted[0] else 'NO'}: {trusted[1]}")
    matrix = Table(title="confusion (rows: judge, columns: human)")
    matrix.add_column("")
    matrix.add_column("human success", justify="right")
    matrix.add_column("human failure", justify="right")
    c = cal.confusion
    matrix.add_row("judge success", str(c.tp), str(c.fp))
    matrix.add_row("judge failure", str(c.fn), str(c.tn))
    console = Console()
    console.print(table)
    console.print(matrix)


@judge.command("calibrate")
@click.option("--labeled", "labeled_file", required=True, type=click.Path(dir_okay=False),
              help="Samples plus human_success (bool) and optional human_score, JSON Lines.")
@click.option("--min-kappa", type=click.FloatRange(-1, 1), default=None,
              help="Minimum kappa to trust the judge (default: the rule's minKappa).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Also write the judged samples here.")
@_endpoint_options
def calibrate_cmd(
    labeled_file: str, min_kappa: float | None, out_file: str | None, **opts: Any
) -> None:
    """Compare judge verdicts with human labels: agreement, kappa, precision/recall/F1.

    Samples that already carry a verdict are used as they are (unless --rejudge); the
    rest are judged with --model/--judge-url or --rule, or counted as unjudged without.
    """
    samples = _load(labeled_file)
    human, human_scores = _labels(samples)
    need = sum(1 for s in samples if opts["rejudge"] or s.judge is None)
    settings = _settings(opts, need_model=False)
    if need and settings is None:
        echo_err(
            f"canaryctl: {need} sample(s) carry no verdict and count as unjudged "
            "(pass --model or --rule to judge them)"
        )
    threshold = opts["threshold"] if opts["threshold"] is not None else DEFAULT_THRESHOLD
    spec_min_kappa = None
    judge_spec: JudgeSpec | None = None
    if settings is not None:
        threshold = settings.threshold
    if opts["rule_file"]:
        rules, _ = load_rules([opts["rule_file"]])
        judge_spec = rules[0].rule.spec.judge
        spec_min_kappa = judge_spec.min_kappa if judge_spec is not None else None
    judged_samples: Sequence[Sample] = samples
    if need and settings is not None:
        run = _run(samples, settings, opts)
        judged_samples = run.samples
        if out_file:
            _write_jsonl(out_file, judged_samples)
    judge_scores = [None if s.judge is None else s.judge.score for s in judged_samples]
    # the rule's per task/queue thresholds (judge.thresholds) unless --threshold overrides
    per_sample = opts["threshold"] is None and opts["rule_file"] and judge_spec is not None
    judge_success = [
        None if s.judge is None else s.judge.score >= (
            success_threshold(judge_spec, s.task, s.queue) if per_sample else threshold)
        for s in judged_samples]
    cal = calibrate(judge_success, human, judge_scores, human_scores)
    wanted = min_kappa if min_kappa is not None else spec_min_kappa
    trusted = None
    if wanted is not None:
        trusted = judge_trusted(cal.kappa, JudgeSpec(model="calibration", min_kappa=wanted))
    if opts["output"] == "json":
        payload = cal.as_dict() | {"threshold": threshold}
        if trusted is not None:
            payload |= {"min_kappa": wanted, "trusted": trusted[0], "trusted_reason": trusted[1]}
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_calibration(cal, trusted)
