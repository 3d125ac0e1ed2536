"""The SQL views on DuckDB: created after an export, and equal to answers computed in Python from the
sandbox's truth (tests/warehouse/truth.py), not by re-running the SQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.models import MODEL_NAMES, MODELS, apply, create_models, use_dataset, view_sql
from tests.warehouse.truth import assert_view_matches


@pytest.fixture(scope="module")
def modelled_duckdb(duckdb_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "concord.duckdb"
    shutil.copy(duckdb_export, path)
    result = apply(destination="duckdb", duckdb_path=str(path))
    assert result == {"created": list(MODEL_NAMES), "skipped": []}
    return path


@pytest.mark.parametrize("view", MODEL_NAMES)
def test_view_matches_truth_on_duckdb(view: str, modelled_duckdb: Path, sandbox) -> None:
    with duckdb.connect(str(modelled_duckdb), read_only=True) as conn:
        cur = use_dataset(conn).execute(f'SELECT * FROM "{view}"')
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert rows, f"{view} is empty: the sandbox should give it rows"
    assert_view_matches(view, columns, rows, sandbox.state)


def test_views_are_versioned_and_idempotent(modelled_duckdb: Path) -> None:
    for model in MODELS:
        assert model.name.split("_")[0][0] == "v" and model.name.split("_")[0][1:].isdigit(), model.name
        assert (Path(__file__).parents[2] / "pipelines" / "models" / "sql" / f"{model.name}.sql").exists()
    with duckdb.connect(str(modelled_duckdb)) as conn:
        again = create_models(conn, "concord")  # CREATE OR REPLACE: running after every load is safe
        assert again["created"] == list(MODEL_NAMES)
        views = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'concord' AND table_type = 'VIEW'"
        ).fetchall()}
    assert set(MODEL_NAMES) <= views


def test_views_whose_tables_are_missing_are_skipped(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "partial.duckdb")) as conn:
        conn.execute("CREATE SCHEMA concord")
        conn.execute("CREATE TABLE concord.compliance_requests (request TEXT, request_date TIMESTAMPTZ, "
                     "resolved_date TIMESTAMPTZ)")
        conn.execute("INSERT INTO concord.compliance_requests VALUES ('delete', '2026-01-01 00:00:00+00', "
                     "'2026-01-03 12:00:00+00'), ('delete', '2026-01-01 00:00:00+00', NULL)")
        result = create_models(conn, "concord")
        assert result["created"] == ["v1_compliance_resolution_time"]
        assert set(result["skipped"]) == set(MODEL_NAMES) - {"v1_compliance_resolution_time"}
        row = conn.execute("SELECT requests, resolved, avg_days, median_days FROM concord.v1_compliance_resolution_time").fetchone()
    assert row == (2, 1, 2.5, 2.5)


def test_view_sql_quotes_the_dataset() -> None:
    sql = view_sql(MODELS[0], 'my "odd" dataset', "postgres")
    assert sql.startswith('CREATE OR REPLACE VIEW "my ""odd"" dataset"."v1_daily_consent_rate" AS')
    assert '"my ""odd"" dataset".consent_events' in sql and "{dataset}" not in sql
    duck = view_sql(MODELS[0], "concord", "duckdb", catalog="concord")
    assert duck.startswith('CREATE OR REPLACE VIEW "concord"."concord"."v1_daily_consent_rate" AS')
    assert " consent_events AS e" in duck and "{dataset}" not in duck


def test_duckdb_views_survive_a_renamed_file(modelled_duckdb: Path, tmp_path: Path, sandbox) -> None:
    """Views bind to their own catalog: a copy of the file under another name still answers."""
    copy = tmp_path / "renamed.duckdb"
    shutil.copy(modelled_duckdb, copy)
    with duckdb.connect(str(copy), read_only=True) as conn:
        cur = conn.execute("SELECT * FROM concord.v1_compliance_resolution_time")
        columns, rows = [d[0] for d in cur.description], cur.fetchall()
    assert_view_matches("v1_compliance_resolution_time", columns, rows, sandbox.state)
