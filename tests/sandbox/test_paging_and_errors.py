"""Paging, sorting and the error contract, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from concord_pipelines.sandbox import SandboxServer
from tests.sandbox.conftest import fetch_all

ERROR_KEYS = {"statusCode", "error", "message"}


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS and body["statusCode"] == status


def test_pages_add_up(api: httpx.Client, org: str) -> None:
    first = api.get(org + "/consent-events").json()
    assert (first["offset"], first["count"], first["total"]) == (0, 100, 3000)
    seen = []
    for offset in range(0, 3000, 700):
        page = api.get(org + "/consent-events", params={"offset": offset, "limit": 700, "sort": "id"}).json()
        assert page["offset"] == offset and page["count"] == len(page["items"]) == min(700, 3000 - offset)
        assert page["total"] == 3000
        seen += [i["id"] for i in page["items"]]
    assert len(set(seen)) == 3000 and seen == sorted(seen)
    past = api.get(org + "/consent-events", params={"offset": 5000}).json()
    assert past["count"] == 0 and past["items"] == [] and past["total"] == 3000


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"offset": -1},
                                    {"sort": "nope"}, {"order": "sideways"}, {"startDate": "yesterday"},
                                    {"consentState": "maybe"}, {"projectIds": "not-a-uuid"},
                                    {"sessionId": "x" * 65}])
def test_bad_params_are_422(api: httpx.Client, org: str, params: dict) -> None:
    assert_error(api.get(org + "/consent-events", params=params), 422)


def test_limit_bounds_accepted(api: httpx.Client, org: str) -> None:
    assert api.get(org + "/consent-events", params={"limit": 1}).json()["count"] == 1
    assert api.get(org + "/consent-events", params={"limit": 1000}).json()["count"] == 1000


@pytest.mark.parametrize("field", ["dateCreated", "dateUpdated", "consentDate", "id", "version"])
def test_sort_asc_desc_with_id_tie_break(api: httpx.Client, org: str, field: str) -> None:
    asc = fetch_all(api, org + "/consent-events", {"sort": field, "order": "asc"})
    desc = fetch_all(api, org + "/consent-events", {"sort": field, "order": "desc"})
    keys = [(i[field], i["id"]) for i in asc]
    assert keys == sorted(keys) and len(keys) == 3000
    assert [i["id"] for i in desc] == [i["id"] for i in reversed(asc)]


def test_default_order_is_date_created_desc(api: httpx.Client, org: str) -> None:
    items = api.get(org + "/consent-events", params={"limit": 1000}).json()["items"]
    created = [(i["dateCreated"], i["id"]) for i in items]
    assert created == sorted(created, reverse=True)


def test_small_resources_sort_and_page(api: httpx.Client, org: str) -> None:
    items = fetch_all(api, org + "/compliance-requests", {"sort": "dateUpdated", "order": "asc"}, limit=7)
    assert [i["dateUpdated"] for i in items] == sorted(i["dateUpdated"] for i in items)
    assert len({i["id"] for i in items}) == len(items) == api.get(org + "/compliance-requests").json()["total"]


def test_auth(shared: SandboxServer, org: str) -> None:
    with httpx.Client(base_url=shared.base_url) as anon:
        assert_error(anon.get(org + "/projects"), 401)
        assert_error(anon.get(org + "/projects", headers={"x-api-key": "wrong"}), 403)
        assert_error(anon.get("/nowhere"), 401)
        assert anon.get("/openapi.json").status_code == 200  # the spec is public
        assert_error(httpx.get(shared.admin_url + "/stats"), 401)


def test_unknown_and_malformed_ids(api: httpx.Client, org: str, shared: SandboxServer) -> None:
    other = "00000000-0000-4000-8000-000000000000"
    assert_error(api.get(f"/organizations/{other}/projects"), 404)
    assert_error(api.get(f"{org}/projects/{other}/consent-types"), 404)
    assert_error(api.get(f"{org}/projects/{other}/consent-events"), 404)
    assert_error(api.get("/organizations/not-a-uuid/projects"), 422)
    assert_error(api.get(f"{org}/projects/123/tracker-scan-history"), 422)
    assert_error(api.get(f"{org}/no-such-resource"), 404)
    assert_error(api.post(f"{org}/projects"), 405)


def test_metrics_requires_dates(api: httpx.Client, org: str) -> None:
    assert_error(api.get(org + "/metrics"), 422)
    assert_error(api.get(org + "/metrics", params={"startDate": "2026-11-01T00:00:00Z"}), 422)
    assert_error(api.get(org + "/metrics", params={"startDate": "bad", "endDate": "2026-11-02T00:00:00Z"}), 422)
