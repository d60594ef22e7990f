"""The analysis step: judge → collect → fold → count events → evaluate.

Uses a real SQLite store and (for the Prometheus guard) a real Prometheus on 127.0.0.1
scraping an exporter the test drives. The judge is a small class with the judge port's
interface (the OpenAI client path is tested in tests/integration/test_judge_*.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from canary_playground.exporter import Exporter

from controller.engine import Evidence, evidence
from controller.models import (
    Action,
    CanaryRule,
    CanaryRuleStatus,
    Feedback,
    Outcome,
    RecordedVerdict,
    RuleKey,
    Sample,
    Unjudged,
    Verdict,
)
from controller.reconciler.analysis_step import (
    MAX_JUDGE_ATTEMPTS,
    AnalysisResult,
    JudgeReport,
    analyse,
    close_feedback_windows,
    judge_pending,
)
from controller.sources.prometheus import PrometheusSource
from controller.sources.store import SampleStore
from tests.support.prometheus import PrometheusServer, run_prometheus

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
KEY = RuleKey("default", "bot")

RULE: dict[str, Any] = {
    "apiVersion": "canary.llmops.dev/v1alpha1",
    "kind": "CanaryRule",
    "metadata": {"name": "bot", "namespace": "default"},
    "spec": {
        "targetRef": {"name": "bot"},
        "canary": {"image": "bot:2"},
        "steps": [{"weight": 50}],
        "analysis": {
            "interval": "1m",
            "minSamplesPerCohort": 50,
            # these samples carry their correction minutes (0 included): count them at once
            "feedbackComplete": True,
            "guards": [
                {"name": "success", "metric": "taskSuccess", "tolerance": -0.05},
                {"name": "correction", "metric": "correctionBurden", "tolerance": 0.5},
            ],
        },
        "judge": {"model": "m", "samplesPerInterval": 40},
    },
}


def rule(**spec_changes: Any) -> CanaryRule:
    raw = copy.deepcopy(RULE)
    raw["spec"].update(spec_changes)
    return CanaryRule.model_validate(raw)


def sample(i: int, cohort: str, *, minutes: float | None = None, ts: datetime = T0) -> Sample:
    return Sample.model_validate({
        "id": f"{cohort}-{i}", "rule": "bot", "cohort": cohort, "ts": ts.isoformat(),
        "input": f"q{i}", "output": f"a{i}", "latency_ms": 100, "cost_usd": 0.001,
        "fallback": False, "correction_minutes": minutes,
    })


class ScriptedJudge:
    """Scores every sample 1.0, except the canary's when ``bad_canary``; counts calls.
    ``down`` makes it fail as an unreachable endpoint does (every sample unjudged with a
    transient reason)."""

    def __init__(self, bad_canary: bool = False, down: str | None = None) -> None:
        self.bad_canary = bad_canary
        self.down = down
        self.seen: list[str] = []

    def judge(self, samples: Sequence[Sample]) -> list[Verdict]:
        self.seen.extend(s.id for s in samples)
        if self.down is not None:
            return [Unjudged(reason=self.down) for _ in samples]
        return [RecordedVerdict(score=0.0 if self.bad_canary and s.cohort.value == "canary"
                                else 1.0, model="m") for s in samples]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SampleStore]:
    with SampleStore(tmp_path / "s.db") as s:
        yield s


def started() -> CanaryRuleStatus:
    """A rollout whose canary and baseline are available: its evidence window is open
    (unrevisioned samples count from its start)."""
    begin = T0 - timedelta(minutes=1)
    return CanaryRuleStatus(phase="Progressing", started_at=begin, step_started_at=begin,
                            canary_revision="r1", canary_ready_at=begin,
                            canary_evidence_since=begin, baseline_evidence_since=begin)


def window(status: CanaryRuleStatus) -> Evidence:
    ev = evidence(status)
    assert ev is not None
    return ev


@dataclass
class Look:
    """One interval: what the judge step did and what the analysis concluded."""

    judged: JudgeReport
    analysis: AnalysisResult

    @property
    def decision(self) -> Any:
        return self.analysis.decision

    @property
    def statistics(self) -> dict[str, Any]:
        return self.analysis.statistics


def tick(r: CanaryRule, status: CanaryRuleStatus, store: SampleStore, *,
         judge: ScriptedJudge | None = None, judge_error: str | None = None,
         **kw: Any) -> Look:
    """Judge, then analyse, as the reconciler does at each interval."""
    kw.setdefault("now", T0 + timedelta(minutes=5))
    kw.setdefault("deadline_reached", False)
    kw.setdefault("canary_share", 0.5)
    judged = judge_pending(store, r, window(status), judge, upto=store.head(r.key),
                           unavailable=judge_error)
    return Look(judged, analyse(store, r, status, window(status), judged=judged, **kw))


def test_judges_at_most_samples_per_interval_balanced_and_never_twice(store: SampleStore
                                                                       ) -> None:
    store.insert_many([sample(i, c) for i in range(50) for c in ("baseline", "canary")])
    judge = ScriptedJudge()
    res = tick(rule(), started(), store, judge=judge)
    assert len(judge.seen) == 40
    assert sum(i.startswith("canary") for i in judge.seen) == 20  # both cohorts alike
    assert (res.judged.judged, res.judged.unjudged["not_sampled"],
            res.analysis.new_samples) == (40, 60, 100)
    stored = store.get(KEY, judge.seen[0])
    assert stored is not None and isinstance(stored.verdict, RecordedVerdict)
    left = store.get(KEY, next(f"{c}-{i}" for i in range(50) for c in ("baseline", "canary")
                               if f"{c}-{i}" not in judge.seen))
    assert left is not None and isinstance(left.verdict, Unjudged)
    assert left.verdict.reason == "not_sampled"
    # the next tick sees nothing new and judges nothing
    status = started().model_copy(update={"statistics": res.statistics})
    again = tick(rule(), status, store, judge=judge)
    assert len(judge.seen) == 40 and again.analysis.new_samples == 0


def test_without_a_judge_the_judged_guards_error_and_samples_wait(store: SampleStore
                                                                    ) -> None:
    """No key: the judged guards say so (an error, counted toward the error limit), the
    samples are offered again at the next intervals and written off only after
    MAX_JUDGE_ATTEMPTS; unjudged never counts as a success or a failure."""
    store.insert_many([sample(i, c) for i in range(80) for c in ("baseline", "canary")])
    status = started()
    for attempt in range(1, MAX_JUDGE_ATTEMPTS + 1):
        res = tick(rule(), status, store, judge=None, judge_error="api_key_missing: no key")
        status = status.model_copy(update={"statistics": res.statistics})
        success = next(g for g in res.decision.guards if g.name == "success")
        assert success.outcome is Outcome.ERROR and "judge unavailable" in success.reason
        assert (success.n_baseline, success.n_canary) == (0, 0)
        assert res.decision.action is Action.CONTINUE
        stored = store.get(KEY, "canary-0")
        assert stored is not None
        if attempt < MAX_JUDGE_ATTEMPTS:
            assert stored.verdict is None
        else:
            assert isinstance(stored.verdict, Unjudged)
            assert stored.verdict.reason == "api_key_missing"


def test_a_judge_outage_is_an_error_and_its_samples_are_judged_later(store: SampleStore
                                                                      ) -> None:
    store.insert_many([sample(i, c) for i in range(20) for c in ("baseline", "canary")])
    down = ScriptedJudge(down="connection")
    first = tick(rule(), started(), store, judge=down)
    success = next(g for g in first.decision.guards if g.name == "success")
    assert success.outcome is Outcome.ERROR
    assert "judge unavailable: 40 of 40 samples unjudged (connection x40)" in success.reason
    corr = next(g for g in first.decision.guards if g.name == "correction")
    assert corr.outcome is not Outcome.ERROR  # guards that do not rest on the judge go on
    # the endpoint is back: the same samples are judged and swap in their verdicts
    status = started().model_copy(update={"statistics": first.statistics})
    back = ScriptedJudge()
    second = tick(rule(), status, store, judge=back)
    assert sorted(back.seen) == sorted(down.seen)
    success = next(g for g in second.decision.guards if g.name == "success")
    assert (success.n_baseline, success.n_canary) == (20, 20)
    assert second.decision.n_canary == 20  # counted once, not twice


def test_samples_arriving_after_the_judge_step_wait_for_the_next_interval(
        store: SampleStore) -> None:
    r, status = rule(), started()
    store.insert_many([sample(i, c) for i in range(5) for c in ("baseline", "canary")])
    judged = judge_pending(store, r, window(status), ScriptedJudge(), upto=store.head(r.key))
    store.insert_many([sample(i, c) for i in range(5, 9) for c in ("baseline", "canary")])
    res = analyse(store, r, status, window(status), judged=judged,
                  now=T0 + timedelta(minutes=5),
                  deadline_reached=False, canary_share=0.5)
    assert res.new_samples == 10  # the 8 late ones are read next time, with verdicts


def test_a_bad_canary_is_rolled_back_and_a_good_one_promoted(store: SampleStore) -> None:
    r = rule(judge={"model": "m", "samplesPerInterval": 1000})
    store.insert_many([sample(i, c) for i in range(200) for c in ("baseline", "canary")])
    bad = tick(r, started(), store, judge=ScriptedJudge(bad_canary=True))
    assert bad.decision.action is Action.ROLLBACK
    assert "success" in bad.decision.reason


def test_restart_resumes_from_status_without_double_counting(store: SampleStore) -> None:
    r = rule()
    store.insert_many([sample(i, c, minutes=1.0) for i in range(30) for c in ("baseline",
                                                                               "canary")])
    first = tick(r, started(), store, judge=ScriptedJudge())
    # the status round-trips through JSON, as through the API server
    persisted = CanaryRuleStatus.model_validate(
        started().model_copy(update={"statistics": first.statistics}).model_dump(
            mode="json", by_alias=True))
    store.insert_many([sample(i, c, minutes=1.0) for i in range(30, 60)
                       for c in ("baseline", "canary")])
    second = tick(r, persisted, store, judge=ScriptedJudge())
    corr = next(g for g in second.decision.guards if g.name == "correction")
    assert (corr.n_baseline, corr.n_canary) == (60, 60)
    # a lost status write: the same tick re-run from the old status gives the same result
    replay = tick(r, persisted, store, judge=ScriptedJudge())
    assert replay.statistics == second.statistics


def test_delayed_feedback_replaces_the_samples_contribution(store: SampleStore) -> None:
    r = rule()
    store.insert_many([sample(i, c, minutes=1.0) for i in range(30) for c in ("baseline",
                                                                               "canary")])
    first = tick(r, started(), store, judge=ScriptedJudge())
    store.apply_feedback_many([Feedback(id=f"canary-{i}", rule="bot", correction_minutes=9.0)
                               for i in range(30)])
    status = started().model_copy(update={"statistics": first.statistics})
    second = tick(r, status, store, judge=ScriptedJudge())
    corr = next(g for g in second.decision.guards if g.name == "correction")
    assert corr.n_canary == 30  # replaced, not added
    assert corr.canary == pytest.approx(9.0)
    assert corr.baseline == pytest.approx(1.0)


def test_samples_from_before_the_rollout_are_ignored(store: SampleStore) -> None:
    old = T0 - timedelta(hours=1)
    store.insert_many([sample(i, "canary", ts=old) for i in range(10)])
    res = tick(rule(), started(), store, judge=ScriptedJudge())
    assert res.decision.n_canary == 0


# -- Prometheus ------------------------------------------------------------------------

PROM_GUARD = {"name": "errors", "metric": "prometheus", "query": "fallbacks",
              "tolerance": 0.02}
QUERY = {
    "name": "fallbacks",
    "events": 'sum(increase(llm_fallback_total{cohort="${cohort}"}[${interval}]))',
    "total": 'sum(increase(llm_requests_total{cohort="${cohort}"}[${interval}]))',
}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, PrometheusServer]]:
    exporter = Exporter()
    exporter.start()
    try:
        with run_prometheus([exporter.target], workdir=tmp_path_factory.mktemp("prom")) as server:
            yield exporter, server
    finally:
        exporter.stop()


def prom_rule(url: str) -> CanaryRule:
    raw = yaml.safe_load(yaml.safe_dump(RULE))
    raw["spec"]["analysis"]["guards"] = [PROM_GUARD]
    raw["spec"]["metrics"] = {"prometheusUrl": url, "timeoutSeconds": 2, "queries": [QUERY]}
    return CanaryRule.model_validate(raw)


def test_prometheus_outage_is_an_error_and_never_promotes(store: SampleStore) -> None:
    r = prom_rule("http://127.0.0.1:9")  # nothing listens on the discard port
    with PrometheusSource("http://127.0.0.1:9", timeout_seconds=1) as source:
        res = tick(r, started(), store, counts=source)
    (g,) = res.decision.guards
    assert g.outcome is Outcome.ERROR
    assert res.decision.action is Action.CONTINUE


def test_prometheus_counts_feed_the_guard(store: SampleStore,
                                          prom: tuple[Exporter, PrometheusServer]) -> None:
    exporter, server = prom
    for cohort in ("baseline", "canary"):
        exporter.touch(cohort)
    server.wait_for('count(llm_fallback_total) + count(llm_requests_total)',
                    lambda r: bool(r) and float(r[0]["value"][1]) == 4)  # zeros scraped first
    exporter.record("baseline", requests=4000, fallbacks=40)
    exporter.record("canary", requests=4000, fallbacks=800)
    for cohort in ("baseline", "canary"):  # increase() needs two scrapes after the jump
        server.wait_for(f'sum(increase(llm_requests_total{{cohort="{cohort}"}}[5m]))',
                        lambda r: bool(r) and float(r[0]["value"][1]) > 0)
    r = prom_rule(server.url)
    now = datetime.now(UTC)
    status = started().model_copy(update={"step_started_at": now - timedelta(minutes=5)})
    with PrometheusSource(server.url, timeout_seconds=5) as source:
        res = tick(r, status, store, counts=source, now=now)
    (g,) = res.decision.guards
    assert g.outcome is Outcome.FAIL, (g.reason, res.analysis.notes)
    assert res.decision.action is Action.ROLLBACK


def test_uncalibrated_or_untrusted_judge_holds_the_judged_guards(store: SampleStore) -> None:
    r = rule(judge={"model": "m", "samplesPerInterval": 1000, "minKappa": 0.6})
    store.insert_many([sample(i, c) for i in range(200) for c in ("baseline", "canary")])
    bad = ScriptedJudge(bad_canary=True)
    for kappa, why in ((None, "not calibrated"), (0.4, "kappa 0.40 < minKappa 0.6")):
        res = tick(r, started(), store, judge=bad, judge_kappa=kappa)
        success = next(g for g in res.decision.guards if g.name == "success")
        assert success.outcome is Outcome.ERROR and why in success.reason
        assert res.decision.action is Action.CONTINUE  # never a rollback on its say
    trusted = tick(r, started(), store, judge=bad, judge_kappa=0.8)
    assert trusted.decision.action is Action.ROLLBACK


def revisioned(i: int, cohort: str, revision: str | None, ts: datetime = T0) -> Sample:
    return sample(i, cohort, ts=ts).model_copy(update={"id": f"{cohort}-{revision}-{i}",
                                                       "revision": revision})


def test_only_the_current_revision_is_judged_and_counted(store: SampleStore) -> None:
    status = started().model_copy(update={"canary_evidence_since": T0 + timedelta(seconds=30)})
    store.insert_many(
        [revisioned(i, "canary", "r0") for i in range(10)]  # an old canary, after the change
        + [revisioned(i, "canary", "r1") for i in range(10)]
        + [revisioned(i, "canary", None) for i in range(10)]  # unrevisioned, before settling
        + [revisioned(i, "canary", None, ts=T0 + timedelta(minutes=1)) for i in range(10, 14)]
        + [revisioned(i, "baseline", None) for i in range(10)])
    judge = ScriptedJudge()
    res = tick(rule(judge={"model": "m", "samplesPerInterval": 1000}), status, store,
               judge=judge)
    assert sorted({i.split("-")[1] for i in judge.seen if i.startswith("canary")}) == \
        ["None", "r1"]
    assert len(judge.seen) == 10 + 4 + 10
    assert res.decision.n_canary == 14 and res.decision.n_baseline == 10
    assert res.judged.unjudged == {}  # the others are written off without a call
    stored = store.get(KEY, "canary-r0-3")
    assert stored is not None and isinstance(stored.verdict, Unjudged)
    assert stored.verdict.reason == "not_counted"


def test_a_cursor_saved_from_another_log_is_not_used(store: SampleStore) -> None:
    """After a failover or an upgrade the new leader's store is another log: what the
    old one counted stays counted, and this log is read from the rollout's start."""
    r = rule()
    first = tick(r, started(), store, judge=ScriptedJudge())
    moved = dict(first.statistics, cursor=10_000, log="another-replicas-store")
    store.insert_many([sample(i, c) for i in range(3) for c in ("baseline", "canary")])
    res = tick(r, started().model_copy(update={"statistics": moved}), store,
               judge=ScriptedJudge())
    assert res.analysis.new_samples == 6
    assert res.statistics["log"] == store.log_id() != "another-replicas-store"


