"""Unit tests of incremental window arithmetic."""

from datetime import UTC, date, datetime, timedelta

from concord_pipelines.concord.windows import Window, iso, metric_days, scan_window

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


def test_split_in_many_parts_covers_the_window_in_order_on_whole_milliseconds():
    window = Window(T0 + timedelta(microseconds=1234), NOW - timedelta(microseconds=5))
    parts = window.split(20)
    assert len(parts) == 20
    assert parts[0].start == window.start and parts[-1].end == window.end
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert all(p.start.microsecond % 1000 == 0 for p in parts[1:])
    lengths = [p.end - p.start for p in parts]
    assert max(lengths) - min(lengths) <= timedelta(milliseconds=2)


def test_split_of_a_short_window_gives_fewer_parts_never_empty_ones():
    window = Window(T0, T0 + timedelta(milliseconds=3, microseconds=500))
    parts = window.split(64)
    assert 2 <= len(parts) <= 3
    assert all(p.end > p.start for p in parts)
    assert parts[0].start == window.start and parts[-1].end == window.end


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


# -- slices of a big first load ---------------------------------------------------------------

from bisect import bisect_left  # noqa: E402

from concord_pipelines.concord.windows import slice_end  # noqa: E402


class _Counted:
    """Row timestamps and a count(window) that records every probe, like one request with limit=1."""

    def __init__(self, stamps: list[datetime]) -> None:
        self.stamps = sorted(stamps)
        self.probes = 0

    def __call__(self, window: Window) -> int:
        self.probes += 1
        return bisect_left(self.stamps, window.end) - bisect_left(self.stamps, window.start)


def _spread(start: datetime, seconds: int, rows: int) -> list[datetime]:
    return [start + timedelta(seconds=seconds * i / rows) for i in range(rows)]


def test_a_window_that_fits_is_one_slice_after_one_probe():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    count = _Counted(_spread(start, 86_400, 900))
    window = Window(start, start + timedelta(days=1))
    assert slice_end(window, count, 1_000) == window.end
    assert count.probes == 1


def test_even_rows_slice_near_the_target_in_few_probes():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    count = _Counted(_spread(start, 30 * 86_400, 100_000))
    window = Window(start, start + timedelta(days=30))
    end = slice_end(window, count, 10_000)
    rows = count(Window(start, end))
    assert 5_000 <= rows <= 10_000
    assert count.probes <= 6


def test_skewed_history_costs_about_log2_probes():
    # Years of nothing, then a busy month: bisection finds the month, interpolation the slice.
    start = datetime(2015, 1, 1, tzinfo=UTC)
    busy = datetime(2026, 10, 1, tzinfo=UTC)
    count = _Counted(_spread(busy, 30 * 86_400, 50_000))
    window = Window(start, busy + timedelta(days=30))
    end = slice_end(window, count, 10_000)
    assert 5_000 <= count(Window(start, end)) <= 10_000
    assert count.probes <= 40
    assert end.microsecond % 1000 == 0  # whole milliseconds, the API's precision


def test_consecutive_slices_cover_the_window_exactly_once():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = _spread(start, 10 * 86_400, 20_000) + [start + timedelta(days=3)] * 50  # a burst at one instant
    count = _Counted(stamps)
    window = Window(start, start + timedelta(days=10))
    cursor, slices = window.start, 0
    while cursor < window.end:
        end = slice_end(Window(cursor, window.end), count, 3_000)
        assert end > cursor
        assert count(Window(cursor, end)) <= 3_000
        cursor, slices = end, slices + 1
    assert 7 <= slices <= 14


def test_a_slice_always_ends_after_the_floor_even_when_overfull():
    # Lookback re-reads before the cursor; if that alone holds more than a slice, still move on.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cursor = start + timedelta(hours=2)
    count = _Counted([start + timedelta(hours=1)] * 5_000 + _spread(cursor, 86_400, 5_000))
    window = Window(start, cursor + timedelta(days=1))
    end = slice_end(window, count, 1_000, floor=cursor)
    assert end > cursor
