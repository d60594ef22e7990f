"""The rollout state machine, driven with plain values (no clock, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.engine import (
    ACTION_ANNOTATION,
    ACTION_ID_ANNOTATION,
    ManualAction,
    ManualError,
    ManualRequest,
    Observed,
    Op,
    Plan,
    canary_revision,
    deadline_reached,
    failed,
    manual_request,
    plan,
)
from controller.models import (
    Action,
    CanaryRuleSpec,
    CanaryRuleStatus,
    Decision,
    GuardResult,
    Outcome,
    Phase,
)
from controller.sources.manifests import load_rules
from tests.support import ROOT

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RUNNING = Observed(target_replicas=10, canary_replicas=1, canary_ready=True)


def spec() -> CanaryRuleSpec:
    rules, _ = load_rules([str(ROOT / "rules" / "support-assistant.yaml")])
    return rules[0].rule.spec  # steps 5, 20 (pause 10m), 50


def decision(action: Action, outcome: Outcome = Outcome.PASS, reason: str = "r") -> Decision:
    guard = GuardResult(name="trusted-completion", metric="trustedCompletion", outcome=outcome)
    return Decision(action=action, reason=reason, guards=[guard])


def ops(p: Plan) -> list[Op]:
    return [o.op for o in p.operations]


def start() -> Plan:
    return plan(spec(), CanaryRuleStatus(), generation=1, now=T0, observed=Observed(10, 0))


def test_new_rule_starts_at_the_first_step() -> None:
    p = start()
    assert p.status.phase is Phase.PROGRESSING
    assert (p.status.current_step, p.status.weight, p.status.total_replicas) == (0, 5, 10)
    assert ops(p) == [Op.ENSURE_CANARY, Op.SET_WEIGHT]
    assert p.operations[-1].weight == 5
    assert p.status.statistics == {} and p.status.started_at == T0  # fresh evidence from now
    assert [e.reason for e in p.events] == ["RolloutStarted"]
    assert p.status.canary_revision == canary_revision(spec())


def test_passing_guards_advance_and_step_pause_is_honoured() -> None:
    s = spec()
    p = plan(
        s,
        start().status,
        generation=1,
        now=T0 + timedelta(minutes=1),
        observed=RUNNING,
        decision=decision(Action.PROMOTE),
    )
    assert (p.status.current_step, p.status.weight) == (1, 20)
    assert [e.reason for e in p.events] == ["StepAdvanced"]
    # Step 2 has a 10 minute pause: passing guards hold until it is over.
    held = plan(
        s,
        p.status,
        generation=1,
        now=T0 + timedelta(minutes=5),
        observed=RUNNING,
        decision=decision(Action.PROMOTE),
    )
    assert held.status.current_step == 1 and held.events == []
    assert "step pause" in held.status.message
    moved = plan(
        s,
        held.status,
        generation=1,
        now=T0 + timedelta(minutes=12),
        observed=RUNNING,
        decision=decision(Action.PROMOTE),
    )
    assert (moved.status.current_step, moved.status.weight) == (2, 50)


def test_last_step_promotes_then_succeeds_once_the_target_is_available() -> None:
    s = spec()
    status = start().status
    status.current_step, status.weight = 2, 50
    p = plan(s, status, generation=1, now=T0, observed=RUNNING, decision=decision(Action.PROMOTE))
    assert p.status.phase is Phase.PROMOTING
    assert ops(p) == [Op.ENSURE_CANARY, Op.PROMOTE]
    waiting = plan(s, p.status, generation=1, now=T0, observed=RUNNING)
    assert waiting.status.phase is Phase.PROMOTING and waiting.events == []
    done = plan(
        s, p.status, generation=1, now=T0, observed=Observed(10, 5, True, target_promoted=True)
    )
    assert done.status.phase is Phase.SUCCEEDED
    assert ops(done) == [Op.SCALE_DOWN_CANARY]
    idle = plan(s, done.status, generation=1, now=T0, observed=Observed(10, 0))
    assert idle.operations == [] and idle.events == []


def test_a_failing_guard_rolls_back_at_once_and_stays_rolled_back() -> None:
    s = spec()
    p = plan(
        s,
        start().status,
        generation=1,
        now=T0,
        observed=RUNNING,
        decision=decision(Action.ROLLBACK, Outcome.FAIL, "trusted-completion failed"),
    )
    assert p.status.phase is Phase.ROLLING_BACK
    assert ops(p) == [Op.SCALE_DOWN_CANARY]
    assert p.events[0].type == "Warning" and p.events[0].reason == "RollbackTriggered"
    assert p.status.history[-1].failing_guards == ["trusted-completion"]
    # The controller restarts before seeing the scale-down land: same op again, no new event.
    again = plan(s, p.status, generation=1, now=T0, observed=RUNNING)
    assert again.status.phase is Phase.ROLLING_BACK and again.events == []
    assert ops(again) == [Op.SCALE_DOWN_CANARY]
    done = plan(s, again.status, generation=1, now=T0, observed=Observed(10, 0))
    assert done.status.phase is Phase.ROLLED_BACK
    assert "trusted-completion failed" in done.status.message
    # Later passing evidence or reconciles never restart it by themselves.
    later = plan(
        s,
        done.status,
        generation=1,
        now=T0 + timedelta(hours=1),
        observed=Observed(10, 0),
        decision=decision(Action.PROMOTE),
    )
    assert later.status.phase is Phase.ROLLED_BACK and later.operations == []


def test_new_canary_revision_starts_a_new_rollout() -> None:
    s = spec()
    rolled = start().status
    rolled.phase = Phase.ROLLED_BACK
    s2 = s.model_copy(deep=True)
    s2.canary.env[0].value = "gpt-4.1"
    p = plan(s2, rolled, generation=2, now=T0, observed=Observed(10, 0))
    assert p.status.phase is Phase.PROGRESSING and p.status.current_step == 0
    assert p.status.canary_revision != rolled.canary_revision
    assert [e.reason for e in p.events] == ["RolloutRestarted"]
    assert p.status.observed_generation == 2


def test_errors_hold_then_pause_at_the_limit_and_never_promote() -> None:
    s = spec()  # errorLimit 3, onErrorLimit pause
    status = start().status
    err = decision(Action.CONTINUE, Outcome.ERROR, "prometheus unreachable")
    for i in range(2):
        p = plan(
            s, status, generation=1, now=T0 + timedelta(minutes=i), observed=RUNNING, decision=err
        )
        assert p.status.phase is Phase.PROGRESSING and p.status.consecutive_errors == i + 1
        status = p.status
    p = plan(s, status, generation=1, now=T0, observed=RUNNING, decision=err)
    assert p.status.phase is Phase.PAUSED and p.events[0].reason == "AnalysisErrors"
    assert ops(p) == [Op.ENSURE_CANARY, Op.SET_WEIGHT]  # traffic held where it was
    s_rb = s.model_copy(deep=True)
    s_rb.analysis.on_error_limit = "rollback"
    rb = plan(s_rb, status, generation=1, now=T0, observed=RUNNING, decision=err)
    assert rb.status.phase is Phase.ROLLING_BACK


def test_a_clean_analysis_resets_the_error_count() -> None:
    s = spec()
    status = start().status
    status.consecutive_errors = 2
    p = plan(
        s,
        status,
        generation=1,
        now=T0,
        observed=RUNNING,
        decision=decision(Action.CONTINUE, Outcome.INCONCLUSIVE),
    )
    assert p.status.consecutive_errors == 0 and p.status.phase is Phase.PROGRESSING


def test_manual_actions_are_acted_on_once() -> None:
    s = spec()
    status = start().status
    req = ManualRequest(ManualAction.ROLLBACK, "a1", "bad answers in the billing queue")
    p = plan(s, status, generation=1, now=T0, observed=RUNNING, manual=req)
    assert p.status.phase is Phase.ROLLING_BACK
    assert p.status.history[-1].manual and "billing" in p.status.history[-1].reason
    done = plan(s, p.status, generation=1, now=T0, observed=Observed(10, 0), manual=req)
    assert done.status.phase is Phase.ROLLED_BACK
    assert [e.reason for e in done.events] == ["RolledBack"]


def test_pause_resume_and_promotions() -> None:
    s = spec()
    status = start().status
    paused = plan(
        s,
        status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualRequest(ManualAction.PAUSE, "p1"),
    )
    assert paused.status.phase is Phase.PAUSED
    # While paused, analysis does not move the rollout.
    still = plan(
        s, paused.status, generation=1, now=T0, observed=RUNNING, decision=decision(Action.PROMOTE)
    )
    assert still.status.phase is Phase.PAUSED and still.status.current_step == 0
    resumed = plan(
        s,
        still.status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualRequest(ManualAction.RESUME, "r1"),
    )
    assert resumed.status.phase is Phase.PROGRESSING
    stepped = plan(
        s,
        resumed.status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualRequest(ManualAction.PROMOTE, "s1"),
    )
    assert stepped.status.current_step == 1 and stepped.status.history[-1].manual
    full = plan(
        s,
        stepped.status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualRequest(ManualAction.PROMOTE_FULL, "f1"),
    )
    assert full.status.phase is Phase.PROMOTING
    ignored = plan(
        s,
        full.status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualRequest(ManualAction.PAUSE, "p2"),
    )
    assert ignored.status.phase is Phase.PROMOTING
    assert [e.reason for e in ignored.events] == ["ActionIgnored"]


def test_manual_request_parsing() -> None:
    assert manual_request({}) is None
    req = manual_request({ACTION_ANNOTATION: "rollback", ACTION_ID_ANNOTATION: "x"})
    assert req == ManualRequest(ManualAction.ROLLBACK, "x", "")
    bad = manual_request({ACTION_ANNOTATION: "explode"})
    assert isinstance(bad, ManualError) and "explode" in bad.message


def test_invalid_manual_action_is_reported_not_acted_on() -> None:
    p = plan(
        spec(),
        start().status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualError("unknown action 'x'"),
    )
    assert p.status.phase is Phase.PROGRESSING
    assert [e.reason for e in p.events] == ["InvalidAction"]


def test_deadline_and_failure() -> None:
    s = spec()  # maxDuration 3h
    status = start().status
    assert not deadline_reached(s, status, T0 + timedelta(hours=2, minutes=59))
    assert deadline_reached(s, status, T0 + timedelta(hours=3))
    f = failed(status, now=T0, reason="target Deployment support-assistant not found")
    assert f.status.phase is Phase.FAILED and f.events[0].type == "Warning"
    assert failed(f.status, now=T0, reason="again").events == []


ACTIONS = st.sampled_from([Action.PROMOTE, Action.ROLLBACK, Action.CONTINUE])
OUTCOMES = st.sampled_from(list(Outcome))
MANUAL = st.one_of(st.none(), st.sampled_from(list(ManualAction)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(ACTIONS, OUTCOMES, MANUAL, st.integers(0, 3), st.booleans()), max_size=25)
)
def test_invariants_hold_for_any_sequence(
    steps: list[tuple[Action, Outcome, ManualAction | None, int, bool]],
) -> None:
    s = spec()
    status = start().status
    now = T0
    seen: list[Phase] = [status.phase]
    for i, (action, outcome, manual, canary, promoted) in enumerate(steps):
        now += timedelta(minutes=11)
        req = ManualRequest(manual, f"m{i}") if manual else None
        p = plan(
            s,
            status,
            generation=1,
            now=now,
            observed=Observed(10, canary, True, promoted),
            manual=req,
            decision=decision(action, outcome),
        )
        new = p.status
        if new.phase in (Phase.PROGRESSING, Phase.PAUSED):
            assert new.weight == s.steps[new.current_step].weight
        if status.phase in (Phase.ROLLED_BACK, Phase.SUCCEEDED):
            assert new.phase is status.phase  # terminal stays terminal without a new revision
        if new.phase is Phase.SUCCEEDED and status.phase is not Phase.SUCCEEDED:
            assert status.phase is Phase.PROMOTING
        if action is Action.ROLLBACK and status.phase is Phase.PROGRESSING and manual is None:
            assert new.phase is Phase.ROLLING_BACK
        assert len(new.history) <= 20
        status = new
        seen.append(new.phase)


def test_manual_step_promotion_and_analysis_never_double_advance() -> None:
    p = plan(
        spec(),
        start().status,
        generation=1,
        now=T0,
        observed=RUNNING,
        manual=ManualRequest(ManualAction.PROMOTE, "s1"),
        decision=decision(Action.PROMOTE),
    )
    assert p.status.current_step == 1
