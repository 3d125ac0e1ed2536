"""`concord_source()` and `cdr_metrics_source()` composed into plain dlt pipelines, one `run()` each, on every
destination the project claims: each leaves the destination equal to the sandbox's truth, with a first load
bigger than `slice_rows`, and no thread left running afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dlt
import pytest

from concord_pipelines import cdr_metrics_source, concord_source
from concord_pipelines.cdr_metrics.source import OBSERVATION_KEY
from concord_pipelines.concord import settings
from concord_pipelines.sandbox import SandboxServer
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderState
from tests.cdr_metrics.conftest import holder_config
from tests.concord.conftest import SOURCE_TABLES, _key, expected_rows


def _no_new_threads(before: set[threading.Thread]) -> None:
    leaked = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


def _keys_in(pipeline: dlt.Pipeline, table: str) -> list[Any]:
    spec = settings.ALL_TABLE_SPECS[table]
    with pipeline.sql_client() as sql, sql.execute_query(f"SELECT * FROM {sql.make_qualified_table_name(table)}") as cursor:
        names = [d[0] for d in cursor.description]
        return [_key(spec, dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


def assert_equals_truth(pipeline: dlt.Pipeline, sandbox: SandboxServer) -> None:
    for table in SOURCE_TABLES:
        keys = _keys_in(pipeline, table)
        expected = expected_rows(SimpleNamespace(state=sandbox.state), table)  # type: ignore[arg-type]
        assert len(keys) == len(set(keys)), f"{table}: duplicate keys"
        assert set(keys) == set(expected), f"{table}: {len(set(expected) - set(keys))} missing, {len(set(keys) - set(expected))} extra"


@pytest.fixture
def concord_args(sandbox: SandboxServer) -> dict[str, Any]:
    return dict(organization_id=sandbox.org_id, api_key=sandbox.api_key, base_url=sandbox.base_url, lag_seconds=0,
                slice_rows=400)


def test_concord_source_into_duckdb_in_one_run(sandbox: SandboxServer, concord_args: dict[str, Any], tmp_path: Path) -> None:
    before = set(threading.enumerate())
    pipeline = dlt.pipeline("plain_duckdb", destination=dlt.destinations.duckdb(str(tmp_path / "plain.duckdb")),
                            dataset_name="concord_plain", pipelines_dir=str(tmp_path / "dlt"))
    pipeline.run(concord_source(**concord_args))
    assert_equals_truth(pipeline, sandbox)
    _no_new_threads(before)


@pytest.mark.postgres
def test_concord_source_into_postgres_in_one_run(sandbox: SandboxServer, postgres_server: Any, concord_args: dict[str, Any],
                                                 tmp_path: Path) -> None:
    before = set(threading.enumerate())
    pipeline = dlt.pipeline("plain_postgres", destination=dlt.destinations.postgres(postgres_server.url),
                            dataset_name="concord_plain", pipelines_dir=str(tmp_path / "dlt"))
    pipeline.run(concord_source(**concord_args))
    pipeline.run(concord_source(**concord_args))  # a second run changes nothing
    assert_equals_truth(pipeline, sandbox)
    _no_new_threads(before)


def test_concord_source_into_filesystem_delta_in_one_run(sandbox: SandboxServer, concord_args: dict[str, Any],
                                                        tmp_path: Path) -> None:
    """`table_format="delta"` on the source: every table is a delta table whose merge sees each key once per
    load (data systems arrive once per project), so two runs still hold one row per key."""
    from deltalake import DeltaTable

    before = set(threading.enumerate())
    bucket = tmp_path / "lake"
    pipeline = dlt.pipeline("plain_delta", destination=dlt.destinations.filesystem(bucket.as_uri()),
                            dataset_name="concord_plain", pipelines_dir=str(tmp_path / "dlt"))
    pipeline.run(concord_source(**concord_args, table_format="delta"))
    pipeline.run(concord_source(**concord_args, table_format="delta", full_refresh=True))  # every row merges again
    for table in SOURCE_TABLES:
        spec = settings.ALL_TABLE_SPECS[table]
        rows = DeltaTable(str(bucket / "concord_plain" / table)).to_pyarrow_table().to_pylist()
        keys = [_key(spec, row) for row in rows]
        expected = expected_rows(SimpleNamespace(state=sandbox.state), table)  # type: ignore[arg-type]
        assert len(keys) == len(set(keys)) and set(keys) == set(expected), table
    _no_new_threads(before)


@pytest.fixture
def holders() -> Iterator[list[CdrHolderServer]]:
    with CdrHolderServer(HolderState(name="bank")) as bank, CdrHolderServer(HolderState(name="energy")) as energy:
        yield [bank, energy]


def _cdr_destination(kind: str, tmp_path: Path, postgres_url: str | None = None) -> Any:
    if kind == "duckdb":
        return dlt.destinations.duckdb(str(tmp_path / "cdr.duckdb"))
    if kind == "postgres":
        return dlt.destinations.postgres(postgres_url)
    return dlt.destinations.filesystem((tmp_path / "lake").as_uri())


def _cdr_rows(pipeline: dlt.Pipeline, kind: str, tmp_path: Path, table: str) -> list[dict[str, Any]]:
    if kind == "filesystem":
        from deltalake import DeltaTable

        return DeltaTable(str(tmp_path / "lake" / "cdr_plain" / table)).to_pyarrow_table().to_pylist()
    with pipeline.sql_client() as sql, sql.execute_query(f"SELECT * FROM {sql.make_qualified_table_name(table)}") as cursor:
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _keys(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(row[k] for k in key) for row in rows]


@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres), "filesystem"])
def test_cdr_metrics_source_in_one_run(kind: str, holders: list[CdrHolderServer], tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_server").url if kind == "postgres" else None
    before = set(threading.enumerate())
    pipeline = dlt.pipeline(f"plain_cdr_{kind}", destination=_cdr_destination(kind, tmp_path, url),
                            dataset_name="cdr_plain", pipelines_dir=str(tmp_path / "dlt"))
    source = cdr_metrics_source(holders=[holder_config(h, h.state.name) for h in holders])
    table_format = "delta" if kind == "filesystem" else None
    pipeline.run(source, table_format=table_format)
    first = _keys(_cdr_rows(pipeline, kind, tmp_path, "metric_observations"), OBSERVATION_KEY)
    pipeline.run(cdr_metrics_source(holders=[holder_config(h, h.state.name) for h in holders]), table_format=table_format)
    observations = _keys(_cdr_rows(pipeline, kind, tmp_path, "metric_observations"), OBSERVATION_KEY)
    assert first and len(observations) == len(set(observations)) == len(first)  # the second run merged, once each
    snapshots = sorted(row["data_holder"] for row in _cdr_rows(pipeline, kind, tmp_path, "snapshots"))
    assert snapshots == ["bank", "bank", "energy", "energy"]  # one snapshot per holder and request: the history
    _no_new_threads(before)
