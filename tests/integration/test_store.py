"""The SQLite sample store: dedup, delayed feedback, the change cursor, verdicts, restart."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.models import Feedback, RecordedVerdict, Sample, Unjudged
from controller.sources.store import SampleStore

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def sample(i: int, rule: str = "r", cohort: str = "canary") -> Sample:
    return Sample.model_validate({
        "id": f"s{i}", "rule": rule, "cohort": cohort, "ts": (T0 + timedelta(seconds=i)),
        "input": "q", "output": "a", "latency_ms": 1, "cost_usd": 0, "fallback": False})


def test_duplicates_are_dropped_and_rules_kept_apart(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        first = store.insert_many([sample(1), sample(2), sample(1)])
        assert (first.accepted, first.duplicates) == (2, 1)
        assert store.insert_many([sample(2)]).duplicates == 1
        store.insert_many([sample(3, rule="other")])
        assert store.count("r") == 2 and store.count("other") == 1


def test_feedback_before_its_sample_is_applied_on_arrival(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        got = store.apply_feedback_many([Feedback(id="s1", rule="r", correction_minutes=3.0)])
        assert (got.applied, got.pending) == (0, 1)
        store.insert(sample(1))
        stored = store.get("s1")
        assert stored is not None and stored.sample.correction_minutes == 3.0
        batch = store.changes("r")
        assert [c.is_new for c in batch.changes] == [True]


def test_verdicts_survive_a_restart_and_are_not_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SampleStore(path) as store:
        store.insert_many([sample(1), sample(2)])
        cursor = store.changes("r").cursor
        store.set_verdicts([("s1", RecordedVerdict(score=0.9, model="m")),
                            ("s2", Unjudged(reason="budget"))])
        assert store.changes("r", after=cursor).changes == []
    with SampleStore(path) as store:
        one, two = store.get("s1"), store.get("s2")
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
                batch = store.changes("r", after=cursor, limit=limit)
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
                store.apply_feedback(Feedback(id=sid, rule="r", correction_minutes=minutes))
                expected_minutes[sid] = minutes
            else:
                drain(int(op[1]))  # type: ignore[call-overload]
        drain(3)
        assert set(seen) == inserted
        for sid, s in seen.items():
            assert s.correction_minutes == expected_minutes.get(sid)
            stored = store.get(sid)
            assert stored is not None and stored.sample == s


def test_prune_bounds_retention_by_age_and_count(tmp_path: Path) -> None:
    with SampleStore(tmp_path / "s.db") as store:
        now = datetime.now(UTC)
        store.insert_many([sample(i) for i in range(5)], now=now - timedelta(days=30))
        store.insert_many([sample(i) for i in range(5, 15)], now=now)
        assert store.prune(max_age=timedelta(days=7), now=now).samples == 5
        assert store.count("r") == 10
        assert store.prune(max_rows_per_rule=4, now=now).samples == 6
        assert store.count("r") == 4
        ids = {c.sample_id for c in store.changes("r").changes}
        assert ids == {"s11", "s12", "s13", "s14"}  # the newest stay, nothing comes back
