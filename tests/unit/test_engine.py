"""The rollout state machine, driven with plain values (no clock, no cluster).

Most tests run the engine against :mod:`tests.support.cluster_sim` for many reconciles, so
they can assert what matters over time: the target is never shrunk for an unready
canary, capacity never drops below the floor, a deadline fires, a finalizer is released
only after the target is back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.conventions import ACTION_ANNOTATION, ACTION_ID_ANNOTATION
from controller.engine import (
    ALLOWED,
    Claim,
    ManualAction,
    ManualError,
    ManualRequest,
    Observed,
    Op,
    Plan,
    Role,
    canary_template,
    deadline_reached,
    evidence,
    invalid,
    manual_request,
    owner,
    plan,
    template_revision,
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
from tests.support.cluster_sim import TEMPLATE, Sim

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TICK = timedelta(seconds=10)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_spec(**over: Any) -> CanaryRuleSpec:
    raw = {
        "targetRef": {"name": "bot"},
        "canary": {"container": "app", "env": [{"name": "MODEL", "value": "large"}]},
        "steps": [{"weight": 10}, {"weight": 50}],
        "analysis": {"interval": "1m", "settle": "30s", "errorLimit": 2,
                     "guards": [{"name": "success", "metric": "taskSuccess",
                                 "tolerance": -0.05}]},
        "judge": {"model": "judge"},
    }
    if "canary" in over:  # replaced, not merged: a canary spec is one intent
        raw["canary"] = over.pop("canary")
    return CanaryRuleSpec.model_validate(merge(raw, over))


def decision(action: Action, outcome: Outcome = Outcome.PASS, reason: str = "r") -> Decision:
    guard = GuardResult(name="success", metric="taskSuccess", outcome=outcome)
    return Decision(action=action, reason=reason, guards=[guard])


PASS = decision(Action.PROMOTE)
FAIL = decision(Action.ROLLBACK, Outcome.FAIL, "success fails")
ERROR = decision(Action.CONTINUE, Outcome.ERROR, "judge unavailable")
HOLD = decision(Action.CONTINUE, Outcome.INCONCLUSIVE)


class Driver:
    """Reconciles against a simulated cluster, one tick of time per reconcile."""

    def __init__(self, spec: CanaryRuleSpec | None = None, sim: Sim | None = None,
                 status: CanaryRuleStatus | None = None) -> None:
        self.spec = spec or make_spec()
        self.sim = sim or Sim.with_target(10)
        self.status = status or CanaryRuleStatus()
        self.now = T0
        self.plans: list[Plan] = []

    def step(self, *, decision: Decision | None = None, manual: Any = None,
             judge: str | None = None, deleting: bool = False,
             claimed_by: str | None = None, spec: CanaryRuleSpec | None = None) -> Plan:
        if spec is not None:
            self.spec = spec
        if decision is not None and evidence(self.status) is None:
            decision = None  # the reconciler analyses only while evidence may be read
        p = plan(self.spec, self.status, generation=1, now=self.now,
                 observed=self.sim.observed(), manual=manual, decision=decision, judge=judge,
                 deleting=deleting, claimed_by=claimed_by)
        self.sim.apply(p)
        self.sim.tick()
        self.status = p.status
        self.now += TICK
        self.plans.append(p)
        return p

    def until(self, check: Callable[[CanaryRuleStatus], bool], limit: int = 200,
              **kw: Any) -> Plan:
        for _ in range(limit):
            p = self.step(**kw)
            if check(p.status):
                return p
        raise AssertionError(f"not reached in {limit} reconciles: {self.status.phase} "
                             f"{self.status.message}")

    def events(self) -> list[str]:
        return [e.reason for p in self.plans for e in p.events]

    def ops(self, p: Plan | None = None) -> list[tuple[Op, Role, int | None]]:
        plans = [p] if p is not None else self.plans
        return [(o.op, o.role, o.replicas) for q in plans for o in q.operations]


def phase_is(phase: Phase) -> Callable[[CanaryRuleStatus], bool]:
    return lambda s: s.phase is phase


# --------------------------------------------------------------------------- starting


def test_a_new_rule_grows_the_canary_first_and_shrinks_the_target_by_available_pods() -> None:
    d = Driver()
    first = d.step()
    s = first.status
    assert s.phase is Phase.PROGRESSING and (s.current_step, s.weight) == (0, 10)
    assert (s.total_replicas, s.available_before) == (10, 10)
    assert s.stable_template == TEMPLATE and s.stable_revision == template_revision(TEMPLATE)
    assert s.canary_revision == canary_template(TEMPLATE, d.spec.canary)[1]
    assert s.statistics == {} and s.started_at == T0 and first.finalizer is True
    # the canary is created and grown; the target is not touched before it is available
    assert d.ops(first) == [(Op.ENSURE, Role.CANARY, None), (Op.SCALE, Role.CANARY, 1)]
    assert [e.reason for e in first.events] == ["RolloutStarted"]
    assert evidence(s) is None  # nothing is analysed before the canary is available
    d.step()  # the canary's pod is available now: the target gives one pod up
    assert d.sim.target.replicas == 9 and d.status.step_ready_at is None
    ready = d.step()
    assert ready.status.step_ready_at is not None and ready.status.canary_ready_at is not None
    assert ready.status.canary_evidence_since == ready.status.canary_ready_at + timedelta(
        seconds=30)
    assert ready.status.effective_weight == 10.0
    assert evidence(ready.status) is not None
    assert min(h["target"] + h["canary"] for h in d.sim.history) >= 10


def test_canary_pods_carry_the_revision_in_a_label_and_env() -> None:
    template, revision = canary_template(TEMPLATE, make_spec().canary)
    assert template["metadata"]["labels"] == {"app": "bot", "canary.llmops.dev/cohort": "canary",
                                              "canary.llmops.dev/revision": revision}
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    assert env == {"MODEL": "large", "CANARY_COHORT": "canary", "CANARY_REVISION": revision}


def test_a_never_ready_canary_rolls_back_at_the_deadline_and_the_target_never_shrinks() -> None:
    d = Driver(make_spec(progressDeadlineSeconds=120),
               Sim.with_target(10, canary_never_ready=True))
    p = d.until(phase_is(Phase.ROLLING_BACK), decision=PASS)
    assert "canary not available within 120s" in p.status.message
    assert "0 of 1 canary pods available" in p.status.message
    assert [e.reason for e in p.events] == ["ProgressDeadlineExceeded"]
    assert p.status.guards == []  # never analysed
    d.until(phase_is(Phase.ROLLED_BACK))
    assert all(h["target_replicas"] == 10 and h["target"] == 10 for h in d.sim.history)
    assert d.sim.canary is not None and d.sim.canary.replicas == 0
    assert d.plans[-1].finalizer is False


def test_progress_deadline_can_fail_instead_and_then_nothing_moves() -> None:
    d = Driver(make_spec(progressDeadlineSeconds=60, onProgressDeadline="fail"),
               Sim.with_target(4, canary_never_ready=True))
    p = d.until(phase_is(Phase.FAILED))
    assert "ProgressDeadlineExceeded" in [e.reason for e in p.events]
    after = d.step()
    assert after.operations == [] and after.finalizer is True  # canary still there


def test_the_target_default_progress_deadline_applies() -> None:
    d = Driver(sim=Sim.with_target(4, canary_never_ready=True))
    d.until(phase_is(Phase.ROLLING_BACK), limit=80)
    assert d.now - T0 >= timedelta(seconds=600)


def test_a_slow_canary_is_waited_for_then_the_rollout_proceeds() -> None:
    d = Driver(sim=Sim.with_target(10, canary_delay=5))
    d.until(lambda s: s.step_ready_at is not None, limit=20)
    assert d.status.phase is Phase.PROGRESSING and d.sim.target.replicas == 9
    waiting = [p for p in d.plans if p.waiting]
    assert len(waiting) >= 5 and not d.plans[-1].waiting
    p = d.step(decision=PASS)
    assert (p.status.current_step, p.status.weight) == (1, 50)


def test_surge_is_bounded_by_the_targets_max_surge_and_capacity_never_dips() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]), Sim.with_target(10, max_surge="20%"))
    d.until(lambda s: s.step_ready_at is not None, limit=30)
    assert (d.sim.target.replicas, d.sim.canary.replicas if d.sim.canary else 0) == (5, 5)
    assert max(h["pods"] for h in d.sim.history) <= 12
    assert min(h["target"] + h["canary"] for h in d.sim.history) >= 10


def test_steps_advance_only_once_the_step_is_reached_and_its_pause_is_over() -> None:
    spec = make_spec(steps=[{"weight": 10}, {"weight": 30, "pause": "1m"}, {"weight": 60}])
    d = Driver(spec, Sim.with_target(10, canary_delay=2))
    d.until(lambda s: s.step_ready_at is not None)
    p = d.step(decision=PASS)
    assert p.status.current_step == 1 and p.status.step_ready_at is None
    held = d.step(decision=PASS)  # step 2's pods are not available yet
    assert held.status.current_step == 1 and "waiting for step 2" in held.status.message
    d.until(lambda s: s.step_ready_at is not None)
    paused = d.step(decision=PASS)
    assert paused.status.current_step == 1 and "step pause" in paused.status.message
    moved = d.until(lambda s: s.current_step == 2, decision=PASS, limit=10)
    assert moved.status.step_started_at is not None
    assert moved.status.step_started_at - d.plans[0].status.started_at >= timedelta(minutes=1)


def test_last_step_promotes_then_succeeds_and_the_canary_goes() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]))
    d.until(lambda s: s.step_ready_at is not None)
    p = d.step(decision=PASS)
    assert p.status.phase is Phase.PROMOTING and p.status.target_modified is True
    assert [o.op for o in p.operations][:1] == [Op.PROMOTE]
    done = d.until(phase_is(Phase.SUCCEEDED))
    assert [e.reason for e in done.events] == ["Promoted"]
    assert done.status.promoted_revision == done.status.canary_revision
    d.until(lambda s: d.sim.canary is not None and d.sim.canary.workload().idle)
    assert d.sim.target.replicas == 10 and d.sim.target.revision() == done.status.canary_revision
    assert min(h["target"] + h["canary"] for h in d.sim.history) >= 10
    idle = d.step()
    assert idle.operations == [] and idle.events == [] and idle.finalizer is False


def test_our_own_promotion_is_not_drift() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]))
    d.until(lambda s: s.step_ready_at is not None)
    d.step(decision=PASS)
    d.until(phase_is(Phase.SUCCEEDED))
    assert "TargetChanged" not in d.events()


def test_promotion_deadline_fails_and_the_canary_keeps_serving() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}], promotionDeadlineSeconds=30))
    d.until(lambda s: s.step_ready_at is not None)
    d.step(decision=PASS)
    d.sim.target.never_ready = True  # the promoted template never becomes ready
    p = d.until(phase_is(Phase.FAILED))
    assert "PromotionDeadlineExceeded" in [e.reason for e in p.events]
    assert "the canary keeps serving" in p.status.message
    canary = d.sim.canary
    assert canary is not None and canary.replicas == 5
    after = d.step()
    assert after.operations == [] and after.finalizer is True and after.status.target_modified


# --------------------------------------------------------------------------- rollback


def test_a_failing_guard_rolls_back_and_canary_pods_go_as_the_target_comes_back() -> None:
    sim = Sim.with_target(10)
    d = Driver(make_spec(steps=[{"weight": 50}]), sim)
    d.until(lambda s: s.step_ready_at is not None)
    sim.target.delay = 3  # the target's new pods take three ticks to be ready
    p = d.step(decision=FAIL)
    assert p.status.phase is Phase.ROLLING_BACK
    assert p.status.history[-1].failing_guards == ["success"]
    rolled = d.until(phase_is(Phase.ROLLED_BACK))
    assert "success fails" in rolled.status.message
    drained = d.sim.history[-8:]
    assert all(h["target"] + h["canary"] >= 10 for h in drained)  # never below the floor
    assert sim.target.replicas == 10 and sim.target.template == TEMPLATE
    later = d.step(decision=PASS)
    assert later.status.phase is Phase.ROLLED_BACK and later.operations == []


def test_rollback_of_an_unready_canary_removes_it_at_once() -> None:
    d = Driver(sim=Sim.with_target(4, canary_never_ready=True))
    d.step()
    d.step()
    p = d.step(manual=ManualRequest(ManualAction.ROLLBACK, "a1", "pager"))
    assert p.status.phase is Phase.ROLLING_BACK and p.status.history[-1].manual
    assert (Op.SCALE, Role.CANARY, 0) in d.ops(p)
    assert d.step().status.phase is Phase.ROLLED_BACK


def test_error_limit_tolerates_n_errors_and_acts_on_the_next() -> None:
    d = Driver(make_spec(analysis={"errorLimit": 2}))
    d.until(lambda s: s.canary_ready_at is not None)
    for i in (1, 2):
        p = d.step(decision=ERROR)
        assert p.status.phase is Phase.PROGRESSING and p.status.consecutive_errors == i
    p = d.step(decision=ERROR)
    assert p.status.phase is Phase.PAUSED and [e.reason for e in p.events] == ["AnalysisErrors"]
    assert "3 consecutive analyses with errors" in p.status.message
    assert "errorLimit 2 tolerated" in p.status.message
    zero = Driver(make_spec(analysis={"errorLimit": 0, "onErrorLimit": "rollback"}))
    zero.until(lambda s: s.canary_ready_at is not None)
    assert zero.step(decision=ERROR).status.phase is Phase.ROLLING_BACK


def test_a_clean_analysis_resets_the_error_count() -> None:
    d = Driver()
    d.until(lambda s: s.canary_ready_at is not None)
    d.step(decision=ERROR)
    assert d.step(decision=HOLD).status.consecutive_errors == 0


def test_a_judge_outage_is_a_condition_with_events_when_it_starts_and_ends() -> None:
    d = Driver()
    d.until(lambda s: s.canary_ready_at is not None)
    outage = "judge unavailable: 40 of 40 samples unjudged (connection x40)"
    p = d.step(decision=ERROR, judge=outage)
    cond = {c.type: c for c in p.status.conditions}["JudgeAvailable"]
    assert (cond.status, cond.reason, cond.message) == ("False", "JudgeUnavailable", outage)
    assert [e.reason for e in p.events] == ["JudgeUnavailable"]
    assert d.step(decision=ERROR, judge=outage).events == []  # once per outage
    back = d.step(decision=HOLD)
    assert [e.reason for e in back.events] == ["JudgeRecovered"]
    assert {c.type: c.status for c in back.status.conditions}["JudgeAvailable"] == "True"


# --------------------------------------------------------------------------- spec changes


def test_a_canary_identical_to_the_running_template_does_nothing() -> None:
    spec = make_spec(canary={"container": "app", "image": "bot:1"})
    d = Driver(spec)
    p = d.step()
    assert p.status.phase is Phase.SUCCEEDED and p.operations == []
    assert "nothing to roll out" in p.status.message and p.finalizer is False
    assert [e.reason for e in p.events] == ["NothingToRollOut"]
    assert d.step().events == []


def test_a_canary_change_mid_rollout_restarts_with_a_new_revision_and_fresh_evidence() -> None:
    d = Driver()
    d.until(lambda s: s.canary_ready_at is not None)
    d.step(decision=PASS)
    old = d.status.canary_revision
    d.status.statistics = {"stats": {"x": 1}, "cursor": 5}
    spec2 = make_spec(canary={"image": "bot:2"})
    p = d.step(spec=spec2)
    s = p.status
    assert s.phase is Phase.PROGRESSING and s.current_step == 0 and s.statistics == {}
    assert s.canary_revision != old and s.canary_ready_at is None and evidence(s) is None
    assert s.stable_template == TEMPLATE and s.total_replicas == 10  # same baseline
    assert [e.reason for e in p.events] == ["RolloutRestarted"]
    assert s.history[-1].action == "restart" and s.history[-1].revision == s.canary_revision
    d.until(lambda st: st.canary_ready_at is not None)
    assert d.sim.canary is not None and d.sim.canary.revision() == s.canary_revision


def test_setting_the_canary_back_to_stable_aborts_at_once_without_a_new_rollout() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]))
    d.until(lambda s: s.step_ready_at is not None)
    back = make_spec(steps=[{"weight": 50}], canary={"container": "app", "image": "bot:1"})
    p = d.step(spec=back, decision=PASS)
    assert p.status.phase is Phase.ROLLING_BACK and p.status.history[-1].action == "abort"
    assert [e.reason for e in p.events] == ["BackToStable"] and p.status.guards == []
    done = d.until(phase_is(Phase.ROLLED_BACK))
    assert "back to the stable template" in done.status.message
    assert d.step(spec=back).status.phase is Phase.ROLLED_BACK
    assert "start" not in [h.action for h in d.status.history[1:]]


def test_a_canary_that_does_not_fit_the_target_fails() -> None:
    d = Driver(make_spec(canary={"container": "nope", "image": "x:1"}))
    p = d.step()
    assert p.status.phase is Phase.FAILED and "nope" in p.status.message
    assert p.operations == []


# --------------------------------------------------------------------------- drift


def edit_target(sim: Sim, image: str) -> None:
    tpl = copy.deepcopy(sim.target.template)
    tpl["spec"]["containers"][0]["image"] = image
    sim.target.set_template(tpl)


def test_a_target_edit_mid_rollout_restarts_with_the_new_baseline_and_fresh_evidence() -> None:
    d = Driver()
    d.until(lambda s: s.canary_ready_at is not None)
    d.status.statistics = {"stats": {"x": 1}}
    old_revision = d.status.canary_revision
    edit_target(d.sim, "bot:1.1")
    p = d.step()
    s = p.status
    assert [e.reason for e in p.events] == ["TargetChanged", "RolloutRestarted"]
    assert "container app image bot:1 -> bot:1.1" in p.events[0].message
    assert s.phase is Phase.PROGRESSING and s.statistics == {} and s.current_step == 0
    assert s.stable_template is not None
    assert s.stable_template["spec"]["containers"][0]["image"] == "bot:1.1"
    assert s.canary_revision != old_revision
    cond = {c.type: c for c in s.conditions}["TargetChanged"]
    assert cond.status == "True" and "bot:1.1" in cond.message
    # baseline evidence waits for the target's own rollout, plus the settle time
    assert s.baseline_evidence_since is None
    d.until(lambda st: st.baseline_evidence_since is not None and st.canary_ready_at is not None)
    assert d.status.baseline_evidence_since is not None
    assert d.status.baseline_evidence_since > s.started_at + timedelta(seconds=29)
    canary = d.sim.canary
    assert canary is not None and canary.template["spec"]["containers"][0]["image"] == "bot:1.1"


def test_a_target_edit_can_pause_the_rollout_and_resume_restarts() -> None:
    d = Driver(make_spec(onTargetChange="pause"))
    d.until(lambda s: s.canary_ready_at is not None)
    revision = d.status.canary_revision
    edit_target(d.sim, "bot:1.1")
    p = d.step()
    assert p.status.phase is Phase.PAUSED and p.status.canary_revision == revision
    assert [e.reason for e in p.events] == ["TargetChanged"]
    assert d.step().events == []  # reported once
    canary = d.sim.canary
    assert canary is not None and canary.template["spec"]["containers"][0]["image"] == "bot:1"
    r = d.step(manual=ManualRequest(ManualAction.RESUME, "r1"))
    assert r.status.phase is Phase.PROGRESSING and r.status.canary_revision != revision


# --------------------------------------------------------------------------- autoscaler


def test_an_autoscaled_target_is_never_written_and_the_canary_is_a_surge_share() -> None:
    sim = Sim.with_target(10, autoscaler="bot-hpa")
    d = Driver(make_spec(steps=[{"weight": 20}, {"weight": 80}]), sim)
    p = d.until(lambda s: s.step_ready_at is not None)
    assert p.status.autoscaled_by == "bot-hpa"
    canary = sim.canary
    assert canary is not None and canary.replicas == 3  # 10·20/80 = 2.5 -> 3
    assert p.status.effective_weight == round(300 / 13, 1)
    sim.target.replicas = 20  # the HPA scales the target up: the canary follows
    d.until(lambda s: canary.replicas == 5 and s.step_ready_at is not None)
    d.step(decision=PASS)  # 80% cannot be honoured: capped at as many pods as the target
    d.until(lambda s: canary.replicas == 20)
    d.step(decision=FAIL)
    d.until(phase_is(Phase.ROLLED_BACK))
    assert all(o.role is not Role.TARGET or o.op is not Op.SCALE
               for q in d.plans for o in q.operations)


# --------------------------------------------------------------------------- manual actions


def test_manual_actions_are_acted_on_once_and_refused_where_not_allowed() -> None:
    d = Driver()
    d.until(lambda s: s.canary_ready_at is not None)
    pause = ManualRequest(ManualAction.PAUSE, "p1")
    assert d.step(manual=pause).status.phase is Phase.PAUSED
    assert d.step(manual=pause).events == []  # the same id again: nothing
    still = d.step(decision=PASS, manual=pause)
    assert still.status.phase is Phase.PAUSED and still.status.current_step == 0
    stepped = d.step(manual=ManualRequest(ManualAction.PROMOTE, "s1"))
    assert stepped.status.current_step == 1 and stepped.status.phase is Phase.PROGRESSING
    retry = d.step(manual=ManualRequest(ManualAction.RETRY, "t1"))
    assert [e.reason for e in retry.events] == ["ActionIgnored"]
    assert "retry does nothing in phase Progressing" in retry.events[0].message
    full = d.step(manual=ManualRequest(ManualAction.PROMOTE_FULL, "f1"))
    assert full.status.phase is Phase.PROMOTING


def test_manual_request_parsing_and_invalid_actions() -> None:
    assert manual_request({}) is None
    req = manual_request({ACTION_ANNOTATION: "retry", ACTION_ID_ANNOTATION: "x"})
    assert req == ManualRequest(ManualAction.RETRY, "x", "")
    bad = manual_request({ACTION_ANNOTATION: "explode"})
    assert isinstance(bad, ManualError) and "explode" in bad.message
    d = Driver()
    d.step()
    p = d.step(manual=bad)
    assert [e.reason for e in p.events] == ["InvalidAction"]


def test_retry_restarts_a_rolled_back_rule_with_fresh_evidence() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]))
    d.until(lambda s: s.canary_ready_at is not None)
    d.step(decision=FAIL)
    d.until(phase_is(Phase.ROLLED_BACK))
    revision = d.status.canary_revision
    p = d.step(manual=ManualRequest(ManualAction.RETRY, "t1", "flaky judge"))
    s = p.status
    assert s.phase is Phase.PROGRESSING and s.current_step == 0 and s.statistics == {}
    assert s.canary_revision == revision and s.history[-1].action == "retry"
    assert s.history[-1].manual and "flaky judge" in s.history[-1].reason
    assert s.started_at == d.plans[-1].status.started_at


def test_undo_after_success_restores_the_previous_template_exactly() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]))
    d.until(lambda s: s.step_ready_at is not None)
    d.step(decision=PASS)
    d.until(lambda s: s.phase is Phase.SUCCEEDED and d.sim.canary is not None
            and d.sim.canary.workload().idle)
    p = d.step(manual=ManualRequest(ManualAction.ROLLBACK, "u1", "complaints"))
    assert p.status.phase is Phase.ROLLING_BACK and p.status.history[-1].action == "undo"
    assert [e.reason for e in p.events] == ["Undo"]
    done = d.until(phase_is(Phase.ROLLED_BACK))
    assert d.sim.target.template == TEMPLATE and d.sim.target.replicas == 10
    assert "undo" in done.status.message
    assert done.status.target_modified is False


def test_undo_is_refused_when_the_target_changed_since_or_nothing_is_known() -> None:
    d = Driver(make_spec(steps=[{"weight": 50}]))
    d.until(lambda s: s.step_ready_at is not None)
    d.step(decision=PASS)
    d.until(phase_is(Phase.SUCCEEDED))
    edit_target(d.sim, "bot:9")
    p = d.step(manual=ManualRequest(ManualAction.ROLLBACK, "u1"))
    assert p.status.phase is Phase.SUCCEEDED
    assert "target changed since the promotion" in p.events[0].message
    noop = Driver(make_spec(canary={"container": "app", "image": "bot:1"}))
    noop.step()
    q = noop.step(manual=ManualRequest(ManualAction.ROLLBACK, "u2"))
    assert "no previous template" in q.events[0].message


def test_the_allowed_table_names_every_action() -> None:
    assert set(ALLOWED) == set(ManualAction)
    assert Phase.SUCCEEDED in ALLOWED[ManualAction.ROLLBACK]
    assert ALLOWED[ManualAction.RETRY] == (Phase.ROLLED_BACK, Phase.FAILED)


# --------------------------------------------------------------------------- bake


def bake_spec() -> CanaryRuleSpec:
    return make_spec(steps=[{"weight": 50}], bake={"duration": "2m", "holdback": 20})


def baking_driver() -> Driver:
    d = Driver(bake_spec())
    d.until(lambda s: s.step_ready_at is not None)
    d.step(decision=PASS)
    d.until(phase_is(Phase.BAKING))
    return d


def test_a_bake_keeps_a_holdback_on_the_previous_template_and_then_succeeds() -> None:
    d = baking_driver()
    s = d.status
    assert s.target_modified and s.promoted_revision == s.canary_revision
    d.until(lambda st: st.baseline_evidence_since is not None)
    holdback = d.sim.holdback
    assert holdback is not None and holdback.replicas == 2
    assert holdback.revision() == s.stable_revision
    env = {e["name"]: e["value"] for e in holdback.template["spec"]["containers"][0]["env"]}
    assert env["CANARY_COHORT"] == "baseline" and env["CANARY_REVISION"] == s.stable_revision
    ev = evidence(d.status)
    assert ev is not None and ev.by_revision and ev.baseline_revision == s.stable_revision
    done = d.until(phase_is(Phase.SUCCEEDED), decision=HOLD)
    assert [e.reason for e in done.events] == ["Baked"] and not done.status.target_modified
    d.until(lambda st: holdback.workload().idle)
    assert d.sim.target.replicas == 10
    assert min(h["target"] + h["canary"] + h["holdback"] for h in d.sim.history) >= 10


def test_a_bake_failure_restores_the_previous_template_exactly() -> None:
    d = baking_driver()
    d.until(lambda st: st.baseline_evidence_since is not None)
    p = d.step(decision=FAIL)
    assert p.status.phase is Phase.ROLLING_BACK and [e.reason for e in p.events] == ["BakeFailed"]
    restore = d.step()
    assert any(o.op is Op.RESTORE and o.template == TEMPLATE for o in restore.operations)
    d.until(phase_is(Phase.ROLLED_BACK))
    assert d.sim.target.template == TEMPLATE and d.sim.target.replicas == 10


def test_promote_full_ends_a_bake() -> None:
    d = baking_driver()
    p = d.step(manual=ManualRequest(ManualAction.PROMOTE_FULL, "f1"))
    assert p.status.phase is Phase.SUCCEEDED and p.status.history[-1].manual


# --------------------------------------------------------------------------- deletion, ownership


def test_deleting_mid_rollout_restores_the_target_before_releasing_the_finalizer() -> None:
    sim = Sim.with_target(10)
    d = Driver(make_spec(steps=[{"weight": 50}]), sim)
    d.until(lambda s: s.step_ready_at is not None)
    assert sim.target.replicas == 5
    sim.target.delay = 2
    p = d.step(deleting=True)
    assert p.finalizer is True and (Op.SCALE, Role.TARGET, 10) in d.ops(p)
    released = d.until(lambda s: d.plans[-1].finalizer is False, deleting=True)
    assert sim.target.replicas == 10 and sim.canary is not None and sim.canary.workload().idle
    assert released.status.message.startswith("deleted")
    assert min(h["target"] + h["canary"] for h in sim.history) >= 10


def test_deleting_a_finished_rule_is_instant() -> None:
    d = Driver(make_spec(canary={"container": "app", "image": "bot:1"}))
    d.step()
    p = d.step(deleting=True)
    assert p.finalizer is False and p.operations == []


def test_a_deleted_target_removes_the_canary_then_fails() -> None:
    d = Driver()
    d.until(lambda s: s.canary_ready_at is not None)
    target = d.sim.target
    d.sim.target = type(target)(replicas=0)
    obs = d.sim.observed()
    gone = Observed(target=None, canary=obs.canary)
    p = plan(d.spec, d.status, generation=1, now=d.now, observed=gone)
    assert (Op.SCALE, Role.CANARY, 0) in d.ops(p) and p.status.phase is Phase.PROGRESSING
    idle = Observed(target=None, canary=None)
    f = plan(d.spec, p.status, generation=1, now=d.now, observed=idle)
    assert f.status.phase is Phase.FAILED and "deleted during the rollout" in f.status.message
    assert f.finalizer is False
    pending = plan(d.spec, CanaryRuleStatus(), generation=1, now=d.now, observed=idle)
    assert pending.status.phase is Phase.PENDING and "waiting for the target" in \
        pending.status.message


def test_a_second_rule_on_a_target_waits_with_a_condition_naming_the_owner() -> None:
    d = Driver()
    p = d.step(claimed_by="first")
    assert p.status.phase is Phase.PENDING and p.operations == []
    cond = {c.type: c for c in p.status.conditions}["Claimed"]
    assert cond.status == "False" and "CanaryRule first" in cond.message
    assert [e.reason for e in p.events] == ["TargetManagedByAnotherRule"]
    assert d.step(claimed_by="first").events == []


def test_the_owner_is_the_active_rule_else_the_oldest() -> None:
    a = Claim("a", "2026-01-02T00:00:00Z")
    b = Claim("b", "2026-01-01T00:00:00Z")
    assert owner([a, b]) == "b"
    assert owner([a, Claim("b", b.created, active=False), Claim("c", "2027", active=True)]) == "c"
    assert owner([]) is None


def test_invalid_spec_and_max_duration() -> None:
    f = invalid(CanaryRuleStatus(), now=T0, reason="bad field")
    assert f.status.phase is Phase.FAILED and f.events[0].type == "Warning"
    assert invalid(f.status, now=T0, reason="again").events == []
    s = make_spec(analysis={"maxDuration": "3h"})
    st_ = CanaryRuleStatus(started_at=T0)
    assert not deadline_reached(s, st_, T0 + timedelta(hours=2, minutes=59))
    assert deadline_reached(s, st_, T0 + timedelta(hours=3))


# --------------------------------------------------------------------------- invariants


STEPS = st.lists(st.tuples(
    st.sampled_from([None, PASS, FAIL, ERROR, HOLD]),
    st.sampled_from([None, *list(ManualAction)]),
    st.booleans(),  # canary pods ready quickly
), max_size=30)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(STEPS, st.integers(min_value=1, max_value=12))
def test_invariants_hold_for_any_sequence(
    steps: list[tuple[Decision | None, ManualAction | None, bool]], replicas: int
) -> None:
    sim = Sim.with_target(replicas)
    d = Driver(make_spec(steps=[{"weight": 10}, {"weight": 50}]), sim)
    d.step()
    for i, (dec, action, ready) in enumerate(steps):
        if sim.canary is not None:
            sim.canary.never_ready = not ready
        before = d.status.phase
        serving_canary = sim.canary.available() if sim.canary else 0
        req = ManualRequest(action, f"m{i}") if action else None
        p = d.step(decision=dec, manual=req)
        new = p.status
        if new.phase in (Phase.PROGRESSING, Phase.PAUSED):
            assert new.weight == d.spec.steps[new.current_step].weight
            # the target only gives up pods that available canary pods replace
            assert sim.target.replicas >= replicas - serving_canary
        if new.phase is Phase.ROLLING_BACK:
            assert sim.target.replicas == replicas
        if before is Phase.ROLLED_BACK and action is not ManualAction.RETRY:
            assert new.phase is Phase.ROLLED_BACK
        if new.phase is Phase.SUCCEEDED and before is not Phase.SUCCEEDED:
            assert before in (Phase.PROMOTING, Phase.BAKING)
        if new.phase.active:
            assert p.finalizer is True
        assert len(new.history) <= 20


def test_manual_step_promotion_and_analysis_never_double_advance() -> None:
    d = Driver(make_spec(steps=[{"weight": 10}, {"weight": 30}, {"weight": 60}]))
    d.until(lambda s: s.step_ready_at is not None)
    p = d.step(manual=ManualRequest(ManualAction.PROMOTE, "s1"), decision=PASS)
    assert p.status.current_step == 1


def test_a_rule_that_waited_for_another_takes_over_when_it_is_gone() -> None:
    d = Driver()
    d.step(claimed_by="first")
    p = d.step()
    assert p.status.phase is Phase.PROGRESSING
    assert {c.type: c.status for c in p.status.conditions}["Claimed"] == "True"


def test_a_status_written_before_template_revisions_is_adopted_not_restarted() -> None:
    from controller.engine import spec_hash

    s = make_spec()
    legacy = CanaryRuleStatus(phase=Phase.PROGRESSING, canary_revision=spec_hash(s.canary),
                              started_at=T0, total_replicas=10, current_step=0, weight=10)
    d = Driver(s, status=legacy)
    p = d.step()
    assert "RolloutRestarted" not in [e.reason for e in p.events]
    assert p.status.canary_spec_hash == spec_hash(s.canary)
    assert p.status.stable_template == TEMPLATE
    assert p.status.canary_revision == canary_template(TEMPLATE, s.canary)[1]
    assert p.status.started_at == T0
