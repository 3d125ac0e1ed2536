"""Pure functions: snake_case, date anchoring (month/year ends, DST north and south), hourly arrays, values."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from concord_pipelines.cdr_metrics import parse
from concord_pipelines.cdr_metrics.validation import PayloadError, validate_payload
from concord_pipelines.sandbox.cdr_holder import hours_in_day

DOC = Path("/work/shared/api-docs/cdr-get-metrics-v2.md")


def payload(request_time: str, **data: Any) -> dict[str, Any]:
    return {"data": {"requestTime": request_time, **data}, "links": {"self": "https://x"}}


def rows(p: dict[str, Any], version: int = 5, tz: str = "Australia/Sydney") -> list[dict[str, Any]]:
    return list(parse.observations(p, version, "h", tz))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("highPriority", "high_priority"),
        ("averageTps", "average_tps"),
        ("sessionCount", "session_count"),
        ("nonIndividual", "non_individual"),
        ("newAuthorisationCount", "new_authorisation_count"),
        ("500", "500"),
        ("errors", "errors"),
    ],
)
def test_snake(name: str, expected: str) -> None:
    assert parse.snake(name) == expected


@pytest.mark.parametrize(
    ("request_time", "tz", "today", "yesterday", "last_month"),
    [
        # month end: 13:00 on 1 March in Sydney; yesterday is 28 Feb (2026 is not a leap year)
        ("2026-03-01T02:00:00Z", "Australia/Sydney", date(2026, 3, 1), date(2026, 2, 28), date(2026, 2, 1)),
        # year end: already 1 Jan 2027 in Sydney, still 31 Dec in New York
        ("2026-12-31T14:00:00Z", "Australia/Sydney", date(2027, 1, 1), date(2026, 12, 31), date(2026, 12, 1)),
        (
            "2026-12-31T14:00:00Z",
            "America/New_York",
            date(2026, 12, 31),
            date(2026, 12, 30),
            date(2026, 11, 1),
        ),
        # Sydney DST starts 4 Oct 2026 02:00 (+10 -> +11): 13:30Z is 00:30 on the 5th, 12:30Z is 23:30 on the 4th
        ("2026-10-04T13:30:00Z", "Australia/Sydney", date(2026, 10, 5), date(2026, 10, 4), date(2026, 9, 1)),
        ("2026-10-04T12:30:00Z", "Australia/Sydney", date(2026, 10, 4), date(2026, 10, 3), date(2026, 9, 1)),
        # Sydney DST ends 5 Apr 2026 03:00 (+11 -> +10): 14:30Z is 00:30 on the 6th
        ("2026-04-05T14:30:00Z", "Australia/Sydney", date(2026, 4, 6), date(2026, 4, 5), date(2026, 3, 1)),
        # New York DST starts 8 Mar 2026 (-5 -> -4): 04:30Z is 23:30 on the 7th, 05:30Z is 00:30 on the 8th
        ("2026-03-08T04:30:00Z", "America/New_York", date(2026, 3, 7), date(2026, 3, 6), date(2026, 2, 1)),
        ("2026-03-08T05:30:00Z", "America/New_York", date(2026, 3, 8), date(2026, 3, 7), date(2026, 2, 1)),
        # London falls back 25 Oct 2026: 23:30Z on the 25th is 23:30 GMT, still the 25th
        ("2026-10-25T23:30:00Z", "Europe/London", date(2026, 10, 25), date(2026, 10, 24), date(2026, 9, 1)),
        # offsets in requestTime are honoured
        (
            "2026-11-23T09:30:00+11:00",
            "Australia/Sydney",
            date(2026, 11, 23),
            date(2026, 11, 22),
            date(2026, 10, 1),
        ),
    ],
)
def test_dates_anchor_on_local_request_date(
    request_time: str, tz: str, today: date, yesterday: date, last_month: date
) -> None:
    p = payload(
        request_time,
        sessionCount={"currentDay": 5, "previousDays": [4, 3]},
        availability={"currentMonth": 0.99, "previousMonths": [0.98, 0.97]},
    )
    by = {(r["metric"], r["period_date"]): r["value"] for r in rows(p, 2, tz)}
    assert by[("session_count", today)] == 5
    assert by[("session_count", yesterday)] == 4
    assert by[("availability", today.replace(day=1))] == 0.99
    assert by[("availability", last_month)] == 0.98
    months = sorted(d for m, d in by if m == "availability")
    assert months[0] == date(last_month.year - (last_month.month == 1), (last_month.month - 2) % 12 + 1, 1)


def test_month_start_crosses_years() -> None:
    assert parse.month_start(date(2027, 1, 15), 1) == date(2026, 12, 1)
    assert parse.month_start(date(2027, 1, 15), 13) == date(2025, 12, 1)
    assert parse.month_start(date(2026, 3, 31), 0) == date(2026, 3, 1)


def test_hourly_arrays_shorter_than_24_and_dst_days() -> None:
    # 05:30 on 5 Oct 2026 in Sydney; yesterday (4 Oct) had 23 hours
    p = payload(
        "2026-10-04T18:30:00Z",
        performance={
            "aggregate": {"currentDay": "0.99", "previousDays": ["0.98"]},
            "highPriority": {
                "currentDay": ["0.9", "0.91", "0.92", "0.93", "0.94"],
                "previousDays": [["0.8"] * 23],
            },
        },
    )
    got = rows(p)
    hourly = [r for r in got if r["grain"] == "hour"]
    today = [r for r in hourly if r["period_date"] == date(2026, 10, 5)]
    assert [r["hour"] for r in today] == [0, 1, 2, 3, 4]
    assert [r["value"] for r in today] == [0.9, 0.91, 0.92, 0.93, 0.94]
    assert [r["is_partial"] for r in today] == [False] * 4 + [True]
    assert len([r for r in hourly if r["period_date"] == date(2026, 10, 4)]) == 23
    assert all(r["dimension"] == "high_priority" and r["hour_key"] == r["hour"] for r in hourly)
    daily = [r for r in got if r["grain"] == "day"]
    assert {(r["dimension"], r["period_date"], r["value"], r["hour"], r["hour_key"]) for r in daily} == {
        ("aggregate", date(2026, 10, 5), 0.99, None, -1),
        ("aggregate", date(2026, 10, 4), 0.98, None, -1),
    }


def test_errors_by_status_and_nested_authorisations() -> None:
    p = payload(
        "2026-11-23T00:00:00Z",
        errors={
            "aggregate": {"currentDay": 3, "previousDays": [22]},
            "unauthenticated": {"currentDay": {"500": 2, "503": 1}, "previousDays": [{"500": 20}]},
            "authenticated": {"currentDay": None, "previousDays": [{}]},
        },
        authorisations={
            "activeAuthorisationCount": {"individual": 5, "nonIndividual": 1},
            "newAuthorisationCount": {
                "currentDay": {
                    "onceOff": {"individual": 1, "nonIndividual": 0},
                    "ongoing": {"individual": 2, "nonIndividual": 3},
                }
            },
        },
    )
    got = {(r["metric"], r["dimension"], r["period_date"]): r["value"] for r in rows(p, 4)}
    assert got[("errors", "unauthenticated.500", date(2026, 11, 23))] == 2
    assert got[("errors", "unauthenticated.503", date(2026, 11, 23))] == 1
    assert got[("errors", "unauthenticated.500", date(2026, 11, 22))] == 20
    assert got[("errors", "aggregate", date(2026, 11, 22))] == 22
    assert got[("authorisations", "new_authorisation_count.ongoing.non_individual", date(2026, 11, 23))] == 3
    assert not any(k[1].startswith("active") for k in got)  # point-in-time counts go to snapshots
    assert not any(k[1].startswith("authenticated") for k in got)
    snap = parse.snapshot(p, 4, "h", "Australia/Sydney")
    assert snap["active_authorisations_individual"] == 5 and snap["active_authorisations_non_individual"] == 1


def test_rate_strings_become_numbers_and_garbage_is_reported_with_path() -> None:
    p = payload("2026-11-23T00:00:00Z", performance={"currentDay": "0.9950", "previousDays": ["1", "0.5"]})
    assert [r["value"] for r in rows(p, 4)] == [0.995, 1.0, 0.5]
    bad = payload("2026-11-23T00:00:00Z", performance={"currentDay": "n/a"})
    with pytest.raises(PayloadError) as err:
        rows(bad, 4)
    assert err.value.path == "$.data.performance.currentDay"


def _doc_v2_example() -> dict[str, Any]:
    text = DOC.read_text()
    block = re.search(r"## Schemas.*?```json\n(.*?)```", text, re.S)
    assert block
    return json.loads(block.group(1))


def test_v2_doc_example_validates_and_parses() -> None:
    doc = _doc_v2_example()
    doc["data"]["requestTime"] = "2026-11-23T00:00:00Z"
    validate_payload(doc, 2)
    got = rows(doc, 2)
    assert {r["metric"] for r in got} == {
        "availability", "performance", "invocations", "average_response", "session_count",
        "average_tps", "peak_tps", "errors", "rejections",
    }  # fmt: skip
    assert len(got) == 2 * (1 + 1 + 5 + 5 + 1 + 1 + 1 + 1 + 2)


@pytest.mark.parametrize(
    ("version", "mutate", "path"),
    [
        (2, lambda d: d["invocations"].pop("highPriority"), "$.data.invocations"),
        (
            3,
            lambda d: d["invocations"]["highPriority"].update(currentDay="lots"),
            "$.data.invocations.highPriority.currentDay",
        ),
        (
            4,
            lambda d: d["availability"]["aggregate"].update(currentMonth=0.99),
            "$.data.availability.aggregate.currentMonth",
        ),
        (
            5,
            lambda d: d["performance"]["highPriority"]["previousDays"][2].append(7),
            "$.data.performance.highPriority.previousDays[2][24]",
        ),
    ],
)
def test_schema_violations_name_the_path(version: int, mutate: Any, path: str) -> None:
    from datetime import UTC, datetime

    from concord_pipelines.sandbox.cdr_holder import metrics_data

    data = metrics_data(1, datetime(2026, 11, 23, tzinfo=UTC), "Australia/Sydney", version, "ALL")
    good = {"data": data, "links": {"self": "x"}}
    validate_payload(good, version)
    mutate(data)
    with pytest.raises(PayloadError) as err:
        validate_payload(good, version)
    assert err.value.path == path


def test_hours_in_day_follow_dst() -> None:
    from zoneinfo import ZoneInfo

    syd, ny = ZoneInfo("Australia/Sydney"), ZoneInfo("America/New_York")
    assert hours_in_day(date(2026, 10, 4), syd) == 23
    assert hours_in_day(date(2026, 4, 5), syd) == 25
    assert hours_in_day(date(2026, 11, 23), syd) == 24
    assert hours_in_day(date(2026, 3, 8), ny) == 23
    assert hours_in_day(date(2026, 11, 1), ny) == 25


@pytest.mark.parametrize("version", [2, 3, 4, 5])
@pytest.mark.parametrize("period", ["ALL", "CURRENT", "HISTORIC"])
def test_sandbox_payloads_validate_and_are_deterministic(version: int, period: str) -> None:
    from datetime import UTC, datetime

    from concord_pipelines.sandbox.cdr_holder import metrics_data

    moments = [
        datetime(2026, 10, 4, 18, 30, tzinfo=UTC),  # Sydney, day after DST start
        datetime(2026, 4, 5, 13, 59, tzinfo=UTC),  # Sydney, 23:59 on the 25-hour day
        datetime(2026, 12, 31, 13, 0, tzinfo=UTC),  # midnight of New Year in Sydney: empty hourly array
    ]
    for now in moments:
        for tz in ("Australia/Sydney", "America/New_York"):
            data = metrics_data(7, now, tz, version, period)
            validate_payload({"data": data, "links": {"self": "x"}, "meta": {}}, version)
            assert data == metrics_data(7, now, tz, version, period)
            assert data != metrics_data(8, now, tz, version, period)
            if version == 5 and period != "HISTORIC":
                hours = len(data["performance"]["highPriority"]["currentDay"])
                local = now.astimezone(ZoneInfo(tz))
                midnight = datetime.combine(local.date(), datetime.min.time(), ZoneInfo(tz))
                elapsed = int((now - midnight).total_seconds() // 3600)  # 24 at 23:59 on a 25-hour day
                assert hours == elapsed < hours_in_day(local.date(), ZoneInfo(tz))


@pytest.mark.parametrize(
    ("raw", "utc", "offset_given"),
    [
        ("2026-11-22T22:30:00Z", "2026-11-22T22:30:00+00:00", True),
        ("2026-11-22t22:30:00z", "2026-11-22T22:30:00+00:00", True),
        ("2026-11-22 22:30:00Z", "2026-11-22T22:30:00+00:00", True),
        ("2026-11-22T22:30:00.5Z", "2026-11-22T22:30:00.500000+00:00", True),
        ("2026-11-22T22:30:00.123456789z", "2026-11-22T22:30:00.123456+00:00", True),
        ("2026-11-23T09:30:00+11:00", "2026-11-22T22:30:00+00:00", True),
        ("2026-11-22T17:30:00-05:00", "2026-11-22T22:30:00+00:00", True),
        ("2026-11-22T22:30:00-00:00", "2026-11-22T22:30:00+00:00", True),  # UTC, local offset unknown
        ("2026-12-31T23:59:60Z", "2026-12-31T23:59:59+00:00", True),  # a leap second
        # no offset: the holder's wall time (Sydney, UTC+11 in November), never UTC
        ("2026-11-23T09:30:00", "2026-11-22T22:30:00+00:00", False),
        ("2026-11-23T14:30:00.25", "2026-11-23T03:30:00.250000+00:00", False),
    ],
)
def test_request_time_is_rfc3339(raw: str, utc: str, offset_given: bool) -> None:
    got = parse.read_request_time(raw, "Australia/Sydney")
    assert got.utc.isoformat() == utc and got.offset_given is offset_given


def test_offset_less_request_time_keeps_its_wall_date() -> None:
    # 14:30 in Sydney: read as UTC it would be 01:30 on the 24th there, every series one day late
    p = payload("2026-11-23T14:30:00", sessionCount={"currentDay": 5, "previousDays": [4]})
    assert {(r["period_date"], r["value"]) for r in rows(p, 2)} == {
        (date(2026, 11, 23), 5),
        (date(2026, 11, 22), 4),
    }
    assert parse.snapshot(p, 2, "h", "Australia/Sydney")["local_date"] == date(2026, 11, 23)
    perth = parse.read_request_time("2026-11-23T23:30:00", "Australia/Perth")
    assert (perth.local_date, perth.utc.isoformat()) == (date(2026, 11, 23), "2026-11-23T15:30:00+00:00")


@pytest.mark.parametrize(
    "raw",
    [
        "2026-11-23",
        "2026-11-23T09:30Z",  # seconds are not optional
        "20261123T093000Z",
        "2026-11-23T09:30:00+1100",
        "2026-11-23T09:30:00+24:00",
        "2026-02-30T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T09:30:00.Z",
        "2026-11-23T09:30:00ZZ",
        "Mon, 23 Nov 2026 09:30:00 GMT",
        1795000000,
    ],
)
def test_request_time_rejects_what_is_not_rfc3339(raw: Any) -> None:
    with pytest.raises(PayloadError) as err:
        parse.read_request_time(raw, "Australia/Sydney")
    assert err.value.path == "$.data.requestTime"


def test_unknown_fields_load_when_numeric_and_are_named_when_skipped() -> None:
    p = payload(
        "2026-11-23T00:00:00Z",
        sessionCount={"currentDay": 5, "previousDays": [4], "xyz-target": 9},
        invocations={
            "highPriority": {"currentDay": 3},
            "xyz-premium": {"currentDay": 1},
            "burst": {"currentDay": 2},
        },
        errors={"aggregate": {"currentDay": {"500": 1, "xyz-note": "restart"}}},
        **{
            "xyz-flag": True,
            "colour": {"currentDay": "green"},
            "uptime": 5,
            "hourlyThing": {"currentDay": [1, "x"]},
        },
    )
    skipped: list[str] = []
    got = {
        (r["metric"], r["dimension"], r["period_date"]): r["value"]
        for r in parse.observations(p, 5, "h", "UTC", skipped)
    }
    assert got[("invocations", "burst", date(2026, 11, 23))] == 2  # unknown tier, numeric: loads
    assert got[("session_count", "", date(2026, 11, 22))] == 4
    assert got[("errors", "aggregate.500", date(2026, 11, 23))] == 1
    assert not any("xyz" in d or m in ("colour", "uptime", "hourly_thing") for m, d, _ in got)
    assert skipped == [
        "$.data.sessionCount.xyz-target (holder extension)",
        "$.data.invocations.xyz-premium (holder extension)",
        "$.data.errors.aggregate.currentDay.xyz-note (holder extension)",
        "$.data.xyz-flag (holder extension)",
        "$.data.colour (not numeric)",
        "$.data.uptime (not a daily/monthly series)",
        "$.data.hourlyThing (not numeric)",
    ]


def test_sandbox_payloads_have_nothing_unknown() -> None:
    from datetime import UTC, datetime

    from concord_pipelines.sandbox.cdr_holder import metrics_data

    for version in (2, 3, 4, 5):
        skipped: list[str] = []
        data = metrics_data(3, datetime(2026, 11, 23, tzinfo=UTC), "Australia/Sydney", version, "ALL")
        assert list(parse.observations({"data": data}, version, "h", "Australia/Sydney", skipped))
        assert skipped == [], version
