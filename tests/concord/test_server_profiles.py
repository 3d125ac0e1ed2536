"""Real servers vary: under each sandbox server profile, two incremental runs with late data, updates, deletes
of nothing, a finishing scan and a bulk import in between leave the warehouse equal to the server's rows.

The profiles imitate common backends (see pipelines/concord_pipelines/sandbox/README.md): capped or missing totals, a
deep-paging limit, rows sharing one instant in an unstable order, a per-key rate limit with a useless
Retry-After, a project without a scan configured, a date filter on another field, a server that ignores
`sort`. The runs use the server's clock, as every run does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import dlt
import pytest

from concord_pipelines.concord import settings
from concord_pipelines.concord.runner import RunResult
from tests.concord.conftest import SOURCE_TABLES, Export, _key, assert_table_matches, expected_rows

PROFILES = [
    "capped-total:500,deep-paging-limit:2000",  # a bulk import of 1,500 rows in one instant must fit
    "no-total",
    "first-page-total",
    "unstable-ties",
    "rate-limit:25",
    "rate-limit-past-date:25",
    "scan-404",
    "types-403",
    "consent-date-filter",
    "created-date-filter",
    "ignore-sort",
    "capped-total:1000,no-total,unstable-ties,consent-date-filter",
]


def _run(export: Export, **overrides: Any) -> RunResult:
    return export.run(max_retries=3, **overrides)


def _changes(export: Export) -> None:
    """A day's worth of what real data does between two runs, then the clock moves past it."""
    export.state.advance_clock(600)
    export.state.mutate(insert_events=300, update_events=200, late_events=50, import_events=40, finish_scans=True,
                        new_scans=2, advance_compliance=10, insert_compliance=10, bulk_import=1500, late_project=1,
                        late_scan=2)  # fmt: skip
    export.state.advance_clock(600)


def _first_project(export: Export) -> str:
    return sorted(str(p["id"]) for p in export.state.truth("projects"))[0]


def _assert_equal_to_server(export: Export, profiles: str) -> None:
    skipped = {"scan-404": ("tracker_scan_configs", "tracker_scans"), "types-403": ("consent_types",)}
    excluded = {table for name, tables in skipped.items() if name in profiles.split(",") for table in tables}
    for table in SOURCE_TABLES:
        if table not in excluded:
            assert_table_matches(export, table)
    refused = _first_project(export)
    for table in excluded:  # every row but those of the project the server refuses
        spec = settings.ALL_TABLE_SPECS[table]
        want = {k for k, row in expected_rows(export, table).items() if refused not in (row.get("project"), row.get("project_id"))}
        got = {_key(spec, row) for row in export.rows(table)}
        assert want and got == want, f"{table}: {len(want - got)} missing, {len(got - want)} unexpected"


@pytest.mark.parametrize("profiles", PROFILES)
def test_two_incremental_runs_equal_the_server_under_each_profile(make_export, profiles: str) -> None:
    export = make_export(events=3000, profiles=profiles)
    first = _run(export)
    _changes(export)
    second = _run(export)
    _assert_equal_to_server(export, profiles)
    if "rate-limit" in profiles:
        assert sum(s.throttled for s in first.resources.values()) > 0, "the profile should have throttled the run"
    if profiles in ("scan-404", "types-403"):
        resource = "tracker_scans" if profiles == "scan-404" else "consent_types"
        assert any(_first_project(export) in line for line in second.resources[resource].skipped)
        assert f"skipped in {resource}: project {_first_project(export)}" in second.summary()
    if "date-filter" in profiles:
        assert second.resources["consent_events"].swept > 0, "updates to older events come from the dateUpdated sweep"


def test_windows_end_at_the_servers_clock_not_the_hosts(make_export, caplog) -> None:
    """The sandbox's clock is days behind this host's: cursors follow the server, and the host's clock is named."""
    export = make_export(events=500)
    with caplog.at_level("WARNING"):
        export.run(lag_seconds=60, resources=["consent_events"])
    pipeline = dlt.attach(export.pipeline_name, pipelines_dir=str(export.tmp / "pipelines"))
    cursor = datetime.fromisoformat(pipeline.state["sources"]["concord"]["resources"]["consent_events"]["cursor"])
    server_end = export.now() - timedelta(seconds=60)  # the Date header has whole seconds: at most 1 s later
    assert server_end <= cursor <= server_end + timedelta(seconds=2), (cursor, server_end)
    assert any("ahead of the API server's" in r.getMessage() for r in caplog.records)
    export.state.advance_clock(3600)
    export.state.mutate(insert_events=25)
    export.state.advance_clock(120)
    export.run(lag_seconds=60, resources=["consent_events"])
    assert_table_matches(export, "consent_events")  # a host clock ahead would have moved the cursor past these


def test_a_plain_dlt_pipeline_run_leaves_no_http_worker_threads(make_export, tmp_path) -> None:
    import threading
    import time

    from concord_pipelines.concord.source import concord_source

    export = make_export(events=300, profiles="no-total")
    pipeline = dlt.pipeline("plain_threads", destination=dlt.destinations.duckdb(str(tmp_path / "plain.duckdb")),
                            dataset_name="concord", pipelines_dir=str(tmp_path / "plain"))  # fmt: skip
    pipeline.run(concord_source(organization_id=export.sandbox.org_id, api_key=export.sandbox.api_key,
                                base_url=export.sandbox.base_url, lag_seconds=0))  # fmt: skip
    deadline = time.monotonic() + 5
    while [t for t in threading.enumerate() if t.name.startswith("concord-http")] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("concord-http")]
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql(f"SELECT count(*) FROM {sql.make_qualified_table_name('consent_events')}")[0][0]
    assert rows == len(export.state.truth("consent-events"))
