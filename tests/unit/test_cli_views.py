"""What ``watch`` and the demo print: the live view's layout and the one-line status."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from controller.cli.cluster_cmds import status_line, watch_view


def rule(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "support-assistant", "namespace": "default"},
        "spec": {"steps": [{"weight": 5}, {"weight": 20}, {"weight": 50}]},
    }
    if status is not None:
        obj["status"] = status
    return obj


GUARD = {"name": "fallback", "metric": "fallbackRate", "outcome": "inconclusive",
         "nBaseline": 300, "nCanary": 280, "baseline": 0.03, "canary": 0.031,
         "delta": 0.001, "lower": -0.01, "upper": 0.012, "tolerance": 0.02}
HISTORY = [{"time": "2026-11-22T12:00:00Z", "action": "advance", "reason": "all guards pass",
            "step": 1, "weight": 20}]


def rendered(obj: dict[str, Any]) -> list[str]:
    out = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    out.print(watch_view(obj))
    out.file.close()
    return out.export_text().splitlines()


def test_the_progress_bar_has_a_line_of_its_own() -> None:
    """A bare ProgressBar ends without a newline: the guards table's top border was drawn
    on the bar's line."""
    lines = rendered(rule({"phase": "Progressing", "currentStep": 1, "weight": 20,
                           "guards": [GUARD], "history": HISTORY}))
    bar = next(i for i, line in enumerate(lines) if "steps done" in line)
    assert lines[bar].rstrip().endswith("1/3 steps done")
    assert not any(c in lines[bar] for c in "┏┌╭┓")
    assert lines[bar + 1].lstrip().startswith(("┏", "┌", "╭"))  # the table starts below


def test_pending_without_a_status_says_what_it_waits_for() -> None:
    assert status_line(rule()) == "Pending step 1/3 weight 0%: " \
                                  "waiting for the controller to pick the rule up"
    assert not status_line(rule()).endswith(": ")


def test_a_finished_rollout_shows_no_weight() -> None:
    """After promotion the last step's 50% is history: the new version serves it all."""
    done = rule({"phase": "Succeeded", "currentStep": 2, "weight": 50, "history": HISTORY,
                 "message": "promoted: all 7 guards pass"})
    assert status_line(done) == "Succeeded: promoted: all 7 guards pass"
    header = rendered(done)[0]
    assert "weight" not in header and "step" not in header
    back = rule({"phase": "RolledBack", "currentStep": 0, "weight": 0, "history": HISTORY,
                 "message": "guard 'fallback' failed"})
    assert status_line(back) == "RolledBack: guard 'fallback' failed"


def test_a_rollout_in_flight_shows_step_weight_message_and_attention() -> None:
    line = status_line(rule({
        "phase": "Progressing", "currentStep": 1, "weight": 20, "message": "waiting: 40 more",
        "conditions": [{"type": "JudgeAvailable", "status": "False", "reason": "Down",
                        "message": "judge unavailable"}]}))
    assert line == "Progressing step 2/3 weight 20%: waiting: 40 more " \
                   "[JudgeAvailable: judge unavailable]"
    assert status_line(rule({"phase": "Progressing", "currentStep": 0, "weight": 5})) == \
        "Progressing step 1/3 weight 5%"


def test_the_step_and_weight_are_not_said_twice() -> None:
    """The controller's message starts with the step and weight the line already shows."""
    line = status_line(rule({"phase": "Progressing", "currentStep": 0, "weight": 5,
                             "message": "step 1/3, weight 5%: waiting for the canary"}))
    assert line == "Progressing step 1/3 weight 5%: waiting for the canary"
