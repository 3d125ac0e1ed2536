"""Shared helpers for the reliability tests: warehouse and state snapshots, the real CLI in a subprocess.

The sandbox, `Export` and the truth comparison come from tests/concord/conftest.py (re-exported
here as fixtures) so every reliability test checks the same thing: the warehouse equals the source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from tests.concord.conftest import Export, make_export  # noqa: F401 - re-exported fixture

REPO = Path(__file__).resolve().parents[2]


def warehouse_snapshot(export: Export) -> dict[str, list[tuple[str, ...]]]:
    """Every table of the DuckDB file (data and `_dlt_*`), rows as sorted tuples of text."""
    if not Path(export.duckdb_path).exists():
        return {}
    with duckdb.connect(export.duckdb_path, read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        return {
            f"{schema}.{table}": sorted(tuple(map(str, row)) for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall())
            for schema, table in tables
        }


def resource_state(export: Export) -> dict[str, Any]:
    """The dlt resource state (cursors, pending scans) as the pipeline's working folder holds it."""
    pipelines_dir = export.tmp / "pipelines"
    if not (pipelines_dir / export.pipeline_name).exists():
        return {}
    pipeline = dlt.attach(export.pipeline_name, pipelines_dir=str(pipelines_dir))
    return json.loads(json.dumps(pipeline.state.get("sources", {}), default=str))


def stored_state_versions(export: Export) -> list[tuple[Any, ...]]:
    """(version, load id) of every `_dlt_pipeline_state` row: a failed run must add none."""
    if not Path(export.duckdb_path).exists():
        return []
    with duckdb.connect(export.duckdb_path, read_only=True) as con:
        try:
            return con.execute('SELECT version, _dlt_load_id FROM "concord_data"."_dlt_pipeline_state" ORDER BY 1').fetchall()
        except duckdb.CatalogException:
            return []


@dataclass
class Snapshot:
    """What a failed run must leave untouched: every table, the local state and the stored state."""

    tables: dict[str, list[tuple[str, ...]]]
    state: dict[str, Any]
    stored: list[tuple[Any, ...]]

    @classmethod
    def take(cls, export: Export) -> Snapshot:
        return cls(warehouse_snapshot(export), resource_state(export), stored_state_versions(export))

    def assert_unchanged(self, export: Export) -> None:
        now = Snapshot.take(export)
        changed = sorted(t for t in self.tables.keys() | now.tables.keys() if self.tables.get(t) != now.tables.get(t))
        assert not changed, f"a failed run changed tables {changed}"
        assert now.state == self.state, "a failed run changed the dlt resource state"
        assert now.stored == self.stored, "a failed run stored a new pipeline state"


def pending_packages(export: Export) -> list[str]:
    """Load packages dlt has extracted or normalized but not loaded yet."""
    pipelines_dir = export.tmp / "pipelines"
    if not (pipelines_dir / export.pipeline_name).exists():
        return []
    pipeline = dlt.attach(export.pipeline_name, pipelines_dir=str(pipelines_dir))
    return list(pipeline.list_extracted_load_packages()) + list(pipeline.list_normalized_load_packages())


def cli_env(export: Export | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: no inherited SOURCES__/DESTINATION__ settings, the repo importable.

    dbt stays off (tests/conftest.py): a CLI run would otherwise build and test every model after its
    load, tens of seconds each on CI's two cores, and the dbt tests (tests/warehouse) prove that. A test
    that wants the build passes SOURCES__CONCORD__DBT="true"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__"))}
    env["SOURCES__CONCORD__DBT"] = "false"
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    if export is not None:
        env["SOURCES__CONCORD__API_KEY"] = export.sandbox.api_key
    env.update(extra)
    return env


def cli_args(export: Export, *extra: str) -> list[str]:
    """`run` arguments aimed at the export's sandbox, DuckDB file and pipelines dir (small backoff via env)."""
    return [
        "run", "--org", export.sandbox.org_id, "--base-url", export.sandbox.base_url,
        "--duckdb-path", export.duckdb_path, "--pipeline-name", export.pipeline_name,
        "--pipelines-dir", str(export.tmp / "pipelines"), "--lag-seconds", "0", "--quiet", *extra,
    ]


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "concord_pipelines.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def catch_up_clock(export: Export) -> None:
    """Put the sandbox clock just behind real time: the CLI has no --now, its windows end at the real now,
    so changes made at the sandbox's (past) clock would fall behind the cursor of an earlier CLI run."""
    export.state.set_now(datetime.now(tz=UTC) - timedelta(minutes=5))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty cwd so the repo's .dlt/ folder is not picked up by the CLI."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


# every resource that fills a table assert_warehouse_matches compares (usage metrics are checked elsewhere)
SOURCE_RESOURCES = ["projects", "consent_events", "consent_types", "compliance_requests", "compliance_request_events", "tracker_scans"]