def forged(i: int, cohort: str, score: float) -> Sample:
    return sample(i, cohort).model_copy(update={"judge": RecordedVerdict(score=score)})


def test_a_client_verdict_is_ignored_and_every_sample_is_judged(store: SampleStore) -> None:
    """The forged-verdict attack: a regressed canary posted with ``judge.score: 1.0`` is
    judged by the controller anyway and rolled back; the forged score never counts."""
    r = rule(judge={"model": "m", "samplesPerInterval": 1000})
    store.insert_many([forged(i, c, 1.0) for i in range(200) for c in ("baseline", "canary")])
    judge = ScriptedJudge(bad_canary=True)
    res = tick(r, started(), store, judge=judge)
    assert len(judge.seen) == 400  # a client verdict never spares a sample from the judge
    assert res.decision.action is Action.ROLLBACK
    success = next(g for g in res.decision.guards if g.name == "success")
    assert success.verdicts == "judge"


def test_forged_failures_cannot_force_a_rollback_either(store: SampleStore) -> None:
    r = rule(judge={"model": "m", "samplesPerInterval": 1000})
    store.insert_many([forged(i, c, 0.0 if c == "canary" else 1.0)
                       for i in range(200) for c in ("baseline", "canary")])
    res = tick(r, started(), store, judge=ScriptedJudge())
    assert res.decision.action is not Action.ROLLBACK


