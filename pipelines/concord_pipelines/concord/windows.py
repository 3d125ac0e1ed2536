"""Date windows: where an incremental run starts and ends, and how a window is cut into pieces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

# Windows are never split below this: a window this short that still drifts is read as it is.
MIN_WINDOW = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Window:
    """Half-open [start, end) on the API's date filter, in UTC."""

    start: datetime
    end: datetime

    def split(self, parts: int = 2) -> tuple[Window, ...]:
        """`parts` windows of equal length covering this one (fewer if it is too short for them).

        Inner bounds are whole milliseconds, the precision of the API's date filter, so that
        neighbours meet exactly at the bound both send.
        """
        parts = max(1, min(parts, (self.end - self.start) // MIN_WINDOW))
        bounds = [self.start]
        for i in range(1, parts):
            bound = whole_ms(self.start + (self.end - self.start) * i / parts)
            if bound > bounds[-1]:
                bounds.append(bound)
        bounds.append(self.end)
        return tuple(Window(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a)

    @property
    def splittable(self) -> bool:
        return self.end - self.start > MIN_WINDOW * 2

    def params(self) -> dict[str, str]:
        return {"startDate": iso(self.start), "endDate": iso(self.end)}


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and a Z, the form the API documents."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


def scan_window(
    cursor: datetime | None,
    initial_start: datetime,
    run_started: datetime,
    lookback: timedelta,
    lag: timedelta,
) -> Window | None:
    """The window a run reads: from the cursor minus lookback (or the initial start) to start minus lag.

    None when the window would be empty (a rerun within `lag` of the previous one).
    """
    start = initial_start if cursor is None else max(cursor - lookback, initial_start)
    end = run_started - lag
    if end <= start:
        return None
    return Window(start, end)


def metric_days(
    last_complete_day: date | None,
    initial_day: date,
    today: date,
    lookback_days: int,
) -> list[date]:
    """Days whose dashboard a run requests: from the cursor minus lookback through today (partial)."""
    first = initial_day if last_complete_day is None else max(initial_day, last_complete_day + timedelta(days=1 - lookback_days))
    return [first + timedelta(days=i) for i in range((today - first).days + 1)]


def slice_end(window: Window, count: Callable[[Window], int], max_rows: int, floor: datetime | None = None) -> datetime:
    """Where the first slice of `window` holding at most `max_rows` rows ends; `window.end` if all fits.

    A first load or backfill of millions of rows is loaded slice by slice, so that each merge
    stays small (DuckDB's merge of 3,000,000 staged rows ran out of its 128 MB) and a crash loses
    one slice at most. `count(w)` is the number of rows in `w` (one request with limit=1).
    The slice ends after `floor` (the previous cursor) whatever that holds, so slicing always
    progresses. Bisection alternates with interpolation: years of empty history before a busy
    month cost about log2 probes, evenly spread rows two or three. Ends are whole milliseconds,
    the API's precision.
    """
    total = count(window)
    if total <= max_rows:
        return window.end
    lo = max(window.start, floor) if floor is not None else window.start
    lo_count: int | None = 0 if lo == window.start else None
    hi, hi_count = window.end, total
    found = False
    for step in range(64):
        if hi - lo <= 2 * MIN_WINDOW:
            break
        fraction = 0.5
        if step % 2 == 0 and lo_count is not None and hi_count > lo_count:
            fraction = min(0.9, max(0.1, (0.75 * max_rows - lo_count) / (hi_count - lo_count)))
        middle = whole_ms(lo + (hi - lo) * fraction)
        if middle <= lo or middle >= hi:
            break
        rows = count(Window(window.start, middle))
        if rows > max_rows:
            hi, hi_count = middle, rows
        else:
            lo, lo_count, found = middle, rows, True
            if rows >= max_rows // 2:
                break
    return lo if found else hi


def whole_ms(moment: datetime) -> datetime:
    """`moment` cut to whole milliseconds, the precision of the API's date filter."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
