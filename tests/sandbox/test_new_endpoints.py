"""The data-systems and regions endpoints: shapes, paging, filters, truth."""

from __future__ import annotations

import httpx

from concord_pipelines.sandbox import SandboxConfig, SandboxServer, SandboxState
from concord_pipelines.sandbox.data import CONSENT_MODES
from tests.sandbox.conftest import NOW, admin, fetch_all

ISO_LEN = len("2026-11-23T12:00:00.000Z")


def test_data_systems_shape_paging_and_truth(shared: SandboxServer, api: httpx.Client, org: str) -> None:
    served = fetch_all(api, org + "/data-systems", limit=3)
    with admin(shared) as adm:
        truth = adm.get("/truth/data-systems").json()
    assert sorted(served, key=lambda s: s["id"]) == sorted(truth, key=lambda s: s["id"]) and len(truth) == 8
    projects = {p["id"] for p in shared.state.projects}
    for system in truth:
        assert {"id", "name", "status", "retention", "projectIds", "dateCreated", "dateUpdated"} <= set(system)
        assert isinstance(system["dateCreated"], int) and system["dateCreated"] <= system["dateUpdated"]
        assert system["projectIds"] and set(system["projectIds"]) <= projects
        assert system["retention"] is None or system["retention"] > 0
    page = api.get(org + "/data-systems", params={"limit": 3, "offset": 3}).json()
    assert (page["offset"], page["count"], page["total"]) == (3, 3, 8)
    inactive = api.get(org + "/data-systems", params={"status": "inactive"}).json()["items"]
    assert [s["status"] for s in inactive] == ["inactive"]
    by_name = api.get(org + "/data-systems", params={"sort": "name", "order": "asc"}).json()["items"]
    assert [s["name"] for s in by_name] == sorted(s["name"] for s in truth)


def test_regions_shape_filters_and_truth(shared: SandboxServer, api: httpx.Client, org: str) -> None:
    with admin(shared) as adm:
        truth = adm.get("/truth/regions").json()
    served = []
    for project in shared.state.projects:
        items = fetch_all(api, f"{org}/projects/{project['id']}/regions", limit=2)
        assert items and {r["project"] for r in items} == {project["id"]}
        served += items
    assert sorted(served, key=lambda r: r["id"]) == sorted(truth, key=lambda r: r["id"])
    for region in truth:
        assert region["consentMode"] in CONSENT_MODES and region["countries"]
        assert isinstance(region["banner"], dict) and isinstance(region["banner"]["showRejectAll"], bool)
        assert len(region["dateCreated"]) == ISO_LEN and region["dateCreated"] <= region["dateUpdated"]
    first = shared.state.projects[0]["id"]
    opt_in = api.get(f"{org}/projects/{first}/regions", params={"consentMode": "opt_in"}).json()["items"]
    assert opt_in and {r["consentMode"] for r in opt_in} == {"opt_in"}
    assert api.get(f"{org}/projects/{first}/regions", params={"consentMode": "maybe"}).status_code == 422


def test_new_resources_are_deterministic_and_follow_late_projects() -> None:
    a = SandboxState(SandboxConfig(seed=4, events=100, now=NOW))
    b = SandboxState(SandboxConfig(seed=4, events=100, now=NOW))
    assert a.truth("data-systems") == b.truth("data-systems") and a.truth("regions") == b.truth("regions")
    new = a.mutate(late_project=1)["late_projects"][0]
    assert any(r["project"] == new for r in a.truth("regions"))
