"""Turn one day's usage dashboard (GET /metrics for [day, day+1)) into daily rows per table."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from concord_pipelines.concord.settings import USAGE_BREAKDOWNS, USAGE_DAILY, TableSpec

Rows = list[dict[str, Any]]


def dashboard_tables(
    dashboard: dict[str, Any], day: date, project_id: str, complete: bool, fetched_at: datetime, organization_id: str
) -> list[tuple[TableSpec, Rows]]:
    if not isinstance(dashboard, dict):
        dashboard = {}
    sessions = _obj(dashboard, "sessions")
    events = _obj(dashboard, "consentEvents")
    requests = _obj(dashboard, "complianceRequests")
    key = {"organization_id": organization_id, "date": day, "project_id": project_id}
    resolution = _obj(requests, "resolutionMetrics")
    daily = {
        **key,
        "sessions": sessions.get("dateRangeTotal"),
        "consent_events": events.get("totalEvents"),
        "total_users": events.get("totalUsers"),
        "full_consent": events.get("fullConsent"),
        "partial_consent": events.get("partialConsent"),
        "no_consent": events.get("noConsent"),
        "total_categories": events.get("totalCategories"),
        "compliance_requests": requests.get("totalRequests", requests.get("dateRangeTotal")),
        "resolution_avg_days": resolution.get("avgResolutionDays"),
        "resolution_median_days": resolution.get("medianResolutionDays"),
        "resolution_min_days": resolution.get("minResolutionDays"),
        "resolution_max_days": resolution.get("maxResolutionDays"),
        "is_complete_day": complete,
        "fetched_at": fetched_at,
    }
    return [
        (USAGE_DAILY, [daily]),
        (USAGE_BREAKDOWNS["browser"], _counts(key, events.get("browserCounts"), "browser")),
        (USAGE_BREAKDOWNS["os"], _counts(key, events.get("osCounts"), "os")),
        (
            USAGE_BREAKDOWNS["geography"],
            _counts({**key, "source": "consent_events"}, events.get("geographyCounts"), "country")
            + _counts({**key, "source": "compliance_requests"}, requests.get("geographyCounts"), "country"),
        ),
        (USAGE_BREAKDOWNS["category"], _nested(key, events.get("categoryStats"), "category", "state", "total")),
        (
            USAGE_BREAKDOWNS["compliance_status"],
            _flat({**key, "request_type": ""}, requests.get("statusStats"), "status")
            + _nested(key, requests.get("statusByType"), "request_type", "status", ""),
        ),
        (USAGE_BREAKDOWNS["compliance_type"], _flat(key, requests.get("typeStats"), "request_type")),
    ]


def _obj(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _counts(key: dict[str, Any], entries: Any, label: str) -> Rows:
    """[{"browser": "Chrome", "count": 3}, ...] -> one row per label (unknown label as '')."""
    rows: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("count"), int | float):
            name = str(entry.get(label) or "")
            rows[name] = rows.get(name, 0) + int(entry["count"])
    return [{**key, label: name, "count": count} for name, count in rows.items()]


def _flat(key: dict[str, Any], stats: Any, label: str) -> Rows:
    """{"resolved": 4, ...} -> one row per entry."""
    if not isinstance(stats, dict):
        return []
    return [{**key, label: str(name), "count": int(v)} for name, v in stats.items() if isinstance(v, int | float)]


def _nested(key: dict[str, Any], stats: Any, outer: str, inner: str, scalar_inner: str) -> Rows:
    """{"disclosure": {"accepted": 3}} -> rows (outer, inner); a bare number gets inner=scalar_inner."""
    if not isinstance(stats, dict):
        return []
    rows: Rows = []
    for name, value in stats.items():
        if isinstance(value, dict):
            rows += _flat({**key, outer: str(name)}, value, inner)
        elif isinstance(value, int | float):
            rows.append({**key, outer: str(name), inner: scalar_inner, "count": int(value)})
    return rows
