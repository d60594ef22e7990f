"""The SQLite sample store: dedup, delayed feedback, the change cursor, verdicts, restart."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.models import Feedback, RecordedVerdict, RuleKey, Sample, Unjudged
from controller.sources.store import SampleStore

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
R = RuleKey("default", "r")


def sample(i: int, rule: str = "r", cohort: str = "canary", namespace: str | None = None
           ) -> Sample:
    return Sample.model_validate({
        "id": f"s{i}", "rule": rule, "namespace": namespace, "cohort": cohort,
        "ts": (T0 + timedelta(seconds=i)), "input": "q", "output": "a", "latency_ms": 1,
        "cost_usd": 0, "fallback": False})


def fb(sid: str, minutes: float, rule: str = "r") -> Feedback:
    return Feedback(id=sid, rule=rule, correction_minutes=minutes)


def test_duplicates_are_dropped_and_rules_kept_apart(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        first = store.insert_many([sample(1), sample(2), sample(1)])
        assert (first.accepted, first.duplicates) == (2, 1)
        assert store.insert_many([sample(2)]).duplicates == 1
        store.insert_many([sample(3, rule="other")])
        assert store.count(R) == 2 and store.count(RuleKey("default", "other")) == 1


def test_rules_of_the_same_name_in_two_namespaces_share_nothing(tmp_path: Path) -> None:
    """Samples are keyed by namespace/rule: the same rule name and even the same ids in
    another namespace are another rule's evidence (no sharing, no id squatting)."""
    a, b = RuleKey("team-a", "bot"), RuleKey("team-b", "bot")
    with SampleStore(tmp_path / "s.db") as store:
        got = store.insert_many([sample(1, "bot", namespace="team-a"),
                                 sample(1, "bot", namespace="team-b"),
                                 sample(2, "bot", namespace="team-b")])
        assert (got.accepted, got.duplicates) == (3, 0)
        assert store.count(a) == 1 and store.count(b) == 2
        assert {c.sample_id for c in store.changes(a).changes} == {"s1"}
        store.apply_feedback(Feedback(id="s1", rule="bot", namespace="team-b",
                                      correction_minutes=4))
        one_a, one_b = store.get(a, "s1"), store.get(b, "s1")
        assert one_a is not None and one_a.sample.correction_minutes is None
        assert one_b is not None and one_b.sample.correction_minutes == 4
        assert one_b.sample.namespace == "team-b"