def test_client_verdicts_count_only_when_the_rule_says_so(store: SampleStore) -> None:
    r = rule(judge=None, verdicts="client")
    store.insert_many([forged(i, c, 0.0 if c == "canary" else 1.0)
                       for i in range(200) for c in ("baseline", "canary")])
    res = tick(r, started(), store)
    assert res.decision.action is Action.ROLLBACK
    success = next(g for g in res.decision.guards if g.name == "success")
    assert success.verdicts == "client" and success.n_canary == 200


def test_without_a_judge_or_client_verdicts_the_judged_guards_say_why(store: SampleStore
                                                                       ) -> None:
    store.insert_many([forged(i, c, 1.0) for i in range(80) for c in ("baseline", "canary")])
    res = tick(rule(judge=None), started(), store)
    success = next(g for g in res.decision.guards if g.name == "success")
    assert success.outcome is Outcome.ERROR and "spec.verdicts: client" in success.reason
    assert success.n_canary == 0  # the client's verdicts were not counted


def test_a_poisoned_row_is_quarantined_and_the_analysis_goes_on(store: SampleStore) -> None:
    r = rule(judge={"model": "m", "samplesPerInterval": 1000})
    store.insert_many([sample(i, c) for i in range(200) for c in ("baseline", "canary")])
    import sqlite3

    db = sqlite3.connect(store.path)
    db.execute("UPDATE samples SET body = replace(body, '\"latency_ms\":100.0',"
               " '\"latency_ms\":null') WHERE id = 'canary-7'")
    db.commit()
    db.close()
    res = tick(r, started(), store, judge=ScriptedJudge(bad_canary=True))
    # the judge step met it first (set aside there); the analysis never sees it
    assert res.analysis.quarantined == ()
    assert res.decision.action is Action.ROLLBACK  # decided on the 399 readable samples
    assert res.decision.n_canary == 199
    assert store.quarantined(KEY).count == 1


