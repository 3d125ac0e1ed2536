"""Pure functions turning a Get Metrics payload (v2..v5) into observation and snapshot rows.

Every metric under `data` is a tree whose time-series nodes carry `currentDay`/`previousDays`
(or `currentMonth`/`previousMonths`). The path from the top-level field to that node, plus any
keys inside the per-day value (HTTP status, onceOff/individual, ...), forms the `dimension`.
A per-day value that is a list is an hourly array (v5 performance), index = hour from local midnight.

Dates: `data.requestTime` converted to the holder's timezone gives the local date D;
`previousDays[i]` is D - (i+1) days, `previousMonths[i]` the (i+1)-th month before D's month.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pendulum

from pipelines.cdr_metrics import settings
from pipelines.cdr_metrics.validation import PayloadError

DAY_KEYS = ("currentDay", "previousDays")
MONTH_KEYS = ("currentMonth", "previousMonths")
SNAPSHOT_FIELDS = frozenset({"requestTime", "customerCount", "recipientCount"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(name: str) -> str:
    """`highPriority` -> `high_priority`, `averageTps` -> `average_tps`, `500` -> `500`."""
    return _CAMEL.sub("_", name).lower()


def request_time(payload: Mapping[str, Any]) -> datetime:
    raw = payload["data"]["requestTime"]
    try:
        parsed = pendulum.parse(raw)
    except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError):
        raise PayloadError("$.data.requestTime", f"not a date-time: {raw!r}") from None
    if not isinstance(parsed, datetime):
        raise PayloadError("$.data.requestTime", f"not a date-time: {raw!r}")
    if parsed.tzinfo is None:  # DateTimeString is RFC 3339 with an offset; assume UTC if a holder omits it
        parsed = parsed.replace(tzinfo=ZoneInfo("UTC"))
    return parsed.astimezone(ZoneInfo("UTC"))


def local_date(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


def previous_day(day: date, i: int) -> date:
    """The date of `previousDays[i]`: i+1 days before `day`."""
    return pendulum.Date(day.year, day.month, day.day).subtract(days=i + 1)


def month_start(day: date, months_back: int = 0) -> date:
    """First day of the month `months_back` months before `day`'s month."""
    index = day.year * 12 + (day.month - 1) - months_back
    return date(index // 12, index % 12 + 1, 1)


def to_number(value: Any, path: str) -> float | int:
    if isinstance(value, bool):
        raise PayloadError(path, f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):  # v4/v5 RateString
        try:
            number = float(value)
        except ValueError:
            raise PayloadError(path, f"not a number: {value!r}") from None
        if not math.isfinite(number):
            raise PayloadError(path, f"not a finite number: {value!r}")
        return number
    raise PayloadError(path, f"expected a number, got {type(value).__name__}")


def observations(
    payload: Mapping[str, Any], version: int, holder: str, timezone: str
) -> Iterator[dict[str, Any]]:
    """One row per observation of one payload (already validated against its version's schema)."""
    at = request_time(payload)
    today = local_date(at, timezone)
    base = {"data_holder": holder, "payload_version": version, "request_time": at}
    for field, node in payload["data"].items():
        if field in SNAPSHOT_FIELDS:
            continue
        for row in _walk(node, [], f"$.data.{field}", today):
            yield {**base, "metric": snake(field), **row}


def _walk(node: Any, dims: list[str], path: str, today: date) -> Iterator[dict[str, Any]]:
    if not isinstance(node, Mapping):
        return  # scalars outside a time series (e.g. activeAuthorisationCount) belong to snapshots
    if any(k in node for k in DAY_KEYS + MONTH_KEYS):
        yield from _series(node, dims, path, today)
        return
    for key, child in node.items():
        yield from _walk(child, [*dims, snake(key)], f"{path}.{key}", today)


def _series(node: Mapping[str, Any], dims: list[str], path: str, today: date) -> Iterator[dict[str, Any]]:
    if (current := node.get("currentDay")) is not None:
        yield from _values(current, dims, f"{path}.currentDay", "day", today, True)
    for i, value in enumerate(node.get("previousDays") or []):
        yield from _values(value, dims, f"{path}.previousDays[{i}]", "day", previous_day(today, i), False)
    if (current := node.get("currentMonth")) is not None:
        yield from _values(current, dims, f"{path}.currentMonth", "month", month_start(today), True)
    for i, value in enumerate(node.get("previousMonths") or []):
        yield from _values(
            value, dims, f"{path}.previousMonths[{i}]", "month", month_start(today, i + 1), False
        )


def _values(
    value: Any, dims: list[str], path: str, grain: str, day: date, partial: bool
) -> Iterator[dict[str, Any]]:
    if value is None:
        return
    if isinstance(value, Mapping):  # keyed by HTTP status, onceOff/ongoing, individual/nonIndividual
        for key, child in value.items():
            yield from _values(child, [*dims, snake(str(key))], f"{path}.{key}", grain, day, partial)
        return
    if isinstance(value, list):  # hourly array from local midnight
        for hour, child in enumerate(value):
            number = to_number(child, f"{path}[{hour}]")
            yield _row(dims, "hour", day, hour, number, partial and hour == len(value) - 1)
        return
    yield _row(dims, grain, day, None, to_number(value, path), partial)


def _row(
    dims: list[str], grain: str, day: date, hour: int | None, value: float | int, partial: bool
) -> dict[str, Any]:
    return {
        "dimension": ".".join(dims),
        "grain": grain,
        "period_date": date(day.year, day.month, day.day),
        "hour": hour,
        "hour_key": settings.NO_HOUR if hour is None else hour,
        "value": float(value),
        "is_partial": partial,
    }


def snapshot(payload: Mapping[str, Any], version: int, holder: str, timezone: str) -> dict[str, Any]:
    data = payload["data"]
    at = request_time(payload)
    active = (data.get("authorisations") or {}).get("activeAuthorisationCount") or {}
    return {
        "data_holder": holder,
        "request_time": at,
        "local_date": local_date(at, timezone),
        "timezone": timezone,
        "payload_version": version,
        "customer_count": data.get("customerCount"),
        "recipient_count": data.get("recipientCount"),
        "active_authorisations_individual": active.get("individual"),
        "active_authorisations_non_individual": active.get("nonIndividual"),
    }
