"""`concord-pipeline verify`: finds a gap and an erased record, and `--repair` fixes both (DuckDB, PostgreSQL)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import httpx
import pytest

from concord_pipelines.cli import main
from concord_pipelines.concord.verify import EXIT_DIFFERENT, trusted_total
from tests.concord.conftest import Export, as_utc, assert_table_matches
from tests.warehouse.conftest import postgres_server  # noqa: F401  (the throwaway PostgreSQL fixture)

SINCE = "2026-10-25"  # before the sandbox's first day (20 days before 2026-11-20)
DAY_ROW = re.compile(r"^(\w+)\s+(\d{4}-\d{2}-\d{2})\s+(\d+)\s+(\d+)\s+(-?\d+)\s*$")


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    def invoke(export: Export, *args: str, dataset: str | None = None, destination: str | None = None,
               base_url: str | None = None) -> tuple[int, str]:
        monkeypatch.setenv("SOURCES__CONCORD__API_KEY", export.sandbox.api_key)
        where = ["--destination", destination] if destination else ["--duckdb-path", export.duckdb_path]
        argv = ["verify", "--org", export.sandbox.org_id, "--base-url", base_url or export.sandbox.base_url, *where,
                "--pipeline-name", export.pipeline_name, "--pipelines-dir", str(export.tmp / "pipelines"),
                "--lag-seconds", "0", "--since", SINCE, *(["--dataset", dataset] if dataset else []), *args]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out + err

    return invoke


def differing_days(output: str) -> dict[tuple[str, date], int]:
    """(resource, day) -> warehouse minus API, from the printed table."""
    found = {}
    for line in output.splitlines():
        match = DAY_ROW.match(line)
        if match:
            found[(match[1], date.fromisoformat(match[2]))] = int(match[5])
    return found


def day_of(export: Export, event_id: str) -> date:
    return as_utc(export.state.event_by_id[event_id].item["dateUpdated"]).date()


def erase_via_admin_api(export: Export, n: int, seed: int) -> list[str]:
    """The sandbox's POST /_sandbox/mutate, as a test of another process would call it."""
    admin = export.sandbox.base_url.rsplit("/privacy-v1", 1)[0] + "/_sandbox/mutate"
    response = httpx.post(admin, json={"delete_events": n, "seed": seed}, headers={"x-api-key": export.sandbox.api_key})
    response.raise_for_status()
    return response.json()["deleted"]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    return start, start + timedelta(days=1)


def truth_ids(export: Export) -> set[str]:
    return {e["id"] for e in export.state.truth("consent-events")}


def expected_differences(export: Export, gap: date, gap_rows: int, erased_days: list[date]) -> dict[tuple[str, date], int]:
    expected: Counter[tuple[str, date]] = Counter({("consent_events", gap): -gap_rows})
    for day in erased_days:
        expected[("consent_events", day)] += 1 if day != gap else 0
    return {k: v for k, v in expected.items() if v}


def test_verify_finds_a_gap_and_an_erased_event_and_repair_marks_it(make_export, run_cli):
    export = make_export(events=2000)
    export.run()
    code, out = run_cli(export)
    assert code == 0 and "0 differ" in out

    gap = export.now().date() - timedelta(days=6)
    with duckdb.connect(export.duckdb_path) as con:
        gap_rows = con.execute('DELETE FROM "warehouse"."concord_data"."consent_events" WHERE date_updated >= ? AND date_updated < ?',
                               list(day_bounds(gap))).fetchone()[0]
    assert gap_rows > 0
    days_before = {e: day_of(export, e) for e in export.state.event_by_id}
    erased = erase_via_admin_api(export, 3, seed=5)
    assert len(erased) == 3 and not set(erased) & truth_ids(export)
    erased_days = [days_before[e] for e in erased]

    code, out = run_cli(export)
    assert code == EXIT_DIFFERENT
    assert differing_days(out) == expected_differences(export, gap, gap_rows, erased_days)

    code, out = run_cli(export, "--repair")
    assert code == 0, out
    assert "3 marked deleted" in out and "0 of" in out
    rows = export.rows("consent_events")
    live = {r["id"] for r in rows if r["_concord_deleted_at"] is None}
    marked = {r["id"] for r in rows if r["_concord_deleted_at"] is not None}
    assert live == truth_ids(export) and marked == set(erased)
    assert_live_rows_match(export, rows)

    code, out = run_cli(export)
    assert code == 0 and "0 differ" in out

    # normal runs keep the mark of a row the API no longer serves, and clear it when a row comes back
    recent = max((r for r in rows if r["_concord_deleted_at"] is None), key=lambda r: r["date_updated"])["id"]
    with duckdb.connect(export.duckdb_path) as con:
        con.execute('UPDATE "warehouse"."concord_data"."consent_events" SET _concord_deleted_at = now() WHERE id = ?', [recent])
    export.state.advance_clock(600)
    export.state.mutate(insert_events=20, seed=9)
    export.state.advance_clock(60)
    export.run()
    rows = export.rows("consent_events")
    assert {r["id"] for r in rows if r["_concord_deleted_at"] is not None} == set(erased)
    assert {r["id"] for r in rows if r["_concord_deleted_at"] is None} == truth_ids(export)