def test_statistics_that_cannot_be_loaded_are_rebuilt_from_the_rollout_start(
    store: SampleStore,
) -> None:
    """The poisoned-feedback attack's aftermath: whatever breaks the saved statistics, the
    next look re-reads the log from the rollout's start, so no counted sample is lost."""
    r = rule()
    store.insert_many([sample(i, c, minutes=1.0) for i in range(30) for c in ("baseline",
                                                                               "canary")])
    first = tick(r, started(), store, judge=ScriptedJudge())
    store.insert_many([sample(i, c, minutes=1.0) for i in range(30, 40)
                       for c in ("baseline", "canary")])
    broken = dict(first.statistics)
    broken["stats"] = {"not": "statistics"}
    status = started().model_copy(update={"statistics": broken})
    again = tick(r, status, store, judge=ScriptedJudge())
    corr = next(g for g in again.decision.guards if g.name == "correction")
    assert (corr.n_baseline, corr.n_canary) == (40, 40)


def test_outputs_count_for_correction_burden_once_their_feedback_window_closes(
        store: SampleStore) -> None:
    """Services report only edits: an output without feedback is pending until its window
    closes (then 0 minutes), so the guard never decides on the edited minority."""
    raw = copy.deepcopy(RULE)
    raw["spec"]["analysis"]["feedbackComplete"] = False  # the default: edits only
    raw["spec"]["analysis"]["feedbackWindow"] = "10m"
    r = CanaryRule.model_validate(raw)
    now = T0 + timedelta(minutes=20)
    old, recent = T0, T0 + timedelta(minutes=15)  # only the old ones' windows are closed
    store.insert_many([sample(i, c, ts=old) for i in range(40) for c in ("baseline",
                                                                          "canary")])
    store.insert_many([sample(i, c, ts=recent) for i in range(40, 60)
                       for c in ("baseline", "canary")])
    store.apply_feedback_many([Feedback(id=f"canary-{i}", rule="bot", correction_minutes=6.0)
                               for i in range(0, 40, 4)])  # 10 of the 40 old canary outputs
    status = started().model_copy(update={"started_at": T0 - timedelta(minutes=1)})
    assert close_feedback_windows(store, r, now) == 80
    assert close_feedback_windows(store, r, now) == 0  # closing is idempotent
    res = tick(r, status, store, judge=ScriptedJudge(), now=now)
    corr = next(g for g in res.decision.guards if g.name == "correction")
    assert (corr.n_baseline, corr.n_canary) == (40, 40)  # the recent 20 + 20 are pending
    assert corr.canary == pytest.approx(6.0 * 10 / 40)  # minutes per output, not per edit
    assert corr.baseline == pytest.approx(0.0)
    # a late edit of a closed output still counts: it replaces its 0
    store.apply_feedback_many([Feedback(id="baseline-1", rule="bot", correction_minutes=8.0)])
    status = status.model_copy(update={"statistics": res.statistics})
    again = tick(r, status, store, judge=ScriptedJudge(), now=now)
    corr = next(g for g in again.decision.guards if g.name == "correction")
    assert corr.n_baseline == 40 and corr.baseline == pytest.approx(8.0 / 40)
