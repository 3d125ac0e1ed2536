"""The metrics dashboard agrees with the consent events and compliance requests it summarises."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from concord_pipelines.sandbox import SandboxServer
from concord_pipelines.sandbox.data import UA_INFO, parse_time

START, END = "2026-11-05T00:00:00Z", "2026-11-19T00:00:00Z"


@pytest.fixture(scope="module")
def metrics(api: httpx.Client, org: str) -> dict:
    r = api.get(org + "/metrics", params={"startDate": START, "endDate": END})
    assert r.status_code == 200
    return r.json()


@pytest.fixture(scope="module")
def in_range(shared: SandboxServer) -> list[dict]:
    lo, hi = parse_time(START), parse_time(END)
    return [e for e in shared.state.truth("consent-events") if lo <= parse_time(e["consentDate"]) < hi]


def test_event_totals(metrics: dict, in_range: list[dict]) -> None:
    ce = metrics["consentEvents"]
    assert ce["totalEvents"] == len(in_range) > 0
    assert ce["totalUsers"] == len({e["concordId"] for e in in_range})
    assert sum(b["count"] for b in ce["browserCounts"]) == ce["totalEvents"]
    assert sum(o["count"] for o in ce["osCounts"]) == ce["totalEvents"]
    assert sum(g["count"] for g in ce["geographyCounts"]) == ce["totalEvents"]
    assert sum(day["count"] for day in ce["dailyEventCounts"]) == ce["totalEvents"]
    assert len(ce["dailyEventCounts"]) == 14 and ce["dailyEventCounts"][0]["date"] == "2026-11-05"
    assert ce["trend"]["direction"] in ("up", "down", "flat") and isinstance(ce["trend"]["percentage"], float)


def test_browsers_and_categories(metrics: dict, in_range: list[dict]) -> None:
    ce = metrics["consentEvents"]
    browsers = Counter(UA_INFO[e["session"]["userAgent"]][0] for e in in_range)
    assert {b["browser"]: b["count"] for b in ce["browserCounts"]} == dict(browsers)
    cats = Counter(e["category"] for e in in_range)
    assert ce["totalCategories"] == len(cats)
    for name, stats in ce["categoryStats"].items():
        assert stats["total"] == cats[name]
        assert stats["total"] == sum(stats[s] for s in ("accepted", "declined", "implied", "viewed"))


def test_sessions_and_consent_split(metrics: dict, in_range: list[dict]) -> None:
    sessions = {e["session"]["id"] for e in in_range}
    assert metrics["sessions"]["dateRangeTotal"] == len(sessions)
    ce = metrics["consentEvents"]
    assert ce["fullConsent"] + ce["partialConsent"] + ce["noConsent"] == len(sessions)
    assert min(ce["fullConsent"], ce["partialConsent"], ce["noConsent"]) > 0


def test_compliance_block(metrics: dict, shared: SandboxServer) -> None:
    lo, hi = parse_time(START), parse_time(END)
    requests = [r for r in shared.state.truth("compliance-requests") if lo <= r["requestDate"] < hi]
    cr = metrics["complianceRequests"]
    assert cr["dateRangeTotal"] == len(requests) == sum(d["count"] for d in cr["dailyRequestCounts"])
    assert cr["statusStats"] == dict(Counter(r["status"] for r in requests))
    assert cr["typeStats"] == dict(Counter(r["request"] for r in requests))
    assert sum(sum(v.values()) for v in cr["statusByType"].values()) == len(requests)
    rm = cr["resolutionMetrics"]
    assert 0 < rm["minResolutionDays"] <= rm["medianResolutionDays"] <= rm["maxResolutionDays"]


def test_project_filter(api: httpx.Client, org: str, shared: SandboxServer, in_range: list[dict]) -> None:
    pid = shared.state.projects[1]["id"]
    r = api.get(org + "/metrics", params={"startDate": START, "endDate": END, "project": pid}).json()
    assert r["consentEvents"]["totalEvents"] == sum(1 for e in in_range if e["project"] == pid)
