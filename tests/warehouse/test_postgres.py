"""PostgreSQL as a warehouse, for real: a throwaway server (conftest.postgres_server), the same sandbox
exported into DuckDB and into PostgreSQL, compared table for table and row for row, and the dbt marts
built on PostgreSQL (by dbt directly and by `concord-pipeline run --destination postgres`) checked against the
Python-computed truth."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from concord_pipelines.concord import settings
from concord_pipelines.dbt_runner import postgres_target, run_dbt
from tests.warehouse.test_models import BUILD_LINE, cli
from tests.warehouse.truth import MARTS, assert_view_matches

pytestmark = pytest.mark.postgres

DATASET = settings.DEFAULT_DATASET
# Differ between two loads of the same data by design: dlt's load bookkeeping and fetch times.
VOLATILE_COLUMNS = {"fetched_at"}


def _normalise(value: Any, kind: str | None) -> Any:
    if value is None:
        return None
    if kind == settings.JSON or isinstance(value, dict | list):
        parsed = json.loads(value) if isinstance(value, str) else value
        return json.dumps(parsed, sort_keys=True)
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return round(value, 9) if math.isfinite(value) else str(value)
    return value


def _sortable(row: tuple) -> tuple:
    return tuple((v is None, str(v)) for v in row)


def _user_columns(columns: list[str]) -> list[str]:
    return sorted(c for c in columns if not c.startswith("_dlt_") and c not in VOLATILE_COLUMNS)


def duckdb_tables(path: Path) -> dict[str, list[str]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ? "
                            "AND table_catalog = current_database()", [DATASET]).fetchall()
    return _group(rows)


def postgres_tables(conn: Any) -> dict[str, list[str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN information_schema.tables t "
                    "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                    "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE'", (DATASET,))
        return _group(cur.fetchall())


def _group(rows: list[tuple]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        if not table.startswith("_dlt_") and not table.startswith("v1_"):
            tables.setdefault(table, []).append(column)
    return tables


def rows_of(fetch: Any, table: str, columns: list[str]) -> list[tuple]:
    kinds = settings.ALL_TABLE_SPECS[table].columns if table in settings.ALL_TABLE_SPECS else {}
    out = [tuple(_normalise(v, kinds.get(c)) for v, c in zip(row, columns, strict=True)) for row in fetch(table, columns)]
    return sorted(out, key=_sortable)


@pytest.fixture(scope="module")
def pg_conn(postgres_export):
    conn = psycopg2.connect(postgres_export.url)
    yield conn
    conn.close()


def test_postgres_matches_duckdb_table_for_table_row_for_row(duckdb_export: Path, pg_conn: Any) -> None:
    duck, pg = duckdb_tables(duckdb_export), postgres_tables(pg_conn)
    assert set(pg) == set(duck), f"tables differ: only duckdb {set(duck) - set(pg)}, only postgres {set(pg) - set(duck)}"
    for expected in ("consent_events", "compliance_requests", "tracker_scans", "projects", "consent_types"):
        assert expected in duck
    compared = 0
    with duckdb.connect(str(duckdb_export), read_only=True) as dconn:
        dconn.execute(f'USE "{duckdb_export.stem}"."{DATASET}"')

        def from_duck(table: str, columns: list[str]) -> list[tuple]:
            return dconn.execute(f'SELECT {", ".join(map(_q, columns))} FROM {_q(table)}').fetchall()

        def from_pg(table: str, columns: list[str]) -> list[tuple]:
            with pg_conn.cursor() as cur:
                cur.execute(f'SELECT {", ".join(map(_q, columns))} FROM {_q(DATASET)}.{_q(table)}')
                return cur.fetchall()

        for table in sorted(duck):
            columns = _user_columns(duck[table])
            assert columns == _user_columns(pg[table]), f"{table}: columns differ"
            d_rows, p_rows = rows_of(from_duck, table, columns), rows_of(from_pg, table, columns)
            assert len(d_rows) == len(p_rows), f"{table}: {len(d_rows)} rows in DuckDB, {len(p_rows)} in PostgreSQL"
            for d_row, p_row in zip(d_rows, p_rows, strict=True):
                assert d_row == p_row, f"{table}: first differing row\n duckdb   {d_row}\n postgres {p_row}"
            compared += len(d_rows)
    assert compared > 2000  # the consent events alone


def test_row_counts_match_the_sandbox(pg_conn: Any, sandbox) -> None:
    truth = {"consent_events": len(sandbox.state.truth("consent-events")),
             "compliance_requests": len(sandbox.state.truth("compliance-requests")),
             "projects": len(sandbox.state.truth("projects")),
             "tracker_scans": sum(len(c["scanHistory"]) for c in sandbox.state.truth("tracker-scan-history"))}
    with pg_conn.cursor() as cur:
        for table, want in truth.items():
            cur.execute(f"SELECT count(*) FROM {_q(DATASET)}.{_q(table)}")
            assert cur.fetchone()[0] == want, table


DBT_SCHEMA = "concord_dbt"  # the marts next to, not inside, the compared dataset: the dataset is a dbt var


@pytest.fixture(scope="module")
def pg_marts(postgres_export):
    result = run_dbt(postgres_target(DBT_SCHEMA, postgres_export.url), "build",
                     variables={"cdr_enabled": False, "concord_schema": DATASET})
    assert result.ok and result.passed >= 100, result.summary_line()
    return postgres_export


@pytest.mark.parametrize("mart", MARTS)
def test_marts_match_truth_on_postgres(mart: str, pg_marts, sandbox) -> None:
    with psycopg2.connect(pg_marts.url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {_q(DBT_SCHEMA)}.{_q(mart)}")
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert rows
    assert_view_matches(mart, columns, rows, sandbox.state)


MODELS_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "concord_pipelines" / "dbt" / "concord" / "models"
# name -> PostgreSQL table_type: +materialized view, marts tables (dbt_project.yml); the CDR models are off here
CONCORD_MODELS = {p.stem: "BASE TABLE" if p.parent.parent.name == "marts" else "VIEW"
                  for p in MODELS_DIR.rglob("*.sql") if "cdr" not in p.parts}


def test_cli_run_into_postgres_builds_and_tests_the_models(postgres_server, sandbox, tmp_path: Path) -> None:
    """The CLI builds after its load into PostgreSQL (credentials from dlt's env var, never printed); a broken
    row then fails the named test, with exit 5 under --fail-on-dbt-test, and the load stays."""
    dataset = "concord_cli"
    env = {"DESTINATION__POSTGRES__CREDENTIALS": postgres_server.url, "SOURCES__CONCORD__API_KEY": sandbox.api_key}
    args = ("run", "--destination", "postgres", "--dataset", dataset, "--org", sandbox.org_id, "--base-url",
            sandbox.base_url, "--pipelines-dir", str(tmp_path / "pipelines"), "--lag-seconds", "0", "--quiet")
    run = cli(*args, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    match = BUILD_LINE.search(run.stdout)
    assert match and match.group(2, 3) == ("0", "0") and int(match.group(1)) >= 100, run.stdout[-2000:]
    assert postgres_server.password not in run.stdout + run.stderr and sandbox.api_key not in run.stdout + run.stderr
    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
        # every Concord model of the dbt project is in the dataset: staging and compat views, mart tables
        cur.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = %s", (dataset,))
        built = dict(cur.fetchall())
        assert {m: built.get(m) for m in CONCORD_MODELS} == CONCORD_MODELS, "models missing or of the wrong kind"
        for view in MARTS:  # the marts and their v1_ views equal the answers computed from the sandbox
            cur.execute(f"SELECT * FROM {_q(dataset)}.{_q(view)}")
            assert_view_matches(view, [d[0] for d in cur.description], cur.fetchall(), sandbox.state)
        cur.execute(f"INSERT INTO {_q(dataset)}.consent_events SELECT * FROM {_q(dataset)}.consent_events "
                    "ORDER BY date_updated, id LIMIT 1")  # the oldest: outside the next run's look-back
        cur.execute(f"SELECT count(*) FROM {_q(dataset)}.consent_events")
        before = cur.fetchone()[0]
    failing = cli(*args, "--fail-on-dbt-test", env=env)
    assert failing.returncode == 5, failing.stderr[-3000:]
    error = failing.stderr.strip().splitlines()[-1]
    assert error.startswith("error: dbt build:") and "unique_stg_concord__consent_events_id" in error, error
    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {_q(dataset)}.consent_events")
        assert cur.fetchone()[0] == before, "a failing dbt test must not undo the load"
        # the sandbox's clock is fixed in the past: bring the freshness fields to now, then freshness passes
        for table, column in (("consent_events", "date_updated"), ("compliance_requests", "date_updated"),
                              ("compliance_request_events", "date_updated"), ("tracker_scans", "scan_date"),
                              ("usage_daily", "fetched_at")):
            cur.execute(f"UPDATE {_q(dataset)}.{table} SET {column} = now()")
        for table in [t for t in settings.ALL_TABLE_SPECS if t.startswith("usage_") and t != "usage_daily"]:
            cur.execute(f"UPDATE {_q(dataset)}.{table} SET date = current_date WHERE date = (SELECT max(date) FROM {_q(dataset)}.{table})")
        conn.commit()
        fresh = run_dbt(postgres_target(dataset, postgres_server.url), "source freshness",
                        variables={"cdr_enabled": False})
        assert fresh.ok and fresh.passed >= 8, fresh.summary_line()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
