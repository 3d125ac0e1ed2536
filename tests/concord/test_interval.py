"""Interval mode: `run --start T1 --end T2` exports exactly [T1, T2) and leaves the cursors alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from concord_pipelines.cli import main
from concord_pipelines.concord.source import concord_source
from tests.concord.conftest import Export, as_utc, assert_table_matches

WINDOWED = ("consent_events", "compliance_requests", "compliance_request_events")
TRUTH = {"consent_events": "consent-events", "compliance_requests": "compliance-requests",
         "compliance_request_events": "compliance-requests-events"}


def cli(export: Export, *args: str) -> list[str]:
    return ["run", "--org", export.sandbox.org_id, "--base-url", export.sandbox.base_url,
            "--duckdb-path", export.duckdb_path, "--pipeline-name", export.pipeline_name,
            "--pipelines-dir", str(export.tmp / "pipelines"), "--lag-seconds", "0", "--quiet", *args]


@pytest.fixture(autouse=True)
def api_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI takes the key from dlt's env var only (never a flag); each test's sandbox sets it.
    monkeypatch.delenv("SOURCES__CONCORD__API_KEY", raising=False)


def use_key(export: Export, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__CONCORD__API_KEY", export.sandbox.api_key)


def truth_in(export: Export, resource: str, start: datetime, end: datetime) -> int:
    return sum(1 for item in export.state.truth(TRUTH[resource]) if start <= as_utc(item["dateUpdated"]) < end)


def keys_in(export: Export, start: datetime, end: datetime) -> set[str]:
    return {e["id"] for e in export.state.truth("consent-events") if start <= as_utc(e["dateUpdated"]) < end}


def cursors(export: Export) -> dict[str, Any]:
    state = json.loads((export.tmp / "pipelines" / export.pipeline_name / "state.json").read_text())
    resources = state.get("sources", {}).get("concord", {}).get("resources", {})
    return {name: resources.get(name, {}).get("cursor") for name in WINDOWED}


def test_interval_run_loads_exactly_the_interval_and_sets_no_cursor(make_export, monkeypatch):
    export = make_export(events=2000)
    use_key(export, monkeypatch)
    # odd bounds (not midnight, with milliseconds): rows on either side of each bound must be told apart
    start = export.now() - timedelta(days=9, hours=5, milliseconds=250)
    end = export.now() - timedelta(days=2, minutes=17)
    assert main(cli(export, "--resources", ",".join(WINDOWED), "--start", start.isoformat(), "--end", end.isoformat())) == 0
    assert {r["id"] for r in export.rows("consent_events")} == keys_in(export, start, end)
    for table in WINDOWED:
        rows = export.rows(table)
        assert len(rows) == truth_in(export, table, start, end) > 0, table
        assert all(start <= r["date_updated"] < end for r in rows), table
    assert cursors(export) == dict.fromkeys(WINDOWED)  # never read, never written
    # the first incremental run after it still starts from the beginning and loads everything
    export.run(resources=list(WINDOWED))
    for table in WINDOWED:
        assert_table_matches(export, table)


def test_interval_repairs_a_deleted_day_and_the_cursor_stays(make_export, monkeypatch):
    export = make_export(events=2000)
    use_key(export, monkeypatch)
    export.run()
    before = cursors(export)
    assert all(before.values())
    day = datetime.combine(export.now().date() - timedelta(days=4), datetime.min.time(), UTC)
    with duckdb.connect(export.duckdb_path) as con:
        con.execute('DELETE FROM "warehouse"."concord_data"."consent_events" WHERE date_updated >= ? AND date_updated < ?',
                    [day, day + timedelta(days=1)])
    assert export.count("consent_events") == 2000 - len(keys_in(export, day, day + timedelta(days=1)))
    assert main(cli(export, "--start", day.date().isoformat(), "--end", (day + timedelta(days=1)).date().isoformat())) == 0
    assert_table_matches(export, "consent_events")
    assert cursors(export) == before
    # the next incremental run goes on from the old cursor: new events arrive, only the lookback is read
    export.state.advance_clock(600)
    export.state.mutate(insert_events=30, update_events=10, seed=4)
    export.state.advance_clock(60)
    result = export.run(resources=list(WINDOWED))
    assert result.resources["consent_events"].items < 500
    assert {t.table: t for t in result.tables}["consent_events"].new == 30
    assert_table_matches(export, "consent_events")
    assert all(cursors(export)[name] > before[name] for name in WINDOWED)


def test_concord_source_takes_the_interval_in_a_plain_dlt_pipeline(make_export, tmp_path: Path):
    export = make_export(events=1200)
    start, end = export.now() - timedelta(days=6), export.now() - timedelta(days=5)
    pipeline = dlt.pipeline("interval_plain", destination=dlt.destinations.duckdb(str(tmp_path / "plain.duckdb")),
                            dataset_name="concord", pipelines_dir=str(tmp_path / "plain"))
    source = concord_source(organization_id=export.sandbox.org_id, api_key=export.sandbox.api_key,
                            base_url=export.sandbox.base_url, lag_seconds=0,
                            interval_start=start.isoformat(), interval_end=end.isoformat())
    pipeline.run(source.with_resources("consent_events", "projects"))
    with pipeline.sql_client() as sql:
        ids = {row[0] for row in sql.execute_sql(f"SELECT id FROM {sql.make_qualified_table_name('consent_events')}")}
        projects = sql.execute_sql(f"SELECT count(*) FROM {sql.make_qualified_table_name('projects')}")[0][0]
    assert ids == keys_in(export, start, end) and ids
    assert projects == len(export.state.projects)  # resources without a date filter run as usual
    resources = pipeline.state["sources"]["concord"]["resources"]
    assert "cursor" not in resources.get("consent_events", {})
    assert resources["projects"]["digests"]  # ... and keep their own state (a digest per row)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (["--start", "2026-02-30", "--end", "2026-03-02"], "--start '2026-02-30' is not a date"),
        (["--start", "2026-11-10", "--end", "2026-11-10"], "is not after --start"),
        (["--start", "2026-11-12", "--end", "2026-11-10T23:00:00Z"], "is not after --start"),
        (["--start", "2026-11-10", "--end", "2999-01-01"], "is in the future"),
        (["--start", "2026-11-10"], "needs both ends"),
    ],
)
def test_bad_intervals_are_one_error_line_and_change_nothing(make_export, monkeypatch, capsys, bounds, message):
    export = make_export(events=100)
    use_key(export, monkeypatch)
    assert main(cli(export, *bounds)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert not Path(export.duckdb_path).exists()
    assert not (export.tmp / "pipelines" / export.pipeline_name).exists()
