"""PostgreSQL as a warehouse, for real: a throwaway server (conftest.postgres_server), the same sandbox
exported into DuckDB and into PostgreSQL, compared table for table and row for row, and the SQL views
checked on PostgreSQL against the Python-computed truth."""

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

from pipelines.concord import settings
from pipelines.models import MODEL_NAMES, apply, use_dataset
from tests.warehouse.truth import assert_view_matches

pytestmark = pytest.mark.postgres

DATASET = "concord"
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
        use_dataset(dconn, DATASET)

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


@pytest.mark.parametrize("view", MODEL_NAMES)
def test_views_match_truth_on_postgres(view: str, postgres_export, sandbox) -> None:
    result = apply(destination="postgres", credentials=postgres_export.url)
    assert result["created"] == list(MODEL_NAMES)
    with psycopg2.connect(postgres_export.url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {_q(DATASET)}.{_q(view)}")
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert rows
    assert_view_matches(view, columns, rows, sandbox.state)


def test_views_through_dlt_config_credentials(postgres_export, monkeypatch: pytest.MonkeyPatch) -> None:
    """`apply("postgres")` with no URL reads DESTINATION__POSTGRES__CREDENTIALS, like run_export does."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres_export.url)
    assert apply(destination="postgres")["created"] == list(MODEL_NAMES)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
