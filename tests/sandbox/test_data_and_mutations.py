"""Deterministic data with the documented shapes; mutations through Python and the admin endpoints."""

from __future__ import annotations

import re
from collections import Counter

import httpx

from concord_pipelines.sandbox import SandboxConfig, SandboxServer, SandboxState
from concord_pipelines.sandbox.data import DAY_MS, parse_time
from tests.sandbox.conftest import NOW, admin, client, fetch_all

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EVENT_FIELDS = {"id", "concordId", "consentAction", "consentDate", "consentState", "dateCreated", "dateUpdated",
                "consentType", "expirationDate", "organization", "project", "session", "submitter", "category",
                "subcategory", "label", "version"}


def test_same_seed_same_data() -> None:
    a = SandboxState(SandboxConfig(seed=5, events=300, now=NOW))
    b = SandboxState(SandboxConfig(seed=5, events=300, now=NOW))
    c = SandboxState(SandboxConfig(seed=6, events=300, now=NOW))
    for resource in ("projects", "consent-events", "compliance-requests", "tracker-scan-history"):
        assert a.truth(resource) == b.truth(resource)
    assert (a.org_id, a.api_key) == (b.org_id, b.api_key) != (c.org_id, c.api_key)
    assert a.truth("consent-events") != c.truth("consent-events")


def test_event_shapes_and_mix(shared: SandboxServer) -> None:
    events = shared.state.truth("consent-events")
    now = parse_time(NOW)
    for e in events:
        assert set(e) == EVENT_FIELDS and set(e["session"]) == {"id", "ipAddress", "domain", "geography", "userAgent"}
        assert all(ISO.match(e[f]) for f in ("consentDate", "dateCreated", "dateUpdated", "expirationDate"))
        assert isinstance(e["subcategory"], list) and e["version"] >= 1
        assert e["dateCreated"] <= e["dateUpdated"] and parse_time(e["dateUpdated"]) < now
    assert set(Counter(e["consentState"] for e in events)) == {"implied", "viewed", "accepted", "declined"}
    imports = [e for e in events if e["consentAction"] == "import"]
    assert 0.005 < len(imports) / len(events) < 0.05
    assert all(parse_time(e["dateCreated"]) - parse_time(e["consentDate"]) > DAY_MS for e in imports)
    assert any(":" in e["session"]["ipAddress"] for e in events) and any("." in e["session"]["ipAddress"] for e in events)
    assert len({e["session"]["geography"] for e in events}) > 10


def test_epoch_units_and_scans(shared: SandboxServer) -> None:
    projects = shared.state.truth("projects")
    assert projects[0]["dateCreated"] > 10**11 > projects[1]["dateCreated"]  # ms and seconds both occur
    scans = shared.state.truth("tracker-scan-history")
    running = [s for c in scans for s in c["scanHistory"] if s["status"] == "running"]
    assert len(running) == 1 and running[0]["results"]["total"] == 0
    for config in scans:
        assert config["scanHistory"][-1]["date"] >= config["scanHistory"][0]["date"]


def test_compliance_lifecycle(shared: SandboxServer) -> None:
    requests = shared.state.truth("compliance-requests")
    events = shared.state.truth("compliance-requests-events")
    assert {r["status"] for r in requests} == {"pending_verification", "submitted", "acknowledged", "resolved"}
    for r in requests:
        assert (r["resolutionStatus"] is not None) == (r["status"] == "resolved") == (r["resolvedDate"] is not None)
    per_request = Counter(e["complianceRequestId"] for e in events)
    order = ["pending_verification", "submitted", "acknowledged", "resolved"]
    assert all(per_request[r["id"]] == order.index(r["status"]) + 1 for r in requests)