def assert_live_rows_match(export: Export, rows: list[dict[str, Any]]) -> None:
    truth = {e["id"]: e for e in export.state.truth("consent-events")}
    for row in rows:
        if row["_concord_deleted_at"] is None:
            want = truth[row["id"]]
            assert (row["version"], row["consent_state"], row["date_updated"]) == (
                want["version"], want["consentState"], as_utc(want["dateUpdated"]))


def test_repair_with_hard_deletes_leaves_exactly_the_api_rows(make_export, run_cli):
    # pages silently capped at 50 rows: the repair's id paging must not take a short page for the last
    export = make_export(events=1500, faults="cap=50")
    export.run()
    requests_day = as_utc(export.state.truth("compliance-requests-events")[0]["dateUpdated"]).date()
    with duckdb.connect(export.duckdb_path) as con:
        con.execute('DELETE FROM "warehouse"."concord_data"."compliance_request_events" WHERE date_updated >= ? AND date_updated < ?',
                    list(day_bounds(requests_day)))
    erased = export.state.mutate(delete_events=4, seed=2)["deleted"]
    assert len(erased) == 4

    code, out = run_cli(export, "--repair", "--deletes", "hard")
    assert code == 0, out
    assert "4 deleted" in out
    assert ("compliance_request_events", requests_day) in differing_days(out)
    assert_table_matches(export, "consent_events")  # erased events are gone from the warehouse
    assert_table_matches(export, "compliance_request_events")
    assert not {r["id"] for r in export.rows("consent_events")} & set(erased)


def test_verify_on_postgresql_soft_then_hard(make_export, run_cli, postgres_server, monkeypatch):  # noqa: F811
    import psycopg2

    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_server.url)
    export = make_export(events=1500)
    export.pipeline_name = "verify_pg"
    export.run(destination="postgres", dataset="verify_pg")
    gap = export.now().date() - timedelta(days=3)

    def query(sql: str, *args: Any) -> list[tuple]:
        with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else [(cur.rowcount,)]

    gap_rows = query("DELETE FROM verify_pg.consent_events WHERE date_updated >= %s AND date_updated < %s", *day_bounds(gap))[0][0]
    days_before = {e: day_of(export, e) for e in export.state.event_by_id}
    erased = erase_via_admin_api(export, 3, seed=8)

    code, out = run_cli(export, destination="postgres", dataset="verify_pg")
    assert code == EXIT_DIFFERENT
    assert differing_days(out) == expected_differences(export, gap, gap_rows, [days_before[e] for e in erased])

    code, out = run_cli(export, "--repair", destination="postgres", dataset="verify_pg")
    assert code == 0, out
    rows = query("SELECT id, _concord_deleted_at FROM verify_pg.consent_events")
    assert {i for i, mark in rows if mark is None} == truth_ids(export)
    assert {i for i, mark in rows if mark is not None} == set(erased)

    # hard mode counts marked rows as differences and deletes them: an erased record leaves the warehouse
    code, out = run_cli(export, destination="postgres", dataset="verify_pg")
    assert code == 0
    code, out = run_cli(export, "--repair", "--deletes", "hard", destination="postgres", dataset="verify_pg")
    assert code == 0 and "3 deleted" in out, out
    assert {i for (i,) in query("SELECT id FROM verify_pg.consent_events")} == truth_ids(export)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["--since", "2999-01-01"], "is not in the past"),
        (["--resources", "projects"], "verify checks the date-windowed resources"),
    ],
)
def test_verify_config_errors_are_one_line_with_exit_code_2(make_export, run_cli, args, message):
    export = make_export(events=100)
    export.run(resources=["consent_events"])
    code, out = run_cli(export, *args)
    assert code == 2
    assert out.strip().splitlines()[-1].startswith("error: ") and message in out


def test_verify_before_any_run_says_to_run_first(make_export, run_cli):
    export = make_export(events=100)
    code, out = run_cli(export)
    assert code == 2 and "run `concord-pipeline run` first" in out


