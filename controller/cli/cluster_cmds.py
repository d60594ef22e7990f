"""``canaryctl`` commands that talk to a cluster: apply, get, status, watch, history and
the manual controls (rollback, promote, pause, resume, retry).

Manual controls are annotations on the CanaryRule (``canary.llmops.dev/action``, a
fresh ``-id`` and an optional ``-reason``), so kubectl and GitOps can do the same; the
controller acts on them within one reconcile and records the id in ``status.lastActionId``.
Which action is allowed in which phase is the engine's table
(:data:`controller.engine.ALLOWED`): canaryctl refuses the others before writing anything.

Exit codes: 0 ok, 2 invalid input, 3 rolled back / failed (watch), 5 cluster
unreachable, 6 not found, 7 permission denied, 8 conflicting action.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import yaml
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from controller.actuator import deployments, rules
from controller.actuator.client import Kube, connect
from controller.actuator.errors import Conflict, Forbidden, Invalid, KubeError, NotFound
from controller.actuator.hpa import autoscaler_for
from controller.conventions import (
    ACTION_ANNOTATION,
    ACTION_ID_ANNOTATION,
    ACTION_REASON_ANNOTATION,
)
from controller.engine import ALLOWED, ManualAction, ratio_warnings
from controller.models import CanaryRule, CanaryRuleStatus, Condition, GuardResult, Phase
from controller.models.manifest import ManifestWarning
from controller.sources.manifests import load_rules

from .analyze_cmd import guards_table
from .output import console, echo_err, echo_warnings, fail

EXIT_ROLLED_BACK = 3
EXIT_UNREACHABLE = 5
EXIT_NOT_FOUND = 6
EXIT_FORBIDDEN = 7
EXIT_CONFLICT = 8


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--context", default=None, help="kubeconfig context.")(f)
    f = click.option("--kubeconfig", default=None, envvar="KUBECONFIG",
                     help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")(f)
    return click.option("-n", "--namespace", default="default", show_default=True)(f)


@contextmanager
def cluster(kubeconfig: str | None, context: str | None) -> Iterator[Kube]:
    """A connection, with every cluster error turned into one line and an exit code."""
    try:
        kube = connect(kubeconfig, context)
    except KubeError as exc:
        fail(exc.message, EXIT_UNREACHABLE)
    except Exception as exc:
        fail(f"no cluster configuration: {exc}", EXIT_UNREACHABLE)
    try:
        yield kube
    except NotFound as exc:
        fail(f"not found: {exc}", EXIT_NOT_FOUND)
    except Forbidden as exc:
        fail(f"permission denied: {exc}", EXIT_FORBIDDEN)
    except Conflict as exc:
        fail(f"conflict: {exc}", EXIT_CONFLICT)
    except Invalid as exc:
        fail(f"rejected by the cluster: {exc}", 2)
    except KubeError as exc:
        fail(f"cluster unreachable or failing: {exc}", EXIT_UNREACHABLE)


def _status(obj: dict[str, Any]) -> CanaryRuleStatus:
    try:
        return CanaryRuleStatus.model_validate(obj.get("status") or {})
    except ValueError:
        return CanaryRuleStatus()


def _age(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    s = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{max(s, 0)}s"


def _steps(obj: dict[str, Any]) -> int:
    return len((obj.get("spec") or {}).get("steps") or []) or 1


def _summary(obj: dict[str, Any]) -> dict[str, Any]:
    st = _status(obj)
    last = st.history[-1] if st.history else None
    meta = obj.get("metadata") or {}
    return {
        "name": meta.get("name"), "namespace": meta.get("namespace"),
        "phase": st.phase.value, "step": f"{st.current_step + 1}/{_steps(obj)}",
        "weight": st.weight,
        "lastDecision": f"{last.action}: {last.reason}" if last else "",
        "age": _age(meta.get("creationTimestamp")),
    }


def _emit(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


output_option = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]),
                             default="table")


# -- apply ------------------------------------------------------------------------------

@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True,
              help="Manifest file or directory (repeatable; '-' reads stdin).")
@cluster_options
def apply(files: tuple[str, ...], namespace: str, kubeconfig: str | None,
          context: str | None) -> None:
    """Validate, then server-side apply. On any invalid input nothing is applied."""
    skipped: list[ManifestWarning] = []
    loaded, errors = load_rules(files, skipped)
    for s in skipped:
        echo_err(f"skip {s}")
    if errors:
        for e in errors:
            echo_err(f"error {e}")
        fail(f"{len(errors)} error(s): nothing applied", 2)
    echo_warnings(w for r in loaded for w in r.warnings)
    with cluster(kubeconfig, context) as kube:
        for r in loaded:
            manifest = dict(r.raw)
            meta = dict(manifest.get("metadata") or {})
            meta.setdefault("namespace", namespace)
            manifest["metadata"] = meta
            rules.apply_rule(kube, manifest)
            click.echo(f"canaryrule {meta['namespace']}/{meta['name']} applied")
            for line in _ratio_warnings(kube, meta["namespace"], r.rule):
                echo_err(f"warning: {meta['name']}: {line}")


def _ratio_warnings(kube: Kube, namespace: str, rule: CanaryRule) -> list[str]:
    """Steps the target's replica count cannot honour by replica ratio (best effort: a
    target that does not exist yet, or that canaryctl may not read, gives no warning)."""
    target = rule.spec.target_ref.name
    try:
        dep = deployments.get_deployment(kube, namespace, target)
        hpa = autoscaler_for(kube, namespace, target)
    except KubeError:
        return []
    weights = [s.weight for s in rule.spec.steps]
    replicas = deployments.replicas_of(dep)
    lines = [text for _, text in ratio_warnings(weights, replicas, autoscaled=hpa is not None)]
    if hpa is not None:
        lines.insert(0, f"HorizontalPodAutoscaler {hpa} owns {target}'s replicas: the "
                        "canary is sized as a share of them (at most as many pods)")
    return lines


# -- get / status / history ---------------------------------------------------------------

@click.command()
@click.argument("name", required=False)
@click.option("-A", "--all-namespaces", is_flag=True)
@output_option
@cluster_options
def get(name: str | None, all_namespaces: bool, output: str, namespace: str,
        kubeconfig: str | None, context: str | None) -> None:
    """List rules with phase, step, weight, last decision and age."""
    with cluster(kubeconfig, context) as kube:
        if name:
            items = [rules.get_rule(kube, namespace, name)]
        else:
            items, _ = rules.list_rules(kube, None if all_namespaces else namespace)
    rows = [_summary(o) for o in items]
    if output != "table":
        _emit(rows, output)
        return
    table = Table(header_style="bold")
    for col in ("NAMESPACE", "NAME", "PHASE", "STEP", "WEIGHT", "LAST DECISION", "AGE"):
        table.add_column(col, overflow="fold" if col == "LAST DECISION" else "ellipsis")
    for r in rows:
        table.add_row(r["namespace"], r["name"], r["phase"], r["step"], f"{r['weight']}%",
                      r["lastDecision"][:80], r["age"])
    console().print(table)


def _history_table(st: CanaryRuleStatus, limit: int | None = None) -> Table:
    table = Table(title="decisions", header_style="bold")
    for col in ("time", "action", "step", "weight", "by", "reason"):
        table.add_column(col, overflow="fold")
    records = st.history[-limit:] if limit else st.history
    for h in records:
        table.add_row(h.time.strftime("%Y-%m-%d %H:%M:%S"), h.action,
                      "-" if h.step is None else str(h.step + 1),
                      "-" if h.weight is None else f"{h.weight}%",
                      "operator" if h.manual else "controller", h.reason)
    return table


def _weight(st: CanaryRuleStatus) -> str:
    """Declared weight, and the weight in effect when it differs."""
    text = f"weight {st.weight}%"
    if st.effective_weight is not None and abs(st.effective_weight - st.weight) >= 0.5:
        text += f" (effective {st.effective_weight:g}%)"
    return text


FINISHED = (Phase.SUCCEEDED, Phase.ROLLED_BACK)
"""Phases after which no canary serves: their step and weight are history, not state (a
promoted rule's last weight of 50% would read as half the traffic on the canary)."""

WAITING = "waiting for the controller to pick the rule up"


def _position(obj: dict[str, Any], st: CanaryRuleStatus) -> str:
    """``step 2/3  weight 20%`` while a canary may serve, nothing once the rollout ended."""
    if st.phase in FINISHED:
        return ""
    return f"step {st.current_step + 1}/{_steps(obj)}  {_weight(st)}"


def _message(obj: dict[str, Any], st: CanaryRuleStatus) -> str:
    """The controller's message, without the step and weight it starts with when they are
    shown beside it; a rule it has not written a status for yet says so."""
    if st.message:
        said = f"step {st.current_step + 1}/{_steps(obj)}, weight {st.weight}%: "
        if _position(obj, st) and st.message.startswith(said):
            return st.message[len(said):]
        return st.message
    return WAITING if st.phase is Phase.PENDING and not st.history else ""


def status_line(obj: dict[str, Any]) -> str:
    """One line for ``watch --no-tty`` and the demo: phase, step and weight while a canary
    may serve, the message, and the conditions that need attention."""
    st = _status(obj)
    line = " ".join(p for p in (st.phase.value, _position(obj, st).replace("  ", " ")) if p)
    message = _message(obj, st)
    if message:
        line += f": {message}"
    issues = _issues(st)
    if issues:
        line += " [" + "; ".join(issues) + "]"
    return line


def _header(obj: dict[str, Any], st: CanaryRuleStatus) -> Text:
    meta = obj.get("metadata") or {}
    text = Text()
    text.append(f"{meta.get('namespace')}/{meta.get('name')}", style="bold")
    text.append("  phase ")
    text.append(st.phase.value, style="bold")
    position = _position(obj, st)
    if position:
        text.append(f"  {position}")
    if st.canary_revision:
        text.append(f"  revision {st.canary_revision}")
    message = _message(obj, st)
    if message:
        text.append(f"\n{message}")
    for line in _issues(st):
        text.append(f"\n! {line}", style="yellow")
    return text


GOOD_WHEN_TRUE = {"Ready", "Synced", "JudgeAvailable", "CanaryAvailable", "Claimed",
                  "TargetFound"}


def _issues(st: CanaryRuleStatus) -> list[str]:
    """Conditions that need attention (a judge outage, a failed operation, drift, ...)."""
    out: list[str] = []
    for c in st.conditions:
        bad = c.status == "False" if c.type in GOOD_WHEN_TRUE else c.status == "True"
        if bad and c.type != "Ready":
            out.append(f"{c.type}: {c.message or c.reason}")
    return out


def _conditions_table(conditions: list[Condition]) -> Table:
    table = Table(title="conditions", header_style="bold")
    for col in ("type", "status", "reason", "since", "message"):
        table.add_column(col, overflow="fold")
    for c in conditions:
        since = c.last_transition_time.strftime("%H:%M:%S") if c.last_transition_time else "-"
        table.add_row(c.type, c.status, c.reason, since, c.message)
    return table


@click.command()
@click.argument("name")
@output_option
@cluster_options
def status(name: str, output: str, namespace: str, kubeconfig: str | None,
           context: str | None) -> None:
    """Per-guard evidence and the last decisions with reasons."""
    with cluster(kubeconfig, context) as kube:
        obj = rules.get_rule(kube, namespace, name)
    st = _status(obj)
    if output != "table":
        _emit({"name": name, "namespace": namespace,
               "status": st.model_dump(mode="json", by_alias=True, exclude={"statistics"})},
              output)
        return
    out = console()
    out.print(_header(obj, st))
    guards: list[GuardResult] = st.guards
    if guards:
        out.print(guards_table(guards, title="guards"))
    else:
        out.print("no analysis yet")
    if st.conditions:
        out.print(_conditions_table(st.conditions))
    out.print(_history_table(st, limit=10))


@click.command()
@click.argument("name")
@output_option
@cluster_options
def history(name: str, output: str, namespace: str, kubeconfig: str | None,
            context: str | None) -> None:
    """Every recorded decision: time, action, step, weight, who and why."""
    with cluster(kubeconfig, context) as kube:
        obj = rules.get_rule(kube, namespace, name)
    st = _status(obj)
    if output != "table":
        _emit([h.model_dump(mode="json", by_alias=True) for h in st.history], output)
        return
    console().print(_history_table(st))


# -- watch ---------------------------------------------------------------------------------

def _progress(obj: dict[str, Any], st: CanaryRuleStatus) -> Table:
    """The bar over the steps, in a grid row of its own: a bare ProgressBar ends without a
    newline, so the next table's top border used to be drawn on the bar's line."""
    steps = _steps(obj)
    done = steps if st.phase is Phase.SUCCEEDED else st.current_step
    grid = Table.grid(padding=(0, 1))
    grid.add_row(ProgressBar(total=steps, completed=done, width=40),
                 f"{done}/{steps} steps done")
    return grid


def watch_view(obj: dict[str, Any]) -> Group:
    st = _status(obj)
    parts: list[Any] = [_header(obj, st), _progress(obj, st)]
    if st.guards:
        parts.append(guards_table(st.guards))
    if st.history:
        parts.append(_history_table(st, limit=5))
    return Group(*parts)


def final_code(phase: Phase) -> int:
    return 0 if phase is Phase.SUCCEEDED else EXIT_ROLLED_BACK


@click.command()
@click.argument("name")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@click.option("--interval", type=float, default=1.0, help="Seconds between refreshes.")
@click.option("--no-tty", is_flag=True, help="Print one line per change instead of a live view.")
@output_option
@cluster_options
def watch(name: str, timeout: float | None, interval: float, no_tty: bool, output: str,
          namespace: str, kubeconfig: str | None, context: str | None) -> None:
    """Live view until a terminal phase. Exit 0 Succeeded, 3 RolledBack or Failed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with cluster(kubeconfig, context) as kube:
        obj = watch_until_terminal(kube, namespace, name, interval, deadline,
                                   live=not no_tty and output == "table" and sys.stdout.isatty())
    st = _status(obj)
    if output != "table":
        _emit({"name": name, "phase": st.phase.value,
               "history": [h.model_dump(mode="json", by_alias=True) for h in st.history]},
              output)
    elif st.phase.terminal:
        console().print(watch_view(obj))
    if not st.phase.terminal:
        fail(f"timed out after {timeout:g}s: {status_line(obj)}", 4)
    raise SystemExit(final_code(st.phase))


def watch_until_terminal(kube: Kube, namespace: str, name: str, interval: float,
                         deadline: float | None, *, live: bool) -> dict[str, Any]:
    obj = rules.get_rule(kube, namespace, name)
    last_line = ""
    view = Live(watch_view(obj), console=console(), refresh_per_second=4) if live else None
    if view is not None:
        view.start()
    try:
        while True:
            st = _status(obj)
            if view is not None:
                view.update(watch_view(obj))
            else:
                line = status_line(obj)
                if line != last_line:
                    click.echo(line, err=True)
                    last_line = line
            if st.phase.terminal or (deadline is not None and time.monotonic() > deadline):
                return obj
            time.sleep(interval)
            obj = rules.get_rule(kube, namespace, name)
    finally:
        if view is not None:
            view.stop()


# -- manual controls ---------------------------------------------------------------------

def request_action(kube: Kube, namespace: str, name: str, action: ManualAction,
                   reason: str = "") -> str:
    """Set the action annotations; refuse when another action is still pending or the
    phase does not allow it (exit 8). Returns the action id."""
    obj = rules.get_rule(kube, namespace, name)
    st = _status(obj)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    pending_id = annotations.get(ACTION_ID_ANNOTATION)
    pending = annotations.get(ACTION_ANNOTATION)
    if pending and pending_id and pending_id != st.last_action_id:
        fail(f"{name}: action {pending!r} ({pending_id}) is still pending; try again in a "
             "moment", EXIT_CONFLICT)
    if st.phase not in ALLOWED[action]:
        fail(f"{name}: cannot {action.value} in phase {st.phase.value}", EXIT_CONFLICT)
    action_id = f"{action.value}-{uuid.uuid4().hex[:8]}"
    rules.set_annotations(kube, namespace, name, {
        ACTION_ANNOTATION: action.value, ACTION_ID_ANNOTATION: action_id,
        ACTION_REASON_ANNOTATION: reason or None,
    })
    return action_id


def _manual(action: ManualAction, help_text: str) -> click.Command:
    @click.command(action.value if action is not ManualAction.PROMOTE else "promote",
                   help=help_text)
    @click.argument("name")
    @cluster_options
    def cmd(name: str, namespace: str, kubeconfig: str | None, context: str | None,
            **extra: Any) -> None:
        chosen = action
        if extra.get("full"):
            chosen = ManualAction.PROMOTE_FULL
        with cluster(kubeconfig, context) as kube:
            action_id = request_action(kube, namespace, name, chosen, extra.get("reason") or "")
        click.echo(f"{chosen.value} requested for {namespace}/{name} (id {action_id})")

    if action in (ManualAction.ROLLBACK, ManualAction.RETRY):
        cmd = click.option("--reason", default="", help="Recorded in history and events.")(cmd)
    if action is ManualAction.PROMOTE:
        cmd = click.option("--full", is_flag=True, help=(
            "Promote fully, skipping the remaining steps (Progressing or Paused), or end a "
            "bake now keeping the new version (Baking)."))(cmd)
    return cmd


rollback = _manual(ManualAction.ROLLBACK, (
    "Roll back now: traffic back to the target, then the canary removed (Progressing, "
    "Paused, Promoting, Baking, Failed). After Succeeded: undo, restoring the previous "
    "template kept in status, while the target still runs the promoted revision."))
promote = _manual(ManualAction.PROMOTE, (
    "Advance to the next step (Progressing, Paused). --full: promote fully, or end a bake."))
pause = _manual(ManualAction.PAUSE, "Pause the rollout: no automatic step or promotion.")
resume = _manual(ManualAction.RESUME, "Resume a paused rollout.")
retry = _manual(ManualAction.RETRY, (
    "Restart a RolledBack or Failed rule from step 1 with fresh evidence for the same "
    "spec.canary (Argo's retry)."))

COMMANDS = [apply, get, status, watch, history, rollback, promote, pause, resume, retry]
