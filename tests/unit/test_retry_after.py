"""The one Retry-After parser, as the judge's and the Kubernetes layer's retries read it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.actuator.errors import Transient, from_status
from controller.retry_after import parse_retry_after

NOW = 1_800_000_000.0


def test_seconds_milliseconds_and_dates() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "3"}) == 3.0
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    when = format_datetime(datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=30),
                           usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=lambda: NOW) == 30.0
    assert parse_retry_after({"retry-after": when}, now=lambda: NOW + 60) == 0.0


def test_header_names_are_case_insensitive() -> None:
    assert parse_retry_after({"Retry-After": "4"}) == 4.0
    assert parse_retry_after({"Retry-After-Ms": "1500"}) == 1.5


def test_absurd_values_are_refused_not_waited_for() -> None:
    for value in ("nan", "inf", "-inf", "1e999", True):
        assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after": "-5"}) == 0.0


@settings(derandomize=True, max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["retry-after", "Retry-After", "retry-after-ms", "x"]),
                       st.one_of(st.text(max_size=40), st.floats(), st.integers(), st.none())))
def test_any_header_gives_none_or_a_finite_non_negative_delay(headers: dict[str, object]
                                                             ) -> None:
    got = parse_retry_after(headers)
    assert got is None or (math.isfinite(got) and got >= 0)


def test_kubernetes_errors_carry_the_header_else_the_status_hint() -> None:
    body = {"kind": "Status", "reason": "TooManyRequests", "message": "slow down",
            "details": {"retryAfterSeconds": 7}}
    err = from_status(429, body, {"Retry-After": "3"})
    assert isinstance(err, Transient) and err.retry_after == 3.0
    assert from_status(429, body).retry_after == 7.0
    assert from_status(429, body, {"Retry-After": "garbage"}).retry_after == 7.0
    assert from_status(500, {"message": "boom"}).retry_after is None


def test_a_date_without_a_zone_is_utc() -> None:
    assert parse_retry_after({"retry-after": "Thu, 15 Jan 2027 08:00:30 -0000"},
                             now=lambda: datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
                             ) == 30.0
