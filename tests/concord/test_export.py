"""End-to-end exports through the sandbox over HTTP into a real DuckDB file."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import httpx
import pytest

from tests.concord.conftest import SOURCE_TABLES, assert_table_matches, assert_warehouse_matches


def test_first_run_loads_every_table_equal_to_the_source(make_export):
    export = make_export(events=3000)
    result = export.run()
    assert_warehouse_matches(export)
    summary = {t.table: t for t in result.tables}
    assert summary["consent_events"].new == 3000 and summary["consent_events"].total == 3000
    assert "consent_events" in result.summary() and "retries" in result.summary()


def test_rerun_with_nothing_new_adds_no_rows(make_export):
    export = make_export(events=1500)
    export.run()
    counts = {t: export.count(t) for t in SOURCE_TABLES}
    export.state.advance_clock(600)
    result = export.run()
    assert {t: export.count(t) for t in SOURCE_TABLES} == counts
    assert all(t.new == 0 for t in result.tables if t.new is not None)
    # only the lookback (2 h) of consent events is read again, not the whole history
    events = result.resources["consent_events"]
    assert events.items < 1500
    # the window's first page tells whether it needs slicing: no separate count request
    assert events.requests == events.pages >= 1


def test_incremental_runs_converge_after_inserts_updates_late_and_import_events(make_export):
    export = make_export(events=2000)
    export.run()
    export.state.advance_clock(3600)
    changed = export.state.mutate(
        insert_events=40, update_events=25, late_events=10, import_events=5, finish_scans=True,
        new_scans=2, advance_compliance=5, insert_compliance=3, seed=11,
    )
    assert changed["finished_scans"] >= 1
    export.state.advance_clock(60)
    result = export.run()
    assert_warehouse_matches(export)
    events = {t.table: t for t in result.tables}["consent_events"]
    assert events.new == 40 + 10 + 5
    # the incremental run read the recent window, not all 2,055 events again
    assert result.resources["consent_events"].items < 1000


def test_updated_event_keeps_one_row_with_the_newest_version(make_export):
    export = make_export(events=800)
    export.run()
    export.state.advance_clock(120)
    updated = export.state.update_events(5, seed=3)
    export.state.advance_clock(60)
    export.run()
    rows = {r["id"]: r for r in export.rows("consent_events")}
    truth = {e["id"]: e for e in export.state.truth("consent-events")}
    for event_id in updated:
        assert rows[event_id]["version"] == truth[event_id]["version"] >= 2
    assert len(rows) == len(truth)


def test_running_scan_is_read_again_until_it_finishes(make_export):
    export = make_export(events=300)
    export.run()
    running = [r for r in export.rows("tracker_scans") if r["status"] == "running"]
    assert len(running) == 1, "the sandbox keeps one scan running"
    # a day later nothing else changed except the scan finishing
    export.state.advance_clock(86400)
    export.state.finish_scans()
    export.run()
    assert not [r for r in export.rows("tracker_scans") if r["status"] == "running"]
    assert_table_matches(export, "tracker_scans")


def test_silent_page_size_cap_loses_no_rows(make_export):
    export = make_export(events=2500, faults="cap=333")
    result = export.run(resources=["consent_events", "projects"])
    assert_table_matches(export, "consent_events")
    assert result.resources["consent_events"].pages >= 2500 // 333


def test_full_refresh_rereads_everything_and_merges(make_export):
    export = make_export(events=1200)
    export.run(resources=["consent_events"])
    export.state.advance_clock(60)
    result = export.run(resources=["consent_events"], full_refresh=True)
    assert result.resources["consent_events"].items == 1200
    assert export.count("consent_events") == 1200


def test_start_date_limits_the_first_run(make_export):
    export = make_export(events=2000)
    start = export.now() - timedelta(days=3)
    export.run(resources=["consent_events"], start_date=start.isoformat())
    rows = export.rows("consent_events")
    assert rows and all(r["date_updated"] >= start for r in rows)
    truth = [e for e in export.state.truth("consent-events") if datetime.fromisoformat(e["dateUpdated"].replace("Z", "+00:00")) >= start]
    assert len(rows) == len(truth)


def test_usage_metrics_daily_rows_agree_with_the_api(make_export):
    export = make_export(events=1500)
    export.run(resources=["usage_metrics"], start_date=(export.now() - timedelta(days=5)).isoformat())
    daily = {r["date"]: r for r in export.rows("usage_daily")}
    today = export.now().date()
    assert set(daily) == {today - timedelta(days=i) for i in range(6)}
    for day in (today - timedelta(days=2), today):
        start = datetime.combine(day, datetime.min.time()).isoformat() + "Z"
        end = datetime.combine(day + timedelta(days=1), datetime.min.time()).isoformat() + "Z"
        dashboard = httpx.get(
            f"{export.sandbox.base_url}/organizations/{export.sandbox.org_id}/metrics",
            params={"startDate": start, "endDate": end},
            headers={"x-api-key": export.sandbox.api_key},
        ).json()
        row = daily[day]
        assert row["consent_events"] == dashboard["consentEvents"]["totalEvents"]
        assert row["sessions"] == dashboard["sessions"]["dateRangeTotal"]
        assert row["is_complete_day"] is (day < today)
        browsers = {r["browser"]: r["count"] for r in export.rows("usage_browser_daily") if r["date"] == day}
        assert browsers == {b["browser"]: b["count"] for b in dashboard["consentEvents"]["browserCounts"]}


def test_partial_day_is_refreshed_by_the_next_run(make_export):
    export = make_export(events=1000)
    export.run(resources=["usage_metrics"], start_date=(export.now() - timedelta(days=1)).isoformat())
    today = export.now().date()
    before = {r["date"]: r["consent_events"] for r in export.rows("usage_daily")}[today]
    export.state.advance_clock(300)
    export.state.insert_events(30, seed=5)
    export.state.advance_clock(60)
    export.run(resources=["usage_metrics"])
    after = {r["date"]: r for r in export.rows("usage_daily")}
    assert after[today]["consent_events"] == before + 30
    assert len([d for d in after if d == today]) == 1


def test_pii_hash_and_drop(make_export):
    export = make_export(events=400)
    export.run(resources=["consent_events", "compliance_requests"], pii="hash", pii_salt="pepper")
    truth = {e["id"]: e for e in export.state.truth("consent-events")}
    rows = export.rows("consent_events")
    assert all(len(r["session__ip_address"]) == 64 for r in rows)
    assert all(r["session__ip_address"] != truth[r["id"]]["session"]["ipAddress"] for r in rows)
    same_ip = {}
    for r in rows:  # joins still work: equal inputs hash equal
        same_ip.setdefault(truth[r["id"]]["session"]["ipAddress"], set()).add(r["session__ip_address"])
    assert all(len(v) == 1 for v in same_ip.values())
    emails = [r["user__email"] for r in export.rows("compliance_requests")]
    assert all(e is None or ("@" not in e and len(e) == 64) for e in emails)

    dropped = make_export(events=200, seed=8)
    dropped.pipeline_name = "dropped"
    dropped.tmp = dropped.tmp / "dropped"
    dropped.tmp.mkdir()
    dropped.run(resources=["consent_events"], pii="drop")
    columns = set(dropped.rows("consent_events")[0])
    assert "session__ip_address" not in columns and "session__user_agent" not in columns
    assert "session__geography" in columns


def test_pii_hash_without_salt_is_a_clear_error(make_export):
    from concord_pipelines.errors import ConfigError

    export = make_export(events=50)
    with pytest.raises(ConfigError, match="salt"):
        export.run(pii="hash")


def test_same_export_into_parquet_files_gives_identical_counts(make_export, tmp_path, monkeypatch):
    export = make_export(events=1500)
    export.run()
    bucket = tmp_path / "lake"
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", bucket.as_uri())
    result = export.run(destination="filesystem", pipeline_name="concord_lake")
    import pyarrow.parquet as pq

    for table in SOURCE_TABLES:
        files = list((bucket / "concord_data" / table).glob("*.parquet"))
        assert files, table
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        assert rows == export.count(table), table
    assert {t.table for t in result.tables} >= set(SOURCE_TABLES)


def test_project_ids_limit_every_project_scoped_table(make_export):
    export = make_export(events=900)
    project = export.state.projects[0]["id"]
    export.run(project_ids=[project])
    assert {r["project"] for r in export.rows("consent_events")} == {project}
    assert {r["project_id"] for r in export.rows("tracker_scan_configs")} == {project}
    assert {r["id"] for r in export.rows("projects")} == {project}


def test_date_column_types_are_declared(make_export):
    export = make_export(events=100)
    export.run(resources=["consent_events", "usage_metrics"], start_date=str(date.today() - timedelta(days=400)))
    row = export.rows("consent_events")[0]
    assert isinstance(row["consent_date"], datetime) and row["consent_date"].tzinfo is not None
    assert isinstance(export.rows("usage_daily")[0]["date"], date)


def test_run_builds_the_dbt_models_and_takes_names_from_dlt_config(make_export, monkeypatch):
    export = make_export(events=400)
    monkeypatch.setenv("SOURCES__CONCORD__DATASET", "privacy")
    monkeypatch.setenv("SOURCES__CONCORD__DBT", "true")  # tests/conftest.py turns it off for the other tests
    result = export.run()
    assert result.dataset == "privacy"
    assert result.dbt is not None and result.dbt.ok and result.dbt.passed > 50, result.summary()
    assert "dbt build: " in result.summary()
    rates = export.rows("concord_daily_consent_rate", dataset="privacy")
    assert rates and all(0 <= r["consent_rate"] <= 1 for r in rates if r["consent_rate"] is not None)


def test_a_big_first_load_is_loaded_in_slices_equal_to_the_source(make_export, monkeypatch):
    # slice_rows is read from dlt config like any source argument; 700 rows makes 3,000 events a
    # first load of several slices, each extracted, merged and checkpointed on its own.
    monkeypatch.setenv("SOURCES__CONCORD__SLICE_ROWS", "700")
    export = make_export(events=3000)
    result = export.run(resources=["consent_events"])
    assert len(result.load_ids) >= 5  # 3,000 / 700, slices end between 350 and 700 rows
    assert_table_matches(export, "consent_events")
    assert {t.table: t for t in result.tables}["consent_events"].new == 3000
    # the next run continues from the last slice's cursor: only the lookback is read again
    export.state.advance_clock(600)
    again = export.run(resources=["consent_events"])
    assert again.resources["consent_events"].items < 700
    assert_table_matches(export, "consent_events")


def test_a_slice_that_fails_keeps_the_slices_already_loaded(make_export, monkeypatch):
    from concord_pipelines.concord import source
    from concord_pipelines.errors import PipelineError

    monkeypatch.setenv("SOURCES__CONCORD__SLICE_ROWS", "700")
    export = make_export(events=3000)
    slice_end, slices = source.slice_end, []

    def third_slice_meets_a_broken_api(*args, **kwargs):
        slices.append(1)
        if len(slices) == 3:  # two slices are loaded; from here on every request fails
            export.state.faults.configure("500=always", reset=True)
        return slice_end(*args, **kwargs)

    monkeypatch.setattr(source, "slice_end", third_slice_meets_a_broken_api)
    with pytest.raises(PipelineError):
        export.run(resources=["consent_events"], max_retries=1, backoff_base=0.01)
    kept = export.count("consent_events")
    assert 0 < kept < 3000  # the slices loaded before the failure stay
    export.state.faults.clear()
    monkeypatch.setattr(source, "slice_end", slice_end)
    result = export.run(resources=["consent_events"])
    assert_table_matches(export, "consent_events")
    assert result.resources["consent_events"].items < 3000 - kept + 1000  # went on from the last slice
