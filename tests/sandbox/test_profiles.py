"""Server profiles and the late-data mutations, asserted as a client observes them over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from concord_pipelines.sandbox import SandboxConfig, SandboxProcess, SandboxServer, SandboxState
from concord_pipelines.sandbox.__main__ import main as sandbox_main
from concord_pipelines.sandbox.data import DAY_MS, iso, parse_time, to_ms
from concord_pipelines.sandbox.profiles import DEFAULTS
from tests.sandbox.conftest import NOW, admin, client, fetch_all

NOW_MS = parse_time(NOW)


def org(sb: SandboxServer) -> str:
    return f"/organizations/{sb.org_id}"


def first_project(sb: SandboxServer) -> str:
    return min(p["id"] for p in sb.state.truth("projects"))


def date_of(response: httpx.Response) -> datetime:
    return parsedate_to_datetime(response.headers["date"])


# ---- the spec ---------------------------------------------------------------------------------------------
def test_spec_parses_combines_and_reports(fresh: SandboxServer) -> None:
    assert fresh.state.profiles.set("elastic, rate-limit:5,no-total") == (
        "capped-total:10000,deep-paging-limit:10000,rate-limit:5,no-total")
    with admin(fresh) as adm:
        assert adm.get("/profiles").json()["spec"] == fresh.state.profiles.get()
        put = adm.put("/profiles", json={"spec": "capped-total:50"})
        assert put.status_code == 200 and put.json()["spec"] == "capped-total:50"
    assert fresh.state.profiles.get() == "capped-total:50"  # PUT replaces, it does not add


@pytest.mark.parametrize("spec", ["teapot", "elastic,teapot", "capped-total:x", "no-total:3", "rate-limit:0"])
def test_bad_spec_is_a_value_error(spec: str) -> None:
    with pytest.raises(ValueError) as err:
        SandboxState(SandboxConfig(events=10, now=NOW, profiles=spec))
    if "teapot" in spec:
        assert "valid: capped-total, deep-paging-limit, elastic" in str(err.value)


def test_bad_spec_over_http_is_a_400_and_changes_nothing(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("no-total")
    with admin(fresh) as adm:
        r = adm.put("/profiles", json={"spec": "teapot"})
    assert r.status_code == 400 and "unknown profile 'teapot'" in r.json()["message"]
    assert fresh.state.profiles.get() == "no-total"


def test_bad_spec_on_the_cli_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert sandbox_main(["--events", "10", "--port", "0", "--profile", "teapot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sandbox: unknown profile 'teapot'; valid: ") and err.count("\n") == 1


@pytest.mark.slow  # concord_pipelines.cli imports every subcommand (dlt): seconds of imports on a busy machine
def test_bad_spec_through_concord_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    from concord_pipelines.cli import main

    assert main(["sandbox", "--events", "10", "--port", "0", "--profile", "elastic,teapot"]) == 2
    assert capsys.readouterr().err.startswith("error: sandbox: unknown profile 'teapot'")


def test_help_documents_every_profile() -> None:
    out = subprocess.run([sys.executable, "-m", "concord_pipelines.sandbox", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--profile SPEC" in out and "GET/PUT /_sandbox/profiles" in out
    for name in DEFAULTS:
        assert f"  {name}" in out


def test_empty_spec_clears(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("no-total")
    with admin(fresh) as adm, client(fresh) as api:
        assert adm.put("/profiles", json={"spec": ""}).json()["spec"] == ""
        assert api.get(org(fresh) + "/projects").json()["total"] == 3


def test_child_process_takes_the_profile_and_dates_from_its_clock() -> None:
    with SandboxProcess(SandboxConfig(seed=3, events=200, now=NOW, profiles="no-total")) as sb:
        r = httpx.get(f"{sb.base_url}/organizations/{sb.org_id}/consent-events", headers={"x-api-key": sb.api_key})
    assert r.status_code == 200 and "total" not in r.json() and r.json()["count"] == 100
    assert r.headers.get_list("date") == ["Mon, 23 Nov 2026 12:00:00 GMT"]  # not uvicorn's host-time header


# ---- totals and deep paging -------------------------------------------------------------------------------
def test_capped_total_reports_the_cap_but_serves_every_row(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("capped-total:250")
    with client(fresh) as api:
        first = api.get(org(fresh) + "/consent-events", params={"limit": 100}).json()
        beyond = api.get(org(fresh) + "/consent-events", params={"offset": 500, "limit": 100}).json()
        projects = api.get(org(fresh) + "/projects").json()
    assert first["total"] == 250 and beyond["total"] == 250
    assert beyond["count"] == 100  # the true 600 rows are all there past the reported total
    assert projects["total"] == 3  # below the cap: the true count


def test_deep_paging_limit_refuses_past_the_window(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("deep-paging-limit:500")
    with client(fresh) as api:
        inside = api.get(org(fresh) + "/consent-events", params={"offset": 400, "limit": 100})
        past = api.get(org(fresh) + "/consent-events", params={"offset": 401, "limit": 100})
        small = api.get(org(fresh) + "/compliance-requests", params={"offset": 0, "limit": 501})
    assert inside.status_code == 200 and inside.json()["count"] == 100
    assert past.status_code == 400 and past.json() == {
        "statusCode": 400, "error": "Bad Request",
        "message": "Result window is too large, from + size must be less than or equal to: [500] but was [501]"}
    assert small.status_code == 400  # every list, not only consent events


def test_elastic_is_both_at_10000(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("elastic")
    with client(fresh) as api:
        edge = api.get(org(fresh) + "/consent-events", params={"offset": 9000, "limit": 1000})
        past = api.get(org(fresh) + "/consent-events", params={"offset": 9001, "limit": 1000})
    assert edge.status_code == 200 and edge.json()["items"] == [] and edge.json()["total"] == 600
    assert past.status_code == 400 and past.json()["message"].endswith("[10000] but was [10001]")


def test_capped_total_at_the_elastic_default() -> None:
    config = SandboxConfig(seed=2, events=10_050, days=5, projects=2, now=NOW, profiles="elastic")
    with SandboxServer(config) as sb, client(sb) as api:
        page = api.get(org(sb) + "/consent-events", params={"offset": 9000, "limit": 1000}).json()
        refused = api.get(org(sb) + "/consent-events", params={"offset": 9500, "limit": 1000})
        by_time = api.get(org(sb) + "/consent-events", params={"endDate": iso(NOW_MS - DAY_MS), "limit": 1}).json()
    assert page["total"] == 10_000 and page["count"] == 1000
    assert refused.status_code == 400
    assert by_time["total"] < 10_000  # a narrower window reports its true count


def test_no_total_and_first_page_total(fresh: SandboxServer) -> None:
    with client(fresh) as api:
        fresh.state.profiles.set("no-total")
        events = api.get(org(fresh) + "/consent-events").json()
        projects = api.get(org(fresh) + "/projects").json()
        fresh.state.profiles.set("first-page-total")
        first = api.get(org(fresh) + "/consent-events", params={"limit": 100}).json()
        second = api.get(org(fresh) + "/consent-events", params={"offset": 100, "limit": 100}).json()
        requests_second = api.get(org(fresh) + "/compliance-requests", params={"offset": 1}).json()
    assert "total" not in events and events["count"] == 100 and "total" not in projects
    assert first["total"] == 600 and "total" not in second and second["count"] == 100
    assert "total" not in requests_second and requests_second["offset"] == 1


# ---- order ------------------------------------------------------------------------------------------------
def bulk_window(api: httpx.Client, sb: SandboxServer, **params: object) -> list[str]:
    window = {"startDate": NOW, "endDate": iso(NOW_MS + 1000), **params}
    r = api.get(org(sb) + "/consent-events", params=window)
    assert r.status_code == 200
    return [e["id"] for e in r.json()["items"]]


def test_unstable_ties_shuffle_equal_values_per_request(fresh: SandboxServer) -> None:
    ids = fresh.state.mutate(bulk_import=300)["bulk_imported"]
    with client(fresh) as api:
        stable = [bulk_window(api, fresh, sort="dateUpdated", limit=300) for _ in range(2)]
        fresh.state.profiles.set("unstable-ties")
        first, second = (bulk_window(api, fresh, sort="dateUpdated", limit=300) for _ in range(2))
        by_id = [bulk_window(api, fresh, sort="id", limit=300) for _ in range(2)]
        pages = [i for off in (0, 100, 200) for i in bulk_window(api, fresh, sort="dateUpdated", offset=off, limit=100)]
        default_order = [bulk_window(api, fresh, limit=300) for _ in range(2)]
    assert stable[0] == stable[1] == sorted(ids)  # without the profile ties break on id
    assert sorted(first) == sorted(second) == sorted(ids) and first != second
    assert by_id[0] == by_id[1] == sorted(ids)
    assert len(set(pages)) < 300  # paging through a shuffled tie group repeats some rows and misses others
    assert default_order[0] != default_order[1]  # the default order (dateCreated) has no tie-break either


def test_unstable_ties_on_small_lists(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("unstable-ties")
    project = fresh.state.projects[0]["id"]
    with client(fresh) as api:
        orders = {tuple(t["id"] for t in api.get(f"{org(fresh)}/projects/{project}/consent-types",
                                                   params={"sort": "category"}).json()["items"])
                  for _ in range(12)}
    assert len(orders) > 1  # four "disclosure" types come in changing orders
    category = {t["id"]: t["category"] for t in fresh.state.consent_types[project]}
    for order in orders:
        assert [category[i] for i in order] == sorted(category.values())  # still sorted by the value


def test_ignore_sort_serves_the_default_order(fresh: SandboxServer) -> None:
    with client(fresh) as api:
        default = api.get(org(fresh) + "/consent-events").json()["items"]
        honoured = api.get(org(fresh) + "/consent-events", params={"sort": "id", "order": "asc"}).json()["items"]
        fresh.state.profiles.set("ignore-sort")
        ignored = api.get(org(fresh) + "/consent-events", params={"sort": "id", "order": "asc"}).json()["items"]
        bogus = api.get(org(fresh) + "/projects", params={"sort": "nonsense"})
    assert [e["id"] for e in honoured] == sorted(e["id"] for e in honoured) != [e["id"] for e in default]
    assert [e["id"] for e in ignored] == [e["id"] for e in default]
    assert [e["dateCreated"] for e in ignored] == sorted((e["dateCreated"] for e in ignored), reverse=True)
    assert bogus.status_code == 200  # an ignored parameter is not validated either


# ---- date filters -----------------------------------------------------------------------------------------
def filtered(api: httpx.Client, path: str, start: int, end: int) -> set[str]:
    return {i["id"] for i in fetch_all(api, path, {"startDate": iso(start), "endDate": iso(end)})}


def in_window(items: list[dict], field: str, start: int, end: int) -> set[str]:
    return {i["id"] for i in items if start <= (to_ms(i[field]) or 0) < end}


@pytest.mark.parametrize(("profile", "fields"), [
    ("", {"consent-events": "dateUpdated", "compliance-requests": "dateUpdated",
          "compliance-requests-events": "dateUpdated"}),
    ("consent-date-filter", {"consent-events": "consentDate", "compliance-requests": "requestDate",
                             "compliance-requests-events": "dateCreated"}),
    ("created-date-filter", {"consent-events": "dateCreated", "compliance-requests": "dateCreated",
                             "compliance-requests-events": "dateCreated"}),
])
def test_date_filter_field(fresh: SandboxServer, profile: str, fields: dict[str, str]) -> None:
    fresh.state.mutate(update_events=60, import_events=40, advance_compliance=5)  # fields differ on these
    fresh.state.profiles.set(profile)
    start, end = NOW_MS - 4 * DAY_MS, NOW_MS - DAY_MS
    with client(fresh) as api:
        for resource, field in fields.items():
            truth = fresh.state.truth(resource)
            got = filtered(api, f"{org(fresh)}/{resource}", start, end)
            assert got == in_window(truth, field, start, end)
            if resource == "consent-events":
                assert got != in_window(truth, "dateUpdated" if field != "dateUpdated" else "consentDate",
                                        start, end)
        project = fresh.state.projects[0]["id"]
        scoped = filtered(api, f"{org(fresh)}/projects/{project}/consent-events", start, end)
    events = [e for e in fresh.state.truth("consent-events") if e["project"] == project]
    assert scoped == in_window(events, fields["consent-events"], start, end)


# ---- rate limits ------------------------------------------------------------------------------------------
def burst(sb: SandboxServer, n: int) -> tuple[list[httpx.Response], float]:
    started = time.monotonic()
    with client(sb) as api:
        responses = [api.get(org(sb) + "/projects") for _ in range(n)]
    return responses, time.monotonic() - started


def test_rate_limit_answers_429_with_retry_after_zero(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("rate-limit:5")
    responses, elapsed = burst(fresh, 15)
    codes = [r.status_code for r in responses]
    assert codes[:5] == [200] * 5  # the bucket starts full
    assert codes.count(200) <= 5 + elapsed * 5 + 1 and codes.count(429) >= 1
    limited = [r for r in responses if r.status_code == 429]
    assert all(r.headers["retry-after"] == "0" for r in limited)
    assert limited[0].json() == {"statusCode": 429, "error": "Too Many Requests", "message": "Too Many Requests"}
    with admin(fresh) as adm:
        stats = adm.get("/stats").json()  # admin requests are not limited
        assert adm.get("/truth/projects").status_code == 200
    assert stats["requests"]["GET /privacy-v1/organizations/{id}/projects"]["429"] == len(limited)
    assert stats["profiles"]["rate-limit"] == len(limited)
    time.sleep(0.5)
    with client(fresh) as api:
        assert api.get(org(fresh) + "/projects").status_code == 200  # refilled


def test_rate_limit_past_date(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("rate-limit-past-date:2")
    responses, _ = burst(fresh, 8)
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    for r in limited:
        retry_at = parsedate_to_datetime(r.headers["retry-after"])
        assert retry_at <= date_of(r) - timedelta(seconds=60)  # the server's own clock says it is past
        assert retry_at < datetime.now(UTC) - timedelta(seconds=59)  # and so does the host's


def test_rate_limit_counts_all_data_endpoints_together(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("rate-limit:3")
    project = fresh.state.projects[0]["id"]
    paths = ["/projects", "/consent-events", f"/projects/{project}/consent-types", "/compliance-requests",
             f"/projects/{project}/tracker-scan-history", "/projects"]
    with client(fresh) as api:
        codes = [api.get(org(fresh) + p).status_code for p in paths]
    assert codes[:3] == [200] * 3 and 429 in codes[3:]


# ---- partial 404 / 403 ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("profile", "resource", "status", "message"), [
    ("scan-404", "tracker-scan-history", 404, "no tracker scan configured for this project"),
    ("types-403", "consent-types", 403, "Forbidden"),
])
def test_first_project_refused(fresh: SandboxServer, profile: str, resource: str, status: int,
                               message: str) -> None:
    fresh.state.profiles.set(profile)
    first = first_project(fresh)
    with client(fresh) as api:
        answers = {p["id"]: api.get(f"{org(fresh)}/projects/{p['id']}/{resource}") for p in fresh.state.projects}
        events = api.get(f"{org(fresh)}/projects/{first}/consent-events")
    refused = answers.pop(first)
    assert refused.status_code == status
    assert refused.json() == {"statusCode": status, "error": "Not Found" if status == 404 else "Forbidden",
                              "message": message}
    assert all(r.status_code == 200 and r.json()["items"] for r in answers.values())
    assert events.status_code == 200  # only that sub-resource


# ---- latency, faults alongside ----------------------------------------------------------------------------
def test_latency_profile(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("latency:250")
    with client(fresh) as api:
        started = time.monotonic()
        assert api.get(org(fresh) + "/projects").status_code == 200
        assert time.monotonic() - started >= 0.25
    with admin(fresh) as adm:
        started = time.monotonic()
        adm.get("/info")
        assert time.monotonic() - started < 0.25  # not on /_sandbox


def test_profiles_combine_with_faults(fresh: SandboxServer) -> None:
    fresh.state.profiles.set("no-total,deep-paging-limit:300")
    fresh.state.faults.configure("cap=40,500=next:1")
    with client(fresh) as api:
        failed = api.get(org(fresh) + "/consent-events")
        page = api.get(org(fresh) + "/consent-events", params={"limit": 100}).json()
        refused = api.get(org(fresh) + "/consent-events", params={"offset": 250, "limit": 100})
        doc = api.get("/openapi.json")
    assert failed.status_code == 500
    assert page["count"] == 40 and "total" not in page
    assert refused.status_code == 400
    assert doc.status_code == 200 and "paths" in doc.json()


# ---- the Date header --------------------------------------------------------------------------------------
def test_date_header_follows_the_sandbox_clock(fresh: SandboxServer) -> None:
    with client(fresh) as api, admin(fresh) as adm:
        before = api.get(org(fresh) + "/consent-events")
        missing = api.get(org(fresh) + "/projects/00000000-0000-4000-8000-000000000000/consent-types")
        adm.post("/clock", json={"advance_seconds": 86_400 + 61.5})
        after = api.get(org(fresh) + "/projects")
        unauthenticated = httpx.get(fresh.base_url + org(fresh) + "/projects")
    assert before.headers.get_list("date") == ["Mon, 23 Nov 2026 12:00:00 GMT"]
    assert missing.status_code == 404 and missing.headers["date"] == "Mon, 23 Nov 2026 12:00:00 GMT"
    assert after.headers.get_list("date") == ["Tue, 24 Nov 2026 12:01:01 GMT"]
    assert unauthenticated.status_code == 401 and unauthenticated.headers["date"] == after.headers["date"]


# ---- late-data mutations ----------------------------------------------------------------------------------
def test_bulk_import_shares_one_instant(fresh: SandboxServer) -> None:
    with admin(fresh) as adm:
        ids = adm.post("/mutate", json={"bulk_import": 120}).json()["bulk_imported"]
    assert len(set(ids)) == 120
    imported = [e for e in fresh.state.truth("consent-events") if e["id"] in set(ids)]
    assert len(imported) == 120
    assert {(e["dateCreated"], e["dateUpdated"]) for e in imported} == {("2026-11-23T12:00:00.000Z",) * 2}
    assert {e["consentAction"] for e in imported} == {"import"}
    assert all(NOW_MS - parse_time(e["consentDate"]) > DAY_MS for e in imported)
    with client(fresh) as api:
        assert set(bulk_window(api, fresh, limit=1000)) == set(ids)


def test_late_projects_are_dated_30_days_back(fresh: SandboxServer) -> None:
    before = {p["id"] for p in fresh.state.truth("projects")}
    with admin(fresh) as adm:
        ids = adm.post("/mutate", json={"late_project": 2}).json()["late_projects"]
    projects = {p["id"]: p for p in fresh.state.truth("projects")}
    assert len(ids) == 2 and set(projects) == before | set(ids)
    for pid in ids:
        assert to_ms(projects[pid]["dateCreated"]) == to_ms(projects[pid]["dateUpdated"])
        assert abs((to_ms(projects[pid]["dateCreated"]) or 0) - (NOW_MS - 30 * DAY_MS)) < 1000
    with client(fresh) as api:
        listed = {p["id"] for p in fetch_all(api, org(fresh) + "/projects")}
        types = api.get(f"{org(fresh)}/projects/{ids[0]}/consent-types")
        scans = api.get(f"{org(fresh)}/projects/{ids[0]}/tracker-scan-history")
    assert listed == set(projects)
    assert types.status_code == 200 and types.json()["total"] == 7
    assert scans.status_code == 200


def test_late_scans_are_completed_and_dated_30_days_back(fresh: SandboxServer) -> None:
    before = {c["projectId"]: len(c["scanHistory"]) for c in fresh.state.truth("tracker-scan-history")}
    with admin(fresh) as adm:
        touched = adm.post("/mutate", json={"late_scan": 2}).json()["late_scans"]
    configs = {c["projectId"]: c for c in fresh.state.truth("tracker-scan-history")}
    assert len(set(touched)) == 2
    for pid, config in configs.items():
        assert len(config["scanHistory"]) == before[pid] + (pid in touched)
    for pid in touched:
        late = [s for s in configs[pid]["scanHistory"]
                if abs((to_ms(s["date"]) or 0) - (NOW_MS - 30 * DAY_MS)) < 1000]
        assert len(late) == 1 and late[0]["status"] == "completed" and late[0]["results"]["total"] >= 0
        with client(fresh) as api:
            served = api.get(f"{org(fresh)}/projects/{pid}/tracker-scan-history").json()["items"][0]
        assert served == configs[pid]
