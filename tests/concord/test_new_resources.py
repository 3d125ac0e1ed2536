"""data_systems and regions end to end: the real CLI in a subprocess, the sandbox over HTTP, a DuckDB file.

Expected rows come from the sandbox truth through the fixtures' own flattening (`leaves`), not the
connector's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from concord_pipelines.concord import settings
from tests.concord.conftest import Export, _normal, leaves

REPO = Path(__file__).resolve().parents[2]


def run_cli(export: Export, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__"))}
    # dbt off, as tests/conftest.py sets it for every test: the dbt tests (tests/warehouse) build the models
    env.update(PYTHONPATH=str(REPO), SOURCES__CONCORD__API_KEY=export.sandbox.api_key, SOURCES__CONCORD__DBT="false")
    args = ["run", "--org", export.sandbox.org_id, "--base-url", export.sandbox.base_url,
            "--duckdb-path", export.duckdb_path, "--pipeline-name", export.pipeline_name,
            "--pipelines-dir", str(export.tmp / "pipelines"), "--lag-seconds", "0", "--quiet", *extra]
    cwd.mkdir(exist_ok=True)  # an empty cwd: the repo's .dlt/ folder must not be picked up
    return subprocess.run([sys.executable, "-m", "concord_pipelines.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_equal_to_truth(export: Export, table: str, resource: str, projects: set[str] | None = None) -> None:
    spec = settings.ALL_TABLE_SPECS[table]
    truth = [leaves(item) for item in export.state.truth(resource)]
    if projects is not None:
        truth = [row for row in truth if row.get("project") in projects or set(row.get("project_ids") or ()) & projects]
    expected = {row["id"]: row for row in truth}
    rows = export.rows(table)
    actual = {row["id"]: row for row in rows}
    assert len(actual) == len(rows), f"{table}: duplicate ids"
    assert actual.keys() == expected.keys(), f"{table}: {len(expected.keys() - actual.keys())} missing, " \
                                             f"{len(actual.keys() - expected.keys())} unexpected"
    for key, want in expected.items():
        for column, value in want.items():
            kind = spec.columns.get(column)
            assert kind is not None, f"{table}: source field {column} has no declared column"
            got = actual[key][column]
            assert _normal(kind, got) == _normal(kind, value), f"{table} {key}: {column} = {got!r}, source {value!r}"


def test_a_full_cli_run_exports_both_tables_equal_to_the_sandbox(make_export: Any, tmp_path: Path) -> None:
    export = make_export(events=300)
    result = run_cli(export, tmp_path / "cwd")
    assert result.returncode == 0, result.stderr
    assert_equal_to_truth(export, "data_systems", "data-systems")
    assert_equal_to_truth(export, "regions", "regions")
    assert export.count("data_systems") == 8 and export.count("regions") >= 3 * 3
    banner = export.rows("regions")[0]
    assert isinstance(banner["banner__show_reject_all"], bool) and isinstance(banner["banner__version"], int)


def test_changes_and_late_projects_arrive_on_the_next_run(make_export: Any, tmp_path: Path) -> None:
    export = make_export(events=100)
    assert run_cli(export, tmp_path / "cwd", "--resources", "data_systems,regions").returncode == 0
    before = export.count("regions")
    new_project = export.state.mutate(late_project=1)["late_projects"][0]  # dated 30 days back
    with export.state.lock:  # a data system renamed now: the newer version must replace the old row
        system = export.state.data_systems[0]
        system.update(name="Salesforce CRM (EU)", dateUpdated=system["dateUpdated"] + 86_400_000)
    export.state.advance_clock(3600)
    result = run_cli(export, tmp_path / "cwd", "--resources", "data_systems,regions")
    assert result.returncode == 0, result.stderr
    assert_equal_to_truth(export, "data_systems", "data-systems")
    assert_equal_to_truth(export, "regions", "regions")
    assert export.count("regions") > before
    assert any(row["project"] == new_project for row in export.rows("regions"))
    assert [r["name"] for r in export.rows("data_systems") if r["id"] == system["id"]] == ["Salesforce CRM (EU)"]


def test_project_option_limits_both_tables(make_export: Any, tmp_path: Path) -> None:
    export = make_export(events=100)
    project = export.state.projects[1]["id"]
    result = run_cli(export, tmp_path / "cwd", "--resources", "regions,data_systems", "--project", project)
    assert result.returncode == 0, result.stderr
    assert {row["project"] for row in export.rows("regions")} == {project}
    assert_equal_to_truth(export, "regions", "regions", {project})
    assert_equal_to_truth(export, "data_systems", "data-systems", {project})


def test_unknown_resource_error_names_the_new_ones(make_export: Any, tmp_path: Path) -> None:
    export = make_export(events=50)
    result = run_cli(export, tmp_path / "cwd", "--resources", "regionz")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: unknown resource 'regionz'")
    assert errors[0].endswith("data_systems, regions") and "Traceback" not in result.stderr