def test_feedback_before_its_sample_is_applied_on_arrival(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        got = store.apply_feedback_many([fb("s1", 3.0)])
        assert (got.applied, got.pending) == (0, 1)
        store.insert(sample(1))
        stored = store.get(R, "s1")
        assert stored is not None and stored.sample.correction_minutes == 3.0
        batch = store.changes(R)
        assert [c.is_new for c in batch.changes] == [True]


def test_verdicts_survive_a_restart_and_swap_a_counted_contribution(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SampleStore(path) as store:
        store.insert_many([sample(1), sample(2)])
        cursor = store.changes(R).cursor
        assert [a.sample.id for a in store.awaiting_verdict(R, upto=cursor)] == ["s1", "s2"]
        store.set_verdicts(R, [("s1", RecordedVerdict(score=0.9, model="m")),
                               ("s2", Unjudged(reason="budget"))])
        assert store.awaiting_verdict(R, upto=cursor) == []
        later = store.changes(R, after=cursor).changes
        assert [(c.sample_id, c.verdict_before, type(c.verdict).__name__) for c in later] == [
            ("s1", None, "RecordedVerdict"), ("s2", None, "Unjudged")]
        assert all(c.previous == c.current for c in later)
        # the same verdict again is no change
        store.set_verdicts(R, [("s1", RecordedVerdict(score=0.9, model="m"))])
        assert store.changes(R, after=store.changes(R, after=cursor).cursor).changes == []
    with SampleStore(path) as store:
        one, two = store.get(R, "s1"), store.get(R, "s2")
        assert one is not None and isinstance(one.verdict, RecordedVerdict)
        assert two is not None and isinstance(two.verdict, Unjudged)
        assert two.verdict.reason == "budget"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.lists(st.integers(0, 15), min_size=1, max_size=5)),
        st.tuples(st.just("feedback"), st.integers(0, 15), st.floats(0, 30)),
        st.tuples(st.just("read"), st.integers(1, 4)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_cursor_reads_see_every_sample_once_with_its_latest_feedback(
    ops: list[tuple[object, ...]],
) -> None:
    """Replaying the change batches (add new, replace changed) rebuilds exactly the
    store's current samples, whatever the interleaving of inserts, duplicates, early or
    late feedback, and read sizes."""
    with tempfile.TemporaryDirectory() as tmp, SampleStore(Path(tmp) / "s.db") as store:
        seen: dict[str, Sample] = {}
        cursor = 0
        expected_minutes: dict[str, float] = {}
        inserted: set[str] = set()

        def drain(limit: int) -> None:
            nonlocal cursor
            while True:
                batch = store.changes(R, after=cursor, limit=limit)
                for c in batch.changes:
                    if c.previous is None:
                        assert c.sample_id not in seen, "a sample delivered as new twice"
                    else:
                        assert seen[c.sample_id] == c.previous, "previous must match"
                    seen[c.sample_id] = c.current
                cursor = batch.cursor
                if not batch.more:
                    return

        for op in ops:
            if op[0] == "insert":
                ids = list(op[1])  # type: ignore[call-overload]
                store.insert_many([sample(i) for i in ids])
                inserted.update(f"s{i}" for i in ids)
            elif op[0] == "feedback":
                sid, minutes = f"s{op[1]}", float(op[2])  # type: ignore[arg-type]
                store.apply_feedback(fb(sid, minutes))
                expected_minutes[sid] = minutes
            else:
                drain(int(op[1]))  # type: ignore[call-overload]
        drain(3)
        assert set(seen) == inserted
        for sid, s in seen.items():
            assert s.correction_minutes == expected_minutes.get(sid)
            stored = store.get(R, sid)
            assert stored is not None and stored.sample == s


def test_prune_bounds_retention_by_age_and_count(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        now = datetime.now(UTC)
        store.insert_many([sample(i) for i in range(5)], now=now - timedelta(days=30))
        store.insert_many([sample(i) for i in range(5, 15)], now=now)
        assert store.prune(max_age=timedelta(days=7), now=now).samples == 5
        assert store.count(R) == 10
        assert store.prune(max_rows_per_rule=4, now=now).samples == 6
        assert store.count(R) == 4
        ids = {c.sample_id for c in store.changes(R).changes}
        assert ids == {"s11", "s12", "s13", "s14"}  # the newest stay, nothing comes back


def test_a_judged_retry_reaches_a_reader_once_with_its_verdict(tmp_path: Path) -> None:
    """Insert, feedback and a later verdict read in any batch size: the reader's last view
    carries the verdict and the feedback, and ``previous`` always matches what it saw."""
    with SampleStore(tmp_path / "s.db") as store:
        store.insert(sample(1))
        seen = store.changes(R)
        store.apply_feedback(fb("s1", 2.0))
        store.set_verdicts(R, [("s1", RecordedVerdict(score=0.4, model="m"))])
        (change,) = store.changes(R, after=seen.cursor).changes
        assert change.previous == seen.changes[0].current and change.verdict_before is None
        assert change.current.correction_minutes == 2.0
        assert isinstance(change.verdict, RecordedVerdict) and change.verdict.score == 0.4


def test_position_at_starts_a_reader_at_the_first_sample_received_since(tmp_path: Path
                                                                         ) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        store.insert_many([sample(1), sample(2)], now=T0)
        start = T0 + timedelta(minutes=1)
        assert store.position_at(R, start) == store.head(R)
        store.insert_many([sample(3)], now=start + timedelta(seconds=5))
        store.apply_feedback(fb("s1", 1.0))  # an old sample's feedback is still a change
        read = {c.sample_id for c in store.changes(R, after=store.position_at(R, start)).changes}
        assert "s3" in read and "s2" not in read


def test_a_version_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    """Files written before samples were keyed by namespace open as namespace default."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE samples (id TEXT PRIMARY KEY, rule TEXT NOT NULL, cohort TEXT NOT NULL,
            queue TEXT NOT NULL, ts REAL NOT NULL, received REAL NOT NULL, body TEXT NOT NULL,
            overlay TEXT NOT NULL DEFAULT '{}', verdict_kind TEXT, verdict TEXT);
        CREATE INDEX samples_rule_received ON samples(rule, received);
        CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL,
            sample_id TEXT NOT NULL, kind TEXT NOT NULL, before TEXT, after TEXT NOT NULL);
        CREATE INDEX changes_rule_seq ON changes(rule, seq);
        CREATE INDEX changes_sample ON changes(sample_id);
        CREATE TABLE pending_feedback (id TEXT PRIMARY KEY, overlay TEXT NOT NULL,
            received REAL NOT NULL);
        CREATE TABLE cursors (consumer TEXT NOT NULL, rule TEXT NOT NULL,
            position INTEGER NOT NULL, PRIMARY KEY (consumer, rule));
    """)
    body = sample(7).model_dump_json()
    db.execute("INSERT INTO samples VALUES ('s7', 'r', 'canary', 'default', 0, 0, ?, '{}',"
               " NULL, NULL)", (body,))
    db.execute("INSERT INTO changes (rule, sample_id, kind, before, after)"
               " VALUES ('r', 's7', 'insert', NULL, '{}')")
    db.commit()
    db.close()
    with SampleStore(path) as store:
        assert store.count(R) == 1 and store.head(R) == 1
        assert [c.sample_id for c in store.changes(R).changes] == ["s7"]
        assert [a.sample.id for a in store.awaiting_verdict(R, upto=1)] == ["s7"]
    with SampleStore(path) as store:  # reopening an upgraded file changes nothing
        assert store.count(R) == 1


def _corrupt(path: Path, sample_id: str, column: str, value: str, table: str = "samples"
             ) -> None:
    """Damage one stored row behind the store's back (another version, a bad disk)."""
    import sqlite3

    key = "id" if table == "samples" else "sample_id"
    db = sqlite3.connect(path)
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (value, sample_id))
    db.commit()
    db.close()


def quarantined_metric(rule: str = "r") -> float:
    from controller.observability import REGISTRY

    return float(REGISTRY.get_sample_value(
        "llmcanary_store_quarantined_total", {"namespace": "default", "rule": rule}) or 0)


def test_a_row_that_cannot_be_read_back_is_quarantined_and_the_rest_is_read(
    tmp_path: Path,
) -> None:
    """The attack of a stored ``null`` latency (what 1e999 became before numbers were
    checked at parse time), and plain garbage: each is moved aside once, counted, and
    every reader goes on with the rest."""
    path = tmp_path / "s.db"
    with SampleStore(path) as store:
        store.insert_many([sample(i) for i in range(6)])
        store.apply_feedback(fb("s4", 2.0))
    poisoned = sample(2).model_dump(mode="json") | {"latency_ms": None}
    import json

    _corrupt(path, "s2", "body", json.dumps(poisoned))
    _corrupt(path, "s3", "body", "{not json")
    _corrupt(path, "s4", "after", '{"correction_minutes": -1}', table="changes")
    before = quarantined_metric()
    with SampleStore(path) as store:
        batch = store.changes(R)
        assert sorted(c.sample_id for c in batch.changes) == ["s0", "s1", "s5"]
        assert sorted(q.sample_id for q in batch.quarantined) == ["s2", "s3", "s4"]
        reasons = {q.sample_id: q.reason for q in batch.quarantined}
        assert "latency_ms" in reasons["s2"] and "correction_minutes" in reasons["s4"]
        assert "JSONDecodeError" in reasons["s3"]
        assert batch.cursor == 7 and not batch.more  # past every row, the bad ones too
        assert quarantined_metric() - before == 3
        report = store.quarantined(R)
        assert report.count == 3 and report.latest is not None
        # reported once: the rows are gone from every later read
        assert store.changes(R).quarantined == ()
        assert store.count(R) == 3
        assert sorted(a.sample.id for a in store.awaiting_verdict(R, upto=store.head(R))) \
            == ["s0", "s1", "s5"]
        assert quarantined_metric() - before == 3


def test_every_reader_quarantines_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SampleStore(path) as store:
        store.insert_many([sample(i) for i in range(3)])
    _corrupt(path, "s1", "body", '{"id": "s1"}')
    with SampleStore(path) as store:
        assert [a.sample.id for a in store.awaiting_verdict(R, upto=99)] == ["s0", "s2"]
    _corrupt(path, "s2", "verdict_kind", "judged")
    _corrupt(path, "s2", "verdict", '{"score": 7}')
    with SampleStore(path) as store:
        assert [s.sample.id for s in store.samples(R)] == ["s0"]
        assert store.get(R, "s2") is None
        assert store.quarantined(R).count == 2


def test_the_store_stays_under_its_size_limit_dropping_the_oldest(tmp_path: Path) -> None:
    limit = 400 * 1024
    with SampleStore(tmp_path / "s.db", max_bytes=limit) as store:
        for batch in range(40):
            now = T0 + timedelta(minutes=batch)
            store.insert_many([sample(batch * 100 + i) for i in range(100)], now=now)
            assert store.used_bytes() < limit + 64 * 1024  # one batch over at most
        kept = store.count(R)
        assert 0 < kept < 4000
        # the newest samples survive, the oldest went first
        assert store.get(R, "s3999") is not None and store.get(R, "s0") is None
        assert (tmp_path / "s.db").stat().st_size < 2 * limit


def test_pending_feedback_is_bounded_per_rule_keeping_the_newest(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db", max_pending_per_rule=10) as store:
        for i in range(25):
            store.apply_feedback(fb(f"ghost-{i}", 1.0), now=T0 + timedelta(seconds=i))
        store.apply_feedback(fb("other-0", 1.0, rule="other"))
        assert store.pending_feedback_count() == 11
        store.insert(sample(0))
        store.insert_many([Sample.model_validate(sample(0).model_dump() | {"id": "ghost-24"})])
        got = store.get(R, "ghost-24")
        assert got is not None and got.sample.correction_minutes == 1.0
        # the 9 ghosts left (ghost-24 was applied) are older than a day by then
        assert store.prune(max_age=timedelta(days=1), now=T0 + timedelta(days=2)) \
            .pending_feedback == 9


def test_the_judge_cache_keeps_only_its_newest_verdicts(tmp_path: Path) -> None:
    """It shares the store's volume, so it is bounded too (pruned with the store)."""
    from controller.judge.cache import VerdictCache

    cache = VerdictCache(tmp_path / "judge-cache.sqlite")
    try:
        for i in range(30):
            cache.put(f"k{i}", {"n": i})
        assert cache.prune(max_entries=10) == 20
        assert len(cache) == 10 and cache.get("k29") == {"n": 29} and cache.get("k0") is None
    finally:
        cache.close()


def test_a_version_2_file_gains_the_new_columns_and_tables_in_place(tmp_path: Path) -> None:
    """A store written before quarantine and feedback windows existed opens as is."""
    import sqlite3

    path = tmp_path / "v2.db"
    with SampleStore(path) as store:
        store.insert_many([sample(1), sample(2)])
    db = sqlite3.connect(path)
    db.executescript("""
        DROP TABLE quarantine;
        DROP INDEX samples_open;
        ALTER TABLE samples DROP COLUMN feedback_closed;
        PRAGMA user_version = 2;
    """)
    db.close()
    with SampleStore(path) as store:
        assert store.count(R) == 2
        assert [c.sample_id for c in store.changes(R).changes] == ["s1", "s2"]
        assert store.quarantined(R).count == 0
