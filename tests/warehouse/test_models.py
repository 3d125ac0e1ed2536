"""The dbt project (pipelines/concord_pipelines/dbt/concord) on DuckDB, through the interfaces users touch: `concord-pipeline run`
builds and tests it after the load, the marts equal answers computed in Python from the sandbox's truth
(tests/warehouse/truth.py), a broken row fails the test named after it, freshness and `dbt docs generate` work,
and the CDR models build over a `concord-pipeline cdr-metrics` export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from concord_pipelines.concord.settings import ALL_TABLE_SPECS, DEFAULT_DATASET
from concord_pipelines.dbt_runner import DbtTarget, run_dbt
from concord_pipelines.dbt_sources import stale_files
from tests.warehouse.truth import MARTS, assert_view_matches

pytestmark = pytest.mark.slow
BUILD_LINE = re.compile(r"dbt build: (\d+) passed, (\d+) failed, (\d+) errors")


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> CliRun:
    """`concord-pipeline ...` as a user runs it; dbt at its default (on) unless the arguments say otherwise."""
    base = {k: v for k, v in os.environ.items() if k != "SOURCES__CONCORD__DBT"}
    proc = subprocess.run([sys.executable, "-m", "concord_pipelines.cli", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def concord_run(sandbox, folder: Path, *extra: str) -> CliRun:
    folder.mkdir(parents=True, exist_ok=True)
    return cli("run", "--org", sandbox.org_id, "--base-url", sandbox.base_url, "--duckdb-path",
               str(folder / "concord.duckdb"), "--pipelines-dir", str(folder / "pipelines"), "--lag-seconds", "0",
               "--quiet", *extra, env={"SOURCES__CONCORD__API_KEY": sandbox.api_key})


def query(path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute(f'USE "{path.stem}"."{DEFAULT_DATASET}"')
        cur = conn.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()


@pytest.fixture(scope="module")
def cli_build(sandbox, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRun, Path]:
    folder = tmp_path_factory.mktemp("dbt_cli")
    run = concord_run(sandbox, folder)
    return run, folder


def test_generated_sources_and_staging_are_current() -> None:
    assert stale_files() == [], "run: python -m concord_pipelines.dbt_sources --write"


def test_cli_run_builds_and_tests_every_model(cli_build: tuple[CliRun, Path], sandbox) -> None:
    run, _ = cli_build
    assert run.returncode == 0, run.stderr[-3000:]
    match = BUILD_LINE.search(run.stdout)
    assert match, run.stdout[-2000:]
    passed, failed, errors = map(int, match.groups())
    # 16 staging + 7 marts + 4 v1 views, their data tests and the unit tests: all ran, all passed
    assert (failed, errors) == (0, 0) and passed >= 100, run.stdout[-2000:]
    assert ", 0 skipped" in run.stdout
    assert sandbox.api_key not in run.stdout + run.stderr


@pytest.mark.parametrize("mart", MARTS)
def test_mart_matches_truth_on_duckdb(mart: str, cli_build: tuple[CliRun, Path], sandbox) -> None:
    _, folder = cli_build
    columns, rows = query(folder / "concord.duckdb", f'SELECT * FROM "{mart}"')
    assert rows, f"{mart} is empty: the sandbox should give it rows"
    assert_view_matches(mart, columns, rows, sandbox.state)


def test_demo_builds_every_model_and_its_data_is_fresh(tmp_path: Path) -> None:
    """The README's first command: the demo's export passes every dbt test, and its data (the sandbox at the
    current time) passes every freshness threshold."""
    path = tmp_path / "concord.duckdb"
    run = cli("demo", "--events", "1000", "--duckdb-path", str(path))
    assert run.returncode == 0, run.stderr[-3000:]
    match = BUILD_LINE.search(run.stdout)
    assert match and match.group(2, 3) == ("0", "0") and int(match.group(1)) >= 100, run.stdout[-2000:]
    fresh = run_dbt(DbtTarget.duckdb(str(path), "concord_demo"), "source freshness", variables={"cdr_enabled": False})
    assert fresh.ok and fresh.passed >= 8 and not fresh.warned, fresh.summary_line()


def test_no_dbt_flag_skips_the_build(sandbox, tmp_path: Path) -> None:
    run = concord_run(sandbox, tmp_path, "--no-dbt", "--resources", "projects")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "dbt build" not in run.stdout
    _, rows = query(tmp_path / "concord.duckdb", "SELECT table_name FROM information_schema.tables "
                    "WHERE table_name LIKE 'stg_%' OR table_name LIKE 'concord_%'")
    assert rows == []


def test_a_partial_export_builds_what_its_tables_allow(sandbox, tmp_path: Path) -> None:
    """Only compliance requests loaded: their models build and pass, the others are left out, not errors."""
    run = concord_run(sandbox, tmp_path, "--resources", "compliance_requests")
    assert run.returncode == 0, run.stderr[-2000:]
    match = BUILD_LINE.search(run.stdout)
    assert match and match.group(2, 3) == ("0", "0"), run.stdout[-2000:]
    _, rows = query(tmp_path / "concord.duckdb", "SELECT table_name FROM information_schema.tables "
                    "WHERE table_name LIKE 'concord_%' ORDER BY 1")
    assert [r[0] for r in rows] == ["concord_compliance_resolution_time", "concord_compliance_sla"]


def test_pii_drop_is_respected_by_the_staging_models(sandbox, tmp_path: Path) -> None:
    """--pii drop leaves the identifier columns out of the tables: staging keeps them as NULLs, never fails."""
    run = concord_run(sandbox, tmp_path, "--pii", "drop", "--resources", "projects,consent_types,consent_events")
    assert run.returncode == 0, run.stderr[-2000:]
    match = BUILD_LINE.search(run.stdout)
    assert match and match.group(2, 3) == ("0", "0"), run.stdout[-2000:]
    _, rows = query(tmp_path / "concord.duckdb", "SELECT count(*), count(session_ip_address), count(session_user_agent) "
                    "FROM stg_concord__consent_events")
    assert rows[0][0] > 0 and rows[0][1:] == (0, 0)


def _break(path: Path) -> None:
    """A duplicate key and an unknown enum value, as a bad upstream or a hand edit would leave them."""
    with duckdb.connect(str(path)) as conn:
        conn.execute(f'USE "{path.stem}"."{DEFAULT_DATASET}"')
        # the oldest row: the next run's look-back window re-reads (and would merge away) only recent ones
        oldest = "FROM consent_events ORDER BY date_updated, id LIMIT 1"
        conn.execute(f"INSERT INTO consent_events SELECT * {oldest}")
        conn.execute(f"INSERT INTO consent_events SELECT * REPLACE ('broken-enum-row' AS id, 'maybe' AS consent_state) {oldest}")


def test_broken_rows_fail_the_named_tests_without_undoing_the_load(cli_build: tuple[CliRun, Path], sandbox,
                                                                   tmp_path: Path) -> None:
    _, folder = cli_build
    shutil.copytree(folder, tmp_path / "run")
    path = tmp_path / "run" / "concord.duckdb"
    _break(path)
    _, before = query(path, "SELECT count(*) FROM consent_events")

    reported = concord_run(sandbox, tmp_path / "run")  # default: reported, exit 0
    assert reported.returncode == 0, reported.stderr[-2000:]
    line = next(x for x in reported.stdout.splitlines() if x.startswith("dbt build:"))
    assert "unique_stg_concord__consent_events_id" in line
    assert "accepted_values_stg_concord__consent_events_consent_state" in line

    failing = concord_run(sandbox, tmp_path / "run", "--fail-on-dbt-test")
    assert failing.returncode == 5, failing.stderr[-2000:]
    assert "Traceback" not in failing.stderr
    error = failing.stderr.strip().splitlines()[-1]
    assert error.startswith("error: dbt build:") and "unique_stg_concord__consent_events_id" in error, error
    assert "dbt build:" in failing.stdout  # the summary still shows what loaded
    _, after = query(path, "SELECT count(*) FROM consent_events")
    assert after == before, "a failing dbt test must not undo the load"


def _set_freshness_fields(path: Path, consent_events_age_days: int) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(f'USE "{path.stem}"."{DEFAULT_DATASET}"')
        for table in ("consent_events", "compliance_requests", "compliance_request_events"):
            conn.execute(f"UPDATE {table} SET date_updated = now()")
        conn.execute("UPDATE tracker_scans SET scan_date = now() WHERE scan_date = (SELECT max(scan_date) FROM tracker_scans)")
        conn.execute("UPDATE usage_daily SET fetched_at = now()")
        for table in [t for t in ALL_TABLE_SPECS if t.startswith("usage_") and t != "usage_daily"]:
            conn.execute(f"UPDATE {table} SET date = current_date WHERE date = (SELECT max(date) FROM {table})")
        conn.execute(f"UPDATE consent_events SET date_updated = now() - INTERVAL {consent_events_age_days} DAY")


def test_source_freshness_names_the_stale_table(cli_build: tuple[CliRun, Path], tmp_path: Path) -> None:
    path = tmp_path / "concord.duckdb"
    shutil.copy(cli_build[1] / "concord.duckdb", path)
    target = DbtTarget.duckdb(str(path), DEFAULT_DATASET)
    _set_freshness_fields(path, consent_events_age_days=0)
    fresh = run_dbt(target, "source freshness", variables={"cdr_enabled": False})
    assert fresh.ok and fresh.passed >= 8 and not fresh.failures, fresh.summary_line()
    _set_freshness_fields(path, consent_events_age_days=10)  # error_after is 4 days
    stale = run_dbt(target, "source freshness", variables={"cdr_enabled": False})
    assert not stale.ok and stale.failures == ["concord.consent_events"], stale.summary_line()


def test_docs_generate_builds_the_catalogue(cli_build: tuple[CliRun, Path], tmp_path: Path) -> None:
    path = tmp_path / "concord.duckdb"
    shutil.copy(cli_build[1] / "concord.duckdb", path)
    result = run_dbt(DbtTarget.duckdb(str(path), DEFAULT_DATASET), "docs generate", variables={"cdr_enabled": False},
                     work_dir=str(tmp_path))
    assert result.returncode == 0, result.message
    catalog = json.loads((tmp_path / "target" / "catalog.json").read_text())
    assert "model.concord.concord_consent_state" in catalog["nodes"]
    assert "source.concord.concord.consent_events" in catalog["sources"]
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    source = manifest["sources"]["source.concord.concord.consent_events"]
    assert source["description"].startswith("One row per consent event") and source["loaded_at_field"] == "date_updated"
    assert (tmp_path / "target" / "index.html").exists()


def test_cdr_models_build_over_a_cdr_export(tmp_path: Path) -> None:
    path = tmp_path / "cdr.duckdb"
    export = cli("cdr-metrics", "--sandbox", "--holder", "bank", "--duckdb-path", str(path),
                 "--pipelines-dir", str(tmp_path / "dlt"))
    assert export.returncode == 0, export.stderr[-2000:]
    build = subprocess.run([sys.executable, "-m", "concord_pipelines.dbt_runner", "build", "--cdr", "--duckdb-path", str(path)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0 and ", 0 failed, 0 errors" in build.stdout, build.stdout + build.stderr[-2000:]
    with duckdb.connect(str(path), read_only=True) as conn:
        wide = conn.execute("SELECT data_holder, day, session_count, invocations FROM cdr_metrics.cdr_daily_metrics_by_holder "
                            "ORDER BY day").fetchall()
        raw = conn.execute("SELECT period_date, sum(value) FILTER (WHERE metric = 'session_count'), "
                           "sum(value) FILTER (WHERE metric = 'invocations') FROM cdr_metrics.metric_observations "
                           "WHERE grain = 'day' GROUP BY 1 ORDER BY 1").fetchall()
    assert len(wide) == len(raw) >= 7
    assert [(r[1], r[2], r[3]) for r in wide] == raw
    assert {r[0] for r in wide} == {"bank"}
