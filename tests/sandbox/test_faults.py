"""Each fault switch, asserted as a client observes it."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from concord_pipelines.sandbox import Faults, SandboxConfig, SandboxServer
from tests.sandbox.conftest import NOW, admin, client


def events_path(sb: SandboxServer) -> str:
    return f"/organizations/{sb.org_id}/consent-events"


def test_429_with_retry_after_for_the_next_two(fresh: SandboxServer) -> None:
    fresh.state.faults.configure("429=next:2,retry_after=7")
    with client(fresh) as api:
        first, second, third = (api.get(events_path(fresh)) for _ in range(3))
    for r in (first, second):
        assert r.status_code == 429 and r.headers["Retry-After"] == "7"
        assert r.json() == {"statusCode": 429, "error": "Too Many Requests", "message": "Too Many Requests"}
    assert third.status_code == 200
    assert fresh.state.faults.injected["429"] == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_use_the_documented_body(fresh: SandboxServer, status: int) -> None:
    fresh.state.faults.set(str(status), "always")
    with client(fresh) as api:
        r = api.get(f"/organizations/{fresh.org_id}/projects")
    assert r.status_code == status
    assert set(r.json()) == {"statusCode", "error", "message"} and r.json()["statusCode"] == status


def test_dropped_connection(fresh: SandboxServer) -> None:
    fresh.state.faults.set("drop", "next:1")
    with client(fresh) as api:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            api.get(events_path(fresh))
        assert api.get(events_path(fresh)).status_code == 200  # the next one is fine


def test_stalled_body_times_out(fresh: SandboxServer) -> None:
    fresh.state.faults.configure("stall=next:1,stall_seconds=1.5")
    with client(fresh, timeout=0.4) as api, pytest.raises(httpx.ReadTimeout):
        api.get(events_path(fresh), params={"limit": 1000})
    with client(fresh, timeout=5) as api:  # a patient client gets the whole page after the stall
        fresh.state.faults.set("stall", "next:1")
        started = time.monotonic()
        assert api.get(events_path(fresh)).json()["count"] == 100
        assert time.monotonic() - started >= 1.4


def test_truncated_json(fresh: SandboxServer) -> None:
    fresh.state.faults.set("truncate", "next:1")
    with client(fresh) as api:
        r = api.get(events_path(fresh))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        orjson.loads(r.content)


def test_html_instead_of_json(fresh: SandboxServer) -> None:
    fresh.state.faults.set("html", "next:1")
    with client(fresh) as api:
        r = api.get(events_path(fresh))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<!DOCTYPE html>")


def test_latency(fresh: SandboxServer) -> None:
    fresh.state.faults.configure("latency=300")
    with client(fresh) as api:
        started = time.monotonic()
        assert api.get(events_path(fresh)).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_silent_page_cap(fresh: SandboxServer) -> None:
    fresh.state.faults.configure("cap=333")
    with client(fresh) as api:
        page = api.get(events_path(fresh), params={"limit": 1000}).json()
        assert (page["count"], len(page["items"]), page["total"]) == (333, 333, 600)
        seen = []
        while len(seen) < page["total"]:  # a client that advances by `count` still gets everything
            got = api.get(events_path(fresh), params={"limit": 1000, "offset": len(seen), "sort": "id"}).json()
            seen += [i["id"] for i in got["items"]]
    assert len(set(seen)) == 600


def test_inserts_while_paging(fresh: SandboxServer) -> None:
    fresh.state.faults.configure("inserts=5")
    with client(fresh) as api:
        totals = [api.get(events_path(fresh), params={"limit": 100, "offset": 100 * i}).json()["total"]
                  for i in range(3)]
    assert totals == [600, 605, 610]
    assert len(fresh.state.events) == 615


def test_updates_while_paging(fresh: SandboxServer) -> None:
    fresh.state.faults.configure("updates=4")
    with client(fresh) as api:
        api.get(events_path(fresh), params={"limit": 10})
        changed = api.get(events_path(fresh), params={"sort": "dateUpdated", "order": "desc", "limit": 4}).json()
    assert all(i["dateUpdated"] == "2026-11-23T12:00:00.000Z" and i["version"] >= 2 for i in changed["items"])
    assert changed["total"] == 600


def test_probability_is_seeded() -> None:
    def pattern() -> list[str | None]:
        faults = Faults(seed=3, spec="500=0.3,429=0.2")
        return [faults.pick_trigger() for _ in range(200)]

    first = pattern()
    assert first == pattern()
    assert 30 < first.count("500") < 90 and 15 < first.count("429") < 70


def test_admin_endpoints_and_exemptions(fresh: SandboxServer) -> None:
    with admin(fresh) as adm, client(fresh) as api:
        snapshot = adm.put("/faults", json={"spec": "500=always,cap=250@next:1"}).json()
        assert snapshot["switches"]["500"] == {"mode": "always"}
        assert api.get("/openapi.json").status_code == 200  # never faulted
        assert adm.get("/stats").status_code == 200
        assert api.get(events_path(fresh)).status_code == 500
        assert adm.put("/faults", json={"spec": "bogus=1"}).status_code == 400
        adm.put("/faults", json={"spec": ""})  # reset
        assert adm.get("/faults").json()["switches"] == {}
        assert api.get(events_path(fresh)).status_code == 200
        stats = adm.get("/stats").json()
    assert stats["faults"]["500"] == 1
    assert stats["requests"]["GET /privacy-v1/organizations/{id}/consent-events"] == {"200": 1, "500": 1}


def test_config_faults_and_bad_specs() -> None:
    with SandboxServer(SandboxConfig(seed=1, events=50, now=NOW, faults="503=next:1")) as sb, client(sb) as api:
        assert api.get(events_path(sb)).status_code == 503
        assert api.get(events_path(sb)).status_code == 200
    for bad in ("429", "500=2", "cap=0", "latency=-5", "drop=next:x", "nope=1"):
        with pytest.raises(ValueError):
            Faults(spec=bad)
