"""Expected contents of the dbt marts (and their v1_* view names), computed in plain Python from the sandbox's truth (`sb.state`).

Nothing here runs SQL or uses the connector's own parsers, so a wrong view cannot agree with itself.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

CATEGORIES = ("analytics", "do_not_sell", "functional", "global_privacy_control", "ignored", "limit_pii_use",
              "marketing", "strictly_necessary", "unclassified")


def when(value: Any) -> datetime | None:
    """ISO string, epoch seconds or epoch milliseconds -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if abs(value) >= 1e11 else value, tz=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day(value: Any) -> date | None:
    moment = when(value)
    return moment.astimezone(UTC).date() if moment else None


def daily_consent_rate(state: Any) -> dict[tuple, dict[str, Any]]:
    """(day, project_id, geography) -> counts and consent_rate."""
    names = {p["id"]: p["name"] for p in state.truth("projects")}
    out: dict[tuple, dict[str, Any]] = {}
    for e in state.truth("consent-events"):
        d = day(e.get("consentDate"))
        if d is None:
            continue
        geo = (e.get("session") or {}).get("geography") or "unknown"
        row = out.setdefault((d, e["project"], geo), {"project_name": names.get(e["project"]), "events": 0,
                                                      "accepted": 0, "declined": 0, "implied": 0, "viewed": 0})
        row["events"] += 1
        if e["consentState"] in ("accepted", "declined", "implied", "viewed"):
            row[e["consentState"]] += 1
    for row in out.values():
        decisions = row["accepted"] + row["declined"]
        row["consent_rate"] = row["accepted"] / decisions if decisions else None
    return out


def daily_decline_trend(state: Any) -> dict[tuple, dict[str, Any]]:
    """(day, project_id) -> declined, decisions, share, and the 7-calendar-day sums ending that day."""
    daily: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for e in state.truth("consent-events"):
        d = day(e.get("consentDate"))
        if d is None or e["consentState"] not in ("accepted", "declined"):
            continue
        counts = daily[(d, e["project"])]
        counts[0] += e["consentState"] == "declined"
        counts[1] += 1
    out = {}
    for (d, project), (declined, decisions) in daily.items():
        window = [daily.get((d - timedelta(days=k), project)) for k in range(7)]
        declined_7d = sum(w[0] for w in window if w)
        decisions_7d = sum(w[1] for w in window if w)
        out[(d, project)] = {"declined": declined, "decisions": decisions, "decline_share": declined / decisions,
                             "declined_7d": declined_7d, "decisions_7d": decisions_7d,
                             "decline_share_7d": declined_7d / decisions_7d}
    return out


def compliance_resolution_time(state: Any) -> dict[tuple, dict[str, Any]]:
    """(request_type,) -> requests, resolved, avg/median/min/max days."""
    groups: dict[str, list] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for r in state.truth("compliance-requests"):
        counts[r["request"]] += 1
        start, end = when(r.get("requestDate")), when(r.get("resolvedDate"))
        if start and end:
            groups[r["request"]].append((end - start).total_seconds() / 86400)
        elif end:
            groups[r["request"]].append(None)  # resolved but no request date: counted, no duration
    out = {}
    for request, n in counts.items():
        durations = [x for x in groups.get(request, []) if x is not None]
        out[(request,)] = {
            "requests": n,
            "resolved": len(groups.get(request, [])),
            "avg_days": statistics.fmean(durations) if durations else None,
            "median_days": statistics.median(durations) if durations else None,
            "min_days": min(durations) if durations else None,
            "max_days": max(durations) if durations else None,
        }
    return out


def tracker_category_trends(state: Any) -> dict[tuple, dict[str, Any]]:
    """(scan_day,) -> scans, projects, total and each category summed over completed scans."""
    out: dict[tuple, dict[str, Any]] = {}
    projects: dict[tuple, set] = defaultdict(set)
    for config in state.truth("tracker-scan-history"):
        for scan in config.get("scanHistory") or []:
            if scan.get("status") != "completed":
                continue
            key = (day(scan["date"]),)
            results = scan.get("results") or {}
            cats = results.get("categories") or {}
            row = out.setdefault(key, {"scans": 0, "total": 0, **dict.fromkeys(CATEGORIES, 0)})
            row["scans"] += 1
            row["total"] += results.get("total") or 0
            for c in CATEGORIES:
                row[c] += cats.get(c) or 0
            projects[key].add(config["projectId"])
    for key, row in out.items():
        row["projects"] = len(projects[key])
    return out


def consent_state(state: Any) -> dict[tuple, dict[str, Any]]:
    """(concord_id, category) -> the state of the visitor's newest event there (by consentDate, then
    dateUpdated, version, id) and how many events they have in that category."""
    newest: dict[tuple, tuple] = {}
    events: dict[tuple, int] = defaultdict(int)
    for e in state.truth("consent-events"):
        moment = when(e.get("consentDate"))
        if not e.get("concordId") or moment is None:
            continue
        key = (e["concordId"], e.get("category") or "unknown")
        events[key] += 1
        rank = (moment, when(e.get("dateUpdated")) or datetime.min.replace(tzinfo=UTC), e.get("version") or 0, e["id"])
        if key not in newest or rank > newest[key][0]:
            newest[key] = (rank, e)
    return {key: {"consent_state": e["consentState"], "consent_event_id": e["id"], "events": events[key]}
            for key, (_, e) in newest.items()}


EXPECTED = {
    "concord_daily_consent_rate": (daily_consent_rate, ("day", "project_id", "geography")),
    "concord_daily_decline_trend": (daily_decline_trend, ("day", "project_id")),
    "concord_compliance_resolution_time": (compliance_resolution_time, ("request_type",)),
    "concord_tracker_category_trends": (tracker_category_trends, ("scan_day",)),
    "concord_consent_state": (consent_state, ("concord_id", "category")),
}
# The v1_* names kept for one release are views over the marts: the same answers.
V1_VIEWS = {f"v1_{name.removeprefix('concord_')}": name for name in list(EXPECTED)[:4]}
EXPECTED.update({v1: EXPECTED[mart] for v1, mart in V1_VIEWS.items()})
MARTS = tuple(EXPECTED)


def assert_view_matches(view: str, columns: list[str], rows: list[tuple], state: Any) -> None:
    """Rows of `view` (as dicts by column) equal the Python truth, floats to 1e-6."""
    compute, key_cols = EXPECTED[view]
    expected = compute(state)
    actual = {}
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        key = tuple(_plain(record.pop(k)) for k in key_cols)
        assert key not in actual, f"{view}: duplicate key {key}"
        actual[key] = record
    assert set(actual) == set(expected), (
        f"{view}: keys differ; missing {sorted(set(expected) - set(actual))[:5]}, "
        f"unexpected {sorted(set(actual) - set(expected))[:5]}")
    for key, want in expected.items():
        got = actual[key]
        for col, value in want.items():
            assert col in got, f"{view}: column {col} missing"
            assert _close(_plain(got[col]), value), f"{view} {key} {col}: got {got[col]!r}, expected {value!r}"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if hasattr(value, "is_finite") and hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return value


def _close(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, float) or isinstance(got, float):
        return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-6)
    return got == want