def test_python_mutations(fresh: SandboxServer) -> None:
    state = fresh.state
    with client(fresh) as api:
        path = f"/organizations/{fresh.org_id}/consent-events"
        before = {e["id"]: e for e in fetch_all(api, path)}
        result = state.mutate(insert_events=10, update_events=5, late_events=4, import_events=3, seed=1)
        after = {e["id"]: e for e in fetch_all(api, path)}
    assert len(after) == 617
    for eid in result["updated"]:
        assert after[eid]["version"] == before[eid]["version"] + 1 and after[eid]["dateUpdated"] == "2026-11-23T12:00:00.000Z"
    now = parse_time(NOW)
    for eid in result["late"]:
        assert 20 * 60_000 <= now - parse_time(after[eid]["dateUpdated"]) <= 51 * 60_000
    for eid in result["imported"]:
        assert after[eid]["consentAction"] == "import" and now - parse_time(after[eid]["consentDate"]) > DAY_MS
    assert {after[eid]["dateCreated"][:10] for eid in result["inserted"]} == {"2026-11-23"}


def test_admin_mutate_clock_truth(fresh: SandboxServer) -> None:
    with admin(fresh) as adm, client(fresh) as api:
        assert adm.post("/clock", json={"advance_seconds": 3600}).json()["now"] == "2026-11-23T13:00:00.000Z"
        out = adm.post("/mutate", json={"insert_events": 2, "finish_scans": True, "new_scans": 2,
                                        "advance_compliance": 3, "insert_compliance": 2}).json()
        assert len(out["inserted"]) == 2 and out["finished_scans"] == 1 and len(out["inserted_compliance"]) == 2
        assert len(out["advanced_compliance"]) == 3
        scans = adm.get("/truth/tracker-scan-history").json()
        assert not [s for c in scans for s in c["scanHistory"] if s["status"] == "running"]
        assert sum(s["scanType"] == "manual" and s["date"] in (1795438800000, 1795438800)
                   for c in scans for s in c["scanHistory"]) == 2
        fresh_events = api.get(f"/organizations/{fresh.org_id}/consent-events",
                               params={"startDate": "2026-11-23T12:30:00Z"}).json()
        assert fresh_events["total"] == 2
        changed = api.get(f"/organizations/{fresh.org_id}/compliance-requests-events",
                          params={"startDate": "2026-11-23T13:00:00Z"}).json()
        assert changed["total"] == 5  # 3 advanced + 2 created
        assert adm.post("/mutate", json={"bogus": 1}).status_code == 400
        assert adm.get("/truth/nothing").status_code == 404
        assert len(adm.get("/truth/consent-events").json()) == 602


def test_ticking_clock_without_now() -> None:
    state = SandboxState(SandboxConfig(seed=1, events=20))
    assert state.clock.ticking and state.now_iso().endswith("Z")
    with SandboxServer(state) as sb, httpx.Client() as c:
        r = c.get(sb.admin_url + "/clock", headers={"x-api-key": sb.api_key})
        assert r.json()["ticking"] is True


def test_cached_orders_follow_inserts_and_updates(fresh: SandboxServer) -> None:
    with client(fresh) as api:
        path = f"/organizations/{fresh.org_id}/consent-events"
        api.get(path)  # builds the cached dateCreated order
        api.get(path, params={"sort": "consentDate", "order": "asc"})
        new = set(fresh.state.insert_events(3, seed=2))
        updated = fresh.state.update_events(2, seed=3)
        top = api.get(path, params={"limit": 3}).json()["items"]
        assert {i["id"] for i in top} == new  # newest dateCreated first
        by_consent = fetch_all(api, path, {"sort": "consentDate", "order": "asc"})
        keys = [(i["consentDate"], i["id"]) for i in by_consent]
        assert keys == sorted(keys) and len(keys) == 603
        assert all(i["version"] >= 2 for i in by_consent if i["id"] in updated)


def test_cdr_holder_mounted_when_available(fresh: SandboxServer) -> None:
    try:
        from concord_pipelines.sandbox.cdr_holder import create_holder_app  # noqa: F401
    except Exception:  # noqa: BLE001 - written by another helper; optional
        return
    r = httpx.get(fresh.url + "/cdr/cds-au/v1/admin/metrics", headers={"x-v": "2"})
    assert r.status_code != 404  # mounted under /cdr
