"""Every filter of every list endpoint agrees with the sandbox's own truth."""

from __future__ import annotations

import httpx
import pytest

from concord_pipelines.sandbox import SandboxServer
from concord_pipelines.sandbox.data import parse_time, to_ms
from tests.sandbox.conftest import fetch_all


@pytest.fixture(scope="module")
def events(shared: SandboxServer) -> list[dict]:
    return shared.state.truth("consent-events")


def ids(items: list[dict]) -> set[str]:
    return {i["id"] for i in items}


@pytest.mark.parametrize(("param", "value", "pick"), [
    ("category", "privacy_setting", lambda e: e["category"]),
    ("consentState", "declined", lambda e: e["consentState"]),
    ("consentAction", "import", lambda e: e["consentAction"]),
    ("label", "Marketing cookies", lambda e: e["label"]),
    ("geography", "GB", lambda e: e["session"]["geography"]),
])
def test_simple_event_filters(api: httpx.Client, org: str, events: list[dict], param: str, value: str,
                              pick: object) -> None:
    expected = {e["id"] for e in events if pick(e) == value}  # type: ignore[operator]
    assert expected, "the data should contain matches"
    assert ids(fetch_all(api, org + "/consent-events", {param: value})) == expected


def test_subcategory_matches_inside_the_array(api: httpx.Client, org: str, events: list[dict]) -> None:
    expected = {e["id"] for e in events if "global_privacy_control" in e["subcategory"]}
    assert expected
    assert ids(fetch_all(api, org + "/consent-events", {"subcategory": "global_privacy_control"})) == expected


@pytest.mark.parametrize("param", ["sessionId", "concordId", "submitter"])
def test_identity_filters(api: httpx.Client, org: str, events: list[dict], param: str) -> None:
    sample = events[17]
    value = sample["session"]["id"] if param == "sessionId" else sample[param]
    key = (lambda e: e["session"]["id"]) if param == "sessionId" else (lambda e: e[param])
    expected = {e["id"] for e in events if key(e) == value}
    assert ids(fetch_all(api, org + "/consent-events", {param: value})) == expected


def test_project_ids_repeated_or_comma_separated(api: httpx.Client, org: str, events: list[dict],
                                                 shared: SandboxServer) -> None:
    p0, p1, _ = (p["id"] for p in shared.state.projects)
    expected = {e["id"] for e in events if e["project"] in (p0, p1)}
    repeated = api.get(org + "/consent-events", params=[("projectIds", p0), ("projectIds", p1), ("limit", 1)])
    assert repeated.json()["total"] == len(expected)
    assert ids(fetch_all(api, org + "/consent-events", {"projectIds": f"{p0},{p1}"})) == expected
    scoped = fetch_all(api, f"{org}/projects/{p1}/consent-events")
    assert ids(scoped) == {e["id"] for e in events if e["project"] == p1}


def test_date_window_is_half_open_on_date_updated(api: httpx.Client, org: str, events: list[dict]) -> None:
    start, end = events[1000]["dateUpdated"], events[2000]["dateUpdated"]
    got = fetch_all(api, org + "/consent-events", {"startDate": start, "endDate": end, "sort": "dateUpdated"})
    lo, hi = parse_time(start), parse_time(end)
    expected = [e["id"] for e in events if lo <= parse_time(e["dateUpdated"]) < hi]
    assert [e["id"] for e in got] == expected
    assert got[0]["dateUpdated"] == start and all(e["dateUpdated"] != end for e in got)


def test_windows_partition_everything(api: httpx.Client, org: str, events: list[dict]) -> None:
    """Consecutive [a, b) windows never lose or double-count an event (what incremental loads rely on)."""
    bounds = ["2000-01-01T00:00:00Z", "2026-11-10T00:00:00Z", "2026-11-20T06:30:00.500Z", "2030-01-01T00:00:00Z"]
    seen: list[str] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        seen += [e["id"] for e in fetch_all(api, org + "/consent-events", {"startDate": a, "endDate": b})]
    assert sorted(seen) == sorted(e["id"] for e in events)


def test_filters_combine(api: httpx.Client, org: str, events: list[dict]) -> None:
    expected = {e["id"] for e in events if e["category"] == "disclosure" and e["consentState"] == "accepted"
                and e["session"]["geography"].startswith("US-CA")}
    got = fetch_all(api, org + "/consent-events",
                    {"category": "disclosure", "consentState": "accepted", "geography": "US-CA", "sort": "consentDate"})
    assert ids(got) == expected
    assert [g["consentDate"] for g in got] == sorted(g["consentDate"] for g in got)


def test_compliance_request_filters(api: httpx.Client, org: str, shared: SandboxServer) -> None:
    truth = shared.state.truth("compliance-requests")
    for param, value in (("status", "resolved"), ("request", "delete"), ("resolutionStatus", "completed"),
                         ("projectIds", truth[0]["project"])):
        field = "project" if param == "projectIds" else param
        expected = {r["id"] for r in truth if r[field] == value}
        assert ids(fetch_all(api, org + "/compliance-requests", {param: value})) == expected, param
    start, end = "2026-11-10T00:00:00Z", "2026-11-20T00:00:00Z"
    expected = {r["id"] for r in truth if parse_time(start) <= r["dateUpdated"] < parse_time(end)}
    assert ids(fetch_all(api, org + "/compliance-requests", {"startDate": start, "endDate": end})) == expected


def test_compliance_request_events(api: httpx.Client, org: str, shared: SandboxServer) -> None:
    truth = shared.state.truth("compliance-requests-events")
    request_id = truth[5]["complianceRequestId"]
    got = fetch_all(api, org + "/compliance-requests-events", {"complianceRequestId": request_id})
    assert ids(got) == {e["id"] for e in truth if e["complianceRequestId"] == request_id}
    start = "2026-11-15T00:00:00Z"
    got = fetch_all(api, org + "/compliance-requests-events", {"startDate": start})
    assert ids(got) == {e["id"] for e in truth if (to_ms(e["dateUpdated"]) or 0) >= parse_time(start)}


def test_project_and_consent_type_filters(api: httpx.Client, org: str, shared: SandboxServer) -> None:
    projects = fetch_all(api, org + "/projects")
    assert len(projects) == 3 and all("_unit" not in p for p in projects)
    assert [p["name"] for p in fetch_all(api, org + "/projects", {"name": "Acme Blog"})] == ["Acme Blog"]
    active = fetch_all(api, org + "/projects", {"status": "active"})
    assert ids(active) == {p["id"] for p in projects if p["status"] == "active"}
    pid = projects[0]["id"]
    types = fetch_all(api, f"{org}/projects/{pid}/consent-types")
    assert len(types) == 7 and all(t["project"] == pid for t in types)
    for param, value in (("category", "disclosure"), ("label", "Analytics cookies"), ("status", "inactive"),
                         ("name", "email_newsletter")):
        got = fetch_all(api, f"{org}/projects/{pid}/consent-types", {param: value})
        assert got and ids(got) == {t["id"] for t in types if t[param] == value}, param


def test_tracker_scan_history_filters(api: httpx.Client, org: str, shared: SandboxServer) -> None:
    config = shared.state.truth("tracker-scan-history")[2]
    path = f"{org}/projects/{config['projectId']}/tracker-scan-history"
    assert [c["id"] for c in fetch_all(api, path)] == [config["id"]]
    assert fetch_all(api, path, {"scheduledHour": config["scheduledHour"], "scheduledScanEnabled": "true"})
    assert not fetch_all(api, path, {"scheduledHour": (config["scheduledHour"] + 1) % 24})
    assert not fetch_all(api, path, {"scanPeriod": "daily"})
