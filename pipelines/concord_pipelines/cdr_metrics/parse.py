"""Pure functions turning a Get Metrics payload (v2..v5) into observation and snapshot rows.

Every metric under `data` is a tree whose time-series nodes carry `currentDay`/`previousDays`
(or `currentMonth`/`previousMonths`). The path from the top-level field to that node, plus any
keys inside the per-day value (HTTP status, onceOff/individual, ...), forms the `dimension`.
A per-day value that is a list is an hourly array (v5 performance), index = hour from local midnight.

Dates: `data.requestTime` converted to the holder's timezone gives the local date D (a time without
offset is the holder's wall time: its own date is D, and the caller warns about it);
`previousDays[i]` is D - (i+1) days, `previousMonths[i]` the (i+1)-th month before D's month.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pendulum

from concord_pipelines.cdr_metrics import settings
from concord_pipelines.cdr_metrics.validation import (
    PayloadError,
    Schema,
    child_schema,
    data_schema,
    item_schema,
)

DAY_KEYS = ("currentDay", "previousDays")
MONTH_KEYS = ("currentMonth", "previousMonths")
SNAPSHOT_FIELDS = frozenset({"requestTime", "customerCount", "recipientCount"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# CDS extensibility: a holder's own field is named `<HID>-name` (HID: the holder's short identifier).
_EXTENSION = re.compile(r"^[A-Za-z0-9]+-.")
Row = dict[str, Any]


def snake(name: str) -> str:
    """`highPriority` -> `high_priority`, `averageTps` -> `average_tps`, `500` -> `500`."""
    return _CAMEL.sub("_", name).lower()


# RFC 3339 date-time (section 5.6): `T`/`Z` in either case (5.6 NOTE: case-insensitive), any number of
# fractional digits, a space instead of `T` (5.6 NOTE). The offset is optional here only so that an
# offset-less time can be recognised and read in the holder's timezone instead of being rejected as garbage.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)


@dataclass(frozen=True)
class RequestTime:
    """`data.requestTime` as an instant (UTC) and as the holder's local date that anchors every series."""

    utc: datetime
    local_date: date
    offset_given: bool  # False: a local wall time without offset, read in the holder's timezone


def read_request_time(raw: Any, timezone: str) -> RequestTime:
    """Parse `requestTime` strictly; an offset-less wall time is taken in `timezone` (never as UTC)."""
    match = _RFC3339.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise PayloadError("$.data.requestTime", f"not an RFC 3339 date-time: {raw!r}")
    frac = (match["frac"] or "")[:6].ljust(6, "0")  # beyond microseconds: truncated
    try:
        wall = datetime.fromisoformat(f"{match['date']}T{match['h']}:{match['m']}:00").replace(
            second=min(int(match["s"]), 59),
            microsecond=int(frac),  # :60 is a leap second
        )
        offset = match["offset"]
        if offset is None:
            local = wall.replace(tzinfo=ZoneInfo(timezone))  # fold=0: the first of a repeated DST hour
            return RequestTime(local.astimezone(UTC), wall.date(), False)
        if offset in ("Z", "z"):
            aware = wall.replace(tzinfo=UTC)
        else:
            aware = datetime.fromisoformat(f"{wall.isoformat()}{offset}")
    except ValueError:
        raise PayloadError("$.data.requestTime", f"not a valid date-time: {raw!r}") from None
    at = aware.astimezone(UTC)
    return RequestTime(at, local_date(at, timezone), True)


def request_time(payload: Mapping[str, Any], timezone: str) -> datetime:
    """`data.requestTime` in UTC (an offset-less value read in `timezone`)."""
    return read_request_time(payload["data"]["requestTime"], timezone).utc


