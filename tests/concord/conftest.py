"""Fixtures for end-to-end Concord exports: a sandbox on loopback, a real DuckDB file, and the truth.

The expected rows are derived here from the sandbox's own items with a deliberately separate,
simple flattening (walk the leaves, camelCase -> snake_case by regex) so a bug in the
connector's flattening cannot hide itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from concord_pipelines.concord import settings
from concord_pipelines.concord.runner import RunOptions, RunResult, run_export
from concord_pipelines.sandbox import SandboxConfig, SandboxServer

SANDBOX_NOW = "2026-11-20T12:00:00Z"


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def leaves(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        column = prefix + snake(key)
        if isinstance(value, dict):
            out.update(leaves(value, column + "__"))
        else:
            out[column] = value
    return out


def as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, tz=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Export:
    """One sandbox plus one pipeline (state dir + DuckDB file) that can be run repeatedly."""

    sandbox: SandboxServer
    tmp: Path
    pipeline_name: str = "concord_test"

    @property
    def duckdb_path(self) -> str:
        return str(self.tmp / "warehouse.duckdb")

    @property
    def state(self) -> Any:
        return self.sandbox.state

    def now(self) -> datetime:
        return datetime.fromisoformat(self.state.now_iso().replace("Z", "+00:00"))

    def options(self, **overrides: Any) -> RunOptions:
        base = dict(
            organization_id=self.sandbox.org_id,
            api_key=self.sandbox.api_key,
            base_url=self.sandbox.base_url,
            duckdb_path=self.duckdb_path,
            pipeline_name=self.pipeline_name,
            pipelines_dir=str(self.tmp / "pipelines"),
            lag_seconds=0,
            timeout=3.0,
            backoff_base=0.01,
            progress=False,
        )
        base.update(overrides)
        return RunOptions(**base)

    def run(self, **overrides: Any) -> RunResult:
        return run_export(self.options(**overrides))

    def rows(self, table: str, dataset: str = "concord_data") -> list[dict[str, Any]]:
        with duckdb.connect(self.duckdb_path, read_only=True) as con:
            cursor = con.execute(f'SELECT * FROM "warehouse"."{dataset}"."{table}"')
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def count(self, table: str) -> int:
        with duckdb.connect(self.duckdb_path, read_only=True) as con:
            return con.execute(f'SELECT count(*) FROM "warehouse"."concord_data"."{table}"').fetchone()[0]


@pytest.fixture
def make_export(tmp_path: Path) -> Iterator[Any]:
    servers: list[SandboxServer] = []

    def factory(events: int = 2000, seed: int = 7, faults: Any = None, **config: Any) -> Export:
        server = SandboxServer(SandboxConfig(seed=seed, events=events, days=20, now=SANDBOX_NOW, faults=faults, **config))
        server.start()
        servers.append(server)
        return Export(server, tmp_path)

    yield factory
    for server in servers:
        server.stop()


# -- comparing the warehouse with the sandbox ---------------------------------------------------


def expected_rows(export: Export, table: str) -> dict[Any, dict[str, Any]]:
    """The rows a table must hold, keyed by primary key, from the sandbox's current truth."""
    spec = settings.ALL_TABLE_SPECS[table]
    state = export.state
    if table == "tracker_scan_configs":
        items = [{k: v for k, v in c.items() if k != "scanHistory"} for c in state.truth("tracker-scan-history")]
    elif table == "tracker_scans":
        items = [
            {**{k: v for k, v in s.items() if k != "date"}, "scanDate": s["date"], "projectId": c["projectId"], "organizationId": c["organizationId"]}
            for c in state.truth("tracker-scan-history")
            for s in c["scanHistory"]
        ]
    else:
        resource = {
            "projects": "projects",
            "consent_events": "consent-events",
            "consent_types": "consent-types",
            "compliance_requests": "compliance-requests",
            "compliance_request_events": "compliance-requests-events",
        }[table]
        items = state.truth(resource)
    rows = [leaves(item) for item in items]
    return {_key(spec, row): row for row in rows}


def _key(spec: settings.TableSpec, row: dict[str, Any]) -> Any:
    values = []
    for column in spec.primary_key:
        value = row[column]
        values.append(as_utc(value) if spec.columns.get(column) == settings.TIMESTAMP else value)
    return tuple(values)


def _normal(kind: str | None, value: Any) -> Any:
    if value is None:
        return None
    if kind == settings.TIMESTAMP:
        return value.astimezone(UTC) if isinstance(value, datetime) else as_utc(value)
    if kind == settings.JSON:
        return json.loads(value) if isinstance(value, str) else value
    return value


def assert_table_matches(export: Export, table: str) -> None:
    spec = settings.ALL_TABLE_SPECS[table]
    expected = expected_rows(export, table)
    actual_rows = export.rows(table)
    actual = {_key(spec, row): row for row in actual_rows}
    assert len(actual) == len(actual_rows), f"{table}: duplicate keys in the warehouse"
    missing = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    assert not missing and not extra, f"{table}: {len(missing)} missing, {len(extra)} unexpected rows"
    for key, want in expected.items():
        got = actual[key]
        for column, value in want.items():
            kind = spec.columns.get(column)
            assert column in got, f"{table}: column {column} missing"
            assert _normal(kind, got[column]) == _normal(kind, value), f"{table} {key}: {column} = {got[column]!r}, source has {value!r}"


SOURCE_TABLES = (
    "projects",
    "consent_events",
    "consent_types",
    "compliance_requests",
    "compliance_request_events",
    "tracker_scan_configs",
    "tracker_scans",
)


def assert_warehouse_matches(export: Export, tables: tuple[str, ...] = SOURCE_TABLES) -> None:
    for table in tables:
        assert_table_matches(export, table)
