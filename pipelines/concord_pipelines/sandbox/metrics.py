"""The usage-metrics dashboard object, computed from the sandbox's own events so the numbers agree.

Definitions (the reference gives only the shape):
* consent events count when `consentDate` is in [startDate, endDate); compliance requests when
  `requestDate` is; `project` (repeatable) restricts both.
* sessions = distinct `session.id` of those events; daily counts are per UTC day of consentDate.
* fullConsent / partialConsent / noConsent are counted **per session**: a session is full when every
  one of its events in range is `accepted` or `implied`, none when no event is, partial otherwise; the
  three add up to sessions.dateRangeTotal.
* totalUsers = distinct `concordId`; browser / os come from the user agent; country = session.geography.
* trend compares with the previous range of equal length: percentage = (current - previous) / previous
  * 100 (100.0 when previous is 0 and current is not), direction up | down | flat.
* complianceRequests.totalRequests counts all requests of the selected projects regardless of date,
  dateRangeTotal those with requestDate in range; the other stats cover the range.
* Daily series list every UTC day of the range (zeros included) when it spans at most 400 days, else
  only days with data.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from concord_pipelines.sandbox import data as d

CONSENTING = frozenset(("accepted", "implied"))


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _days(start: int, end: int, counts: Counter[str]) -> list[dict]:
    if end <= start:
        return []  # an empty range (also at year 1, where the day before does not exist)
    if end - start <= 400 * d.DAY_MS:
        first = datetime.fromtimestamp(start / 1000, UTC).date()
        last = datetime.fromtimestamp((end - 1) / 1000, UTC).date()
        days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    else:
        days = sorted(counts)
    return [{"date": day, "count": counts.get(day, 0)} for day in days]


def trend(current: int, previous: int) -> dict:
    if previous == 0:
        pct = 0.0 if current == 0 else 100.0
    else:
        pct = round((current - previous) / previous * 100, 2)
    return {"percentage": pct, "direction": "up" if pct > 0 else "down" if pct < 0 else "flat"}


def _counts(counter: Counter[str], label: str) -> list[dict]:
    return [{label: key, "count": n} for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _events_in(rows: Iterable[d.EventRow], start: int, end: int, projects: frozenset[str] | None) -> list[dict]:
    return [r.item for r in rows if start <= r.cdate < end and (projects is None or r.item["project"] in projects)]


def consent_metrics(rows: list[d.EventRow], start: int, end: int, projects: frozenset[str] | None) -> tuple[dict, dict]:
    """(sessions block, consentEvents block)."""
    items = _events_in(rows, start, end, projects)
    previous = _events_in(rows, start - (end - start), start, projects)
    by_session: dict[str, list[str]] = defaultdict(list)
    session_days: dict[str, set[str]] = defaultdict(set)
    daily: Counter[str] = Counter()
    browsers: Counter[str] = Counter()
    oses: Counter[str] = Counter()
    geos: Counter[str] = Counter()
    cats: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        sess = item["session"]
        day = item["consentDate"][:10]
        by_session[sess["id"]].append(item["consentState"])
        session_days[day].add(sess["id"])
        daily[day] += 1
        browser, os_name = d.UA_INFO.get(sess["userAgent"], ("Other", "Other"))
        browsers[browser] += 1
        oses[os_name] += 1
        geos[sess["geography"]] += 1
        cats[item["category"]]["total"] += 1
        cats[item["category"]][item["consentState"]] += 1
    full = sum(1 for states in by_session.values() if all(s in CONSENTING for s in states))
    none = sum(1 for states in by_session.values() if not any(s in CONSENTING for s in states))
    prev_sessions = len({i["session"]["id"] for i in previous})
    sessions = {
        "dailySessionCounts": _days(start, end, Counter({k: len(v) for k, v in session_days.items()})),
        "dateRangeTotal": len(by_session),
        "trend": trend(len(by_session), prev_sessions),
    }
    events = {
        "browserCounts": _counts(browsers, "browser"),
        "categoryStats": {c: {k: n[k] for k in ("total", *d.CONSENT_STATES)} for c, n in sorted(cats.items())},
        "dailyEventCounts": _days(start, end, daily),
        "fullConsent": full,
        "geographyCounts": _counts(geos, "country"),
        "noConsent": none,
        "osCounts": _counts(oses, "os"),
        "partialConsent": len(by_session) - full - none,
        "totalCategories": len(cats),
        "totalEvents": len(items),
        "totalUsers": len({i["concordId"] for i in items}),
        "trend": trend(len(items), len(previous)),
        "trendData": {"current": len(items), "previous": len(previous)},
    }
    return sessions, events


def compliance_metrics(requests: list[dict], start: int, end: int, projects: frozenset[str] | None) -> dict:
    selected = [r for r in requests if projects is None or r["project"] in projects]
    items = [r for r in selected if start <= r["requestDate"] < end]
    previous = sum(1 for r in selected if start - (end - start) <= r["requestDate"] < start)
    durations = [((d.to_ms(r["resolvedDate"]) or 0) - r["requestDate"]) / d.DAY_MS
                 for r in items if r["status"] == "resolved" and r["resolvedDate"]]
    status_by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for r in items:
        status_by_type[r["request"]][r["status"]] += 1
    return {
        "dailyRequestCounts": _days(start, end, Counter(_day(r["requestDate"]) for r in items)),
        "dateRangeTotal": len(items),
        "geographyCounts": _counts(Counter(r["session"]["geography"] for r in items), "country"),
        "resolutionMetrics": {
            "avgResolutionDays": round(statistics.fmean(durations), 2) if durations else 0,
            "medianResolutionDays": round(statistics.median(durations), 2) if durations else 0,
            "minResolutionDays": round(min(durations), 2) if durations else 0,
            "maxResolutionDays": round(max(durations), 2) if durations else 0,
        },
        "statusStats": dict(Counter(r["status"] for r in items)),
        "statusByType": {k: dict(v) for k, v in sorted(status_by_type.items())},
        "totalRequests": len(selected),
        "trend": trend(len(items), previous),
        "trendData": {"current": len(items), "previous": previous},
        "typeStats": dict(Counter(r["request"] for r in items)),
    }


def dashboard(rows: list[d.EventRow], requests: list[dict], start: int, end: int,
              projects: frozenset[str] | None) -> dict:
    sessions, events = consent_metrics(rows, start, end, projects)
    return {"sessions": sessions, "consentEvents": events,
            "complianceRequests": compliance_metrics(requests, start, end, projects)}