def test_a_total_is_trusted_only_when_present_and_not_at_a_round_cap():
    assert trusted_total({"total": 137, "items": []}) == 137
    assert trusted_total({"total": 0, "items": []}) == 0
    assert trusted_total({"total": 10_000, "items": []}) is None  # Elasticsearch's track_total_hits cap
    assert trusted_total({"items": []}) is None
    assert trusted_total({"total": "12", "items": []}) is None


def proxy(upstream: str, mode: str) -> Any:
    """A Concord-shaped server in front of the sandbox, over real HTTP, that behaves like other backends:
    `no-total` never says `total` (common on cursor-paged backends); `consent-date` filters consent
    events' startDate/endDate on consentDate instead of dateUpdated."""
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from concord_pipelines.serve import BackgroundServer

    async def forward(request: Request) -> Response:
        path, query = request.path_params["path"], dict(request.query_params)
        headers = {"x-api-key": request.headers.get("x-api-key", "")}
        async with httpx.AsyncClient(base_url=upstream, headers=headers) as client:
            if mode == "consent-date" and path.endswith("consent-events") and "startDate" in query:
                body = await by_consent_date(client, path, query)
            else:
                answer = await client.get(f"/{path}", params=list(request.query_params.multi_items()))
                body = orjson.loads(answer.content)
                if answer.status_code != 200:
                    return Response(answer.content, status_code=answer.status_code, media_type="application/json")
        if mode == "no-total":
            body.pop("total", None)
        return Response(orjson.dumps(body), media_type="application/json")

    async def by_consent_date(client: httpx.AsyncClient, path: str, query: dict[str, str]) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        while True:
            page = (await client.get(f"/{path}", params={"offset": len(items), "limit": 1000})).json()
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                break
        low, high = as_utc(query["startDate"]), as_utc(query["endDate"])
        chosen = sorted((i for i in items if low <= as_utc(i["consentDate"]) < high), key=lambda i: (i["dateUpdated"], i["id"]))
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        part = chosen[offset:offset + limit]
        return {"offset": offset, "count": len(part), "total": len(chosen), "items": part}

    return BackgroundServer(Starlette(routes=[Route("/{path:path}", forward)]))


def test_verify_counts_ids_when_the_server_gives_no_total(make_export, run_cli):
    export = make_export(events=1200, faults="cap=40")  # short pages too: the last page is the empty one
    export.run(resources=["consent_events"])
    gap = export.now().date() - timedelta(days=2)
    with duckdb.connect(export.duckdb_path) as con:
        con.execute('DELETE FROM "warehouse"."concord_data"."consent_events" WHERE date_updated >= ? AND date_updated < ?',
                    list(day_bounds(gap)))
    truth_on_gap = sum(1 for e in export.state.truth("consent-events") if as_utc(e["dateUpdated"]).date() == gap)
    with proxy(export.sandbox.base_url, "no-total") as server:
        page = httpx.get(f"{server.url}/organizations/{export.sandbox.org_id}/consent-events", params={"limit": 1000},
                         headers={"x-api-key": export.sandbox.api_key}).json()
        assert "total" not in page and len(page["items"]) == 40
        code, out = run_cli(export, "--resources", "consent_events", base_url=server.url)
    assert code == EXIT_DIFFERENT
    assert differing_days(out) == {("consent_events", gap): -truth_on_gap}


def test_repair_marks_nothing_when_the_server_filters_days_on_another_field(make_export, run_cli):
    export = make_export(events=1200)
    export.run(resources=["consent_events"])
    export.state.update_events(40, seed=6)  # new dateUpdated, old consentDate: days disagree by field
    export.state.advance_clock(60)
    export.run(resources=["consent_events"])
    assert_table_matches(export, "consent_events")
    with proxy(export.sandbox.base_url, "consent-date") as server:
        code, out = run_cli(export, "--resources", "consent_events", "--repair", "--deletes", "hard", base_url=server.url)
    assert code == 3, out
    assert out.strip().splitlines()[-1].startswith("error: ") and "filters dates on another field" in out
    assert_table_matches(export, "consent_events")  # nothing deleted, nothing lost


def test_sandbox_delete_events_is_deterministic_per_seed_and_leaves_the_truth():
    from concord_pipelines.sandbox import SandboxConfig
    from concord_pipelines.sandbox.state import SandboxState

    def erase(seed: int) -> tuple[list[str], SandboxState]:
        state = SandboxState(SandboxConfig(seed=3, events=300, days=5, now="2026-11-20T12:00:00Z"))
        return state.mutate(delete_events=7, seed=seed)["deleted"], state

    first, state = erase(1)
    assert erase(1)[0] == first and erase(2)[0] != first and len(set(first)) == 7
    left = {e["id"] for e in state.truth("consent-events")}
    assert len(left) == 293 and not left & set(first)