def local_date(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


def previous_day(day: date, i: int) -> date:
    """The date of `previousDays[i]`: i+1 days before `day`."""
    return pendulum.Date(day.year, day.month, day.day).subtract(days=i + 1)


def month_start(day: date, months_back: int = 0) -> date:
    """First day of the month `months_back` months before `day`'s month."""
    index = day.year * 12 + (day.month - 1) - months_back
    return date(index // 12, index % 12 + 1, 1)


class _NotNumeric(Exception):
    """A value of a field the standard does not define is not a number: skip that field, not the holder."""


def to_number(value: Any, path: str, known: bool = True) -> float | int:
    """A number, or PayloadError for a standard field (a broken holder) / _NotNumeric for an unknown one."""
    problem = _number_problem(value)
    if problem is None:
        return float(value) if isinstance(value, str) else value
    if not known:
        raise _NotNumeric(path)
    raise PayloadError(path, problem)


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return f"expected a number, got {value!r}"
    if isinstance(value, int | float):
        return None if math.isfinite(value) else f"not a finite number: {value!r}"
    if isinstance(value, str):  # v4/v5 RateString
        try:
            number = float(value)
        except ValueError:
            return f"not a number: {value!r}"
        return None if math.isfinite(number) else f"not a finite number: {value!r}"
    return f"expected a number, got {type(value).__name__}"


def without_extensions(payload: Mapping[str, Any], skipped: list[str]) -> dict[str, Any]:
    """`payload` minus holder extensions (`<HID>-name` keys anywhere in `data`), each noted in `skipped`.

    Done before schema validation: an extension inside a map the schema types strictly (error counts by
    HTTP status) would otherwise fail the whole holder, though recipients may ignore extensions.
    """
    data = payload.get("data")
    if not isinstance(data, Mapping):
        return dict(payload)
    return {**payload, "data": _strip(data, "$.data", skipped)}


def _strip(node: Any, path: str, skipped: list[str]) -> Any:
    if isinstance(node, Mapping):
        kept = {}
        for key, child in node.items():
            if _EXTENSION.match(str(key)):
                skipped.append(f"{path}.{key} (holder extension)")
            else:
                kept[key] = _strip(child, f"{path}.{key}", skipped)
        return kept
    if isinstance(node, list):
        return [_strip(child, f"{path}[{i}]", skipped) for i, child in enumerate(node)]
    return node


def observations(
    payload: Mapping[str, Any],
    version: int,
    holder: str,
    timezone: str,
    skipped: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per observation of one payload (already validated against its version's schema).

    Fields the standard does not define load as extra metrics when every value is a number; holder
    extensions (`<HID>-name`, CDS extensibility) and non-numeric or undated unknown fields are left
    out and described in `skipped` ("$.data.path (reason)") so the caller can warn about them.
    """
    at = read_request_time(payload["data"]["requestTime"], timezone)
    base = {"data_holder": holder, "payload_version": version, "request_time": at.utc}
    walker = _Walker(at.local_date, skipped if skipped is not None else [])
    schema = data_schema(version)
    for field, node in payload["data"].items():
        if field in SNAPSHOT_FIELDS:
            continue
        for row in walker.child(schema, True, field, node, [], "$.data"):
            yield {**base, "metric": snake(field), **row}


class _Walker:
    """Walks `data` beside its schema: `known` is False inside a field the standard does not define."""

    def __init__(self, today: date, skipped: list[str]) -> None:
        self.today, self.skipped = today, skipped

    def child(
        self, schema: Schema | None, known: bool, key: str, node: Any, dims: list[str], parent: str
    ) -> Iterator[dict[str, Any]]:
        path, sub = f"{parent}.{key}", child_schema(schema, key) if known else None
        if not known or sub is not None:
            yield from self.walk(node, dims, path, sub, known)
        else:
            yield from self.unknown(key, node, path, self.walk(node, dims, path, None, False))

    def unknown(self, key: str, node: Any, path: str, rows: Iterator[Row]) -> list[Row]:
        """All rows of an unknown field, or none (noted in `skipped`) if any value is not a number."""
        if _EXTENSION.match(key):
            self.skipped.append(f"{path} (holder extension)")
            return []
        try:
            out = list(rows)  # a lazy generator: nothing is walked for a holder extension
        except _NotNumeric:
            self.skipped.append(f"{path} (not numeric)")
            return []
        if not out and node not in (None, {}, []):
            self.skipped.append(f"{path} (not a daily/monthly series)")
        return out

    def walk(
        self, node: Any, dims: list[str], path: str, schema: Schema | None, known: bool
    ) -> Iterator[Row]:
        if not isinstance(node, Mapping):
            return  # scalars outside a time series (e.g. activeAuthorisationCount) belong to snapshots
        if any(k in node for k in DAY_KEYS + MONTH_KEYS):
            yield from self.series(node, dims, path, schema, known)
            return
        for key, child in node.items():
            yield from self.child(schema, known, key, child, [*dims, snake(key)], path)

    def series(
        self, node: Mapping[str, Any], dims: list[str], path: str, schema: Schema | None, known: bool
    ) -> Iterator[Row]:
        today = self.today
        for key, value in node.items():
            sub = child_schema(schema, key)
            if key == "currentDay":
                yield from self.values(value, dims, f"{path}.{key}", _Day("day", today, True), sub, known)
            elif key == "currentMonth":
                day = _Day("month", month_start(today), True)
                yield from self.values(value, dims, f"{path}.{key}", day, sub, known)
            elif key in ("previousDays", "previousMonths"):
                items = item_schema(sub)
                for i, item in enumerate(value or []):
                    day = (
                        _Day("day", previous_day(today, i), False)
                        if key == "previousDays"
                        else _Day("month", month_start(today, i + 1), False)
                    )
                    yield from self.values(item, dims, f"{path}.{key}[{i}]", day, items, known)
            elif known:  # an extra key beside the series values: never dated, so never loaded
                yield from self.unknown(key, value, f"{path}.{key}", iter(()))

    def values(
        self, value: Any, dims: list[str], path: str, day: _Day, schema: Schema | None, known: bool
    ) -> Iterator[Row]:
        if value is None:
            return
        if isinstance(value, Mapping):  # keyed by HTTP status, onceOff/ongoing, individual/nonIndividual
            for key, child in value.items():
                sub_dims, sub_path = [*dims, snake(str(key))], f"{path}.{key}"
                sub = child_schema(schema, str(key)) if known else None
                if known and sub is None:
                    yield from self.unknown(
                        str(key), child, sub_path, self.values(child, sub_dims, sub_path, day, None, False)
                    )
                else:
                    yield from self.values(child, sub_dims, sub_path, day, sub, known)
            return
        if isinstance(value, list):  # hourly array from local midnight
            for hour, child in enumerate(value):
                number = to_number(child, f"{path}[{hour}]", known)
                yield _row(dims, "hour", day.day, hour, number, day.partial and hour == len(value) - 1)
            return
        yield _row(dims, day.grain, day.day, None, to_number(value, path, known), day.partial)


@dataclass(frozen=True)
class _Day:
    grain: str
    day: date
    partial: bool


def _row(dims: list[str], grain: str, day: date, hour: int | None, value: float | int, partial: bool) -> Row:
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
    at = read_request_time(data["requestTime"], timezone)
    active = (data.get("authorisations") or {}).get("activeAuthorisationCount") or {}
    return {
        "data_holder": holder,
        "request_time": at.utc,
        "local_date": at.local_date,
        "timezone": timezone,
        "payload_version": version,
        "customer_count": data.get("customerCount"),
        "recipient_count": data.get("recipientCount"),
        "active_authorisations_individual": active.get("individual"),
        "active_authorisations_non_individual": active.get("nonIndividual"),
    }
