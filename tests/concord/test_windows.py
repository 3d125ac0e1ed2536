"""Unit tests of incremental window arithmetic."""

from datetime import UTC, date, datetime, timedelta

from pipelines.concord.windows import Window, iso, metric_days, scan_window

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def test_first_run_starts_at_initial_start_and_ends_at_now_minus_lag():
    window = scan_window(None, T0, NOW, timedelta(hours=2), timedelta(minutes=5))
    assert window == Window(T0, NOW - timedelta(minutes=5))


def test_next_run_starts_at_cursor_minus_lookback():
    cursor = NOW - timedelta(days=1)
    window = scan_window(cursor, T0, NOW, timedelta(hours=2), timedelta(minutes=5))
    assert window is not None and window.start == cursor - timedelta(hours=2)


def test_lookback_never_reaches_before_initial_start():
    window = scan_window(T0 + timedelta(minutes=30), T0, NOW, timedelta(hours=2), timedelta(0))
    assert window is not None and window.start == T0


def test_empty_window_when_rerun_inside_lag():
    assert scan_window(NOW, NOW - timedelta(days=1), NOW, timedelta(0), timedelta(minutes=5)) is None


def test_split_halves_cover_the_window_exactly():
    left, right = Window(T0, NOW).split()
    assert left.start == T0 and right.end == NOW and left.end == right.start


def test_iso_is_utc_with_milliseconds_and_z():
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    plus_two = datetime(2026, 1, 2, 5, 4, 5, tzinfo=UTC).astimezone(tz=__import__("datetime").timezone(timedelta(hours=2)))
    assert iso(plus_two) == "2026-01-02T05:04:05.000Z"


def test_metric_days_first_run_and_refresh_of_last_complete_day():
    today = date(2026, 1, 10)
    assert metric_days(None, date(2026, 1, 8), today, 1) == [date(2026, 1, 8), date(2026, 1, 9), today]
    # yesterday was complete on the last run: with one day of lookback it is read once more
    assert metric_days(date(2026, 1, 9), date(2026, 1, 1), today, 1) == [date(2026, 1, 9), today]
    assert metric_days(date(2026, 1, 9), date(2026, 1, 1), today, 0) == [today]
