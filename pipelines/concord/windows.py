"""Date windows: where an incremental run starts and ends, and how a window is cut into pieces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

# Windows are never split below this: a window this short that still drifts is read as it is.
MIN_WINDOW = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Window:
    """Half-open [start, end) on the API's date filter, in UTC."""

    start: datetime
    end: datetime

    def split(self) -> tuple[Window, Window]:
        middle = self.start + (self.end - self.start) / 2
        return Window(self.start, middle), Window(middle, self.end)

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
