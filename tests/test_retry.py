"""The shared retry policy: Retry-After is honoured as a floor-raiser, never below the backoff."""

from __future__ import annotations

import email.utils

import pytest

from concord_pipelines.retry import RetryPolicy, retry_after_seconds

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", -3.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), -30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 1445412480.0 - NOW),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_forms(header: str | None, expected: float | None) -> None:
    got = retry_after_seconds(header, now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("header", ["0", "-10", "garbage", email.utils.formatdate(NOW - 3600, usegmt=True), None])
def test_wait_is_at_least_the_backoff_whatever_the_server_says(header: str | None) -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=30.0)
    for attempt in range(6):
        floor = min(30.0, 0.5 * 2**attempt) * 0.5
        assert policy.delay(attempt, header, now=NOW) >= floor


def test_a_later_retry_after_wins_but_is_bounded() -> None:
    policy = RetryPolicy(backoff_base=0.1, retry_after_max=20.0)
    assert policy.delay(0, "7", now=NOW) == 7.0
    assert policy.delay(0, email.utils.formatdate(NOW + 12, usegmt=True), now=NOW) == pytest.approx(12.0)
    assert policy.delay(0, "3600", now=NOW) == 20.0


def test_the_pace_follows_429s_but_never_stops_the_run() -> None:
    from concord_pipelines.retry import AdaptivePace

    pace = AdaptivePace(4, cut_every=0.0)
    for _ in range(20):
        pace.succeeded()
    pace.throttled()
    assert 0 < pace.interval < 1.0  # the first 429 paces requests at the rate that was succeeding
    first = pace.interval
    for _ in range(100):
        pace.throttled()
    assert first < pace.interval <= 1.0  # slower with every 429, but never below one request a second
    slowest = pace.interval
    for _ in range(50):
        pace.succeeded()
    assert pace.interval < slowest * 0.7  # successes speed it up again
