"""Tick accounting: a skipped tick is counted and its lateness observed, from the grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.observability import REGISTRY
from controller.reconciler.ticks import TickLedger

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def metric(name: str) -> float:
    return float(REGISTRY.get_sample_value(name) or 0.0)


def test_a_tick_on_time_skips_nothing_and_a_late_one_counts_what_it_covered() -> None:
    ledger = TickLedger()
    ledger.schedule("ns/r", T0, 1.0)
    skipped0 = metric("llmcanary_ticks_skipped_total")
    late0 = metric("llmcanary_tick_lateness_seconds_sum")
    count0 = metric("llmcanary_tick_lateness_seconds_count")

    assert ledger.started("ns/r", T0 + timedelta(seconds=0.1)) == 0
    # ticks due at +1 and +2 never started (the first overran); the one at +3 runs at +3.5
    assert ledger.started("ns/r", T0 + timedelta(seconds=3.5)) == 2
    assert metric("llmcanary_ticks_skipped_total") - skipped0 == 2
    assert metric("llmcanary_tick_lateness_seconds_count") - count0 == 4
    # lateness 0.1 + (2.5 + 1.5 + 0.5): skipped ticks are as late as the tick that ran
    assert abs(metric("llmcanary_tick_lateness_seconds_sum") - late0 - 4.6) < 1e-6


def test_a_rescheduled_or_forgotten_job_starts_a_new_grid() -> None:
    ledger = TickLedger()
    ledger.schedule("ns/r", T0, 1.0)
    assert ledger.started("ns/r", T0 + timedelta(seconds=10)) == 10
    ledger.schedule("ns/r", T0 + timedelta(seconds=20), 5.0)
    assert ledger.started("ns/r", T0 + timedelta(seconds=20.2)) == 0
    ledger.forget("ns/r")
    assert ledger.started("ns/r", T0 + timedelta(seconds=99)) == 0
