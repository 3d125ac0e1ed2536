"""Fixtures: a sandbox holder on loopback with a movable clock, an isolated dlt pipeline on a DuckDB file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from concord_pipelines.cdr_metrics.runner import make_pipeline
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderClock, HolderState

# 09:30 in Sydney (UTC+11 in November) on Monday 2026-11-23.
START = datetime(2026, 11, 22, 22, 30, tzinfo=UTC)


@pytest.fixture
def state() -> HolderState:
    return HolderState(name="bank", seed=42, timezone="Australia/Sydney", clock=HolderClock(START))


@pytest.fixture
def holder(state: HolderState) -> Iterator[CdrHolderServer]:
    with CdrHolderServer(state) as server:
        yield server


@pytest.fixture
def pipeline(tmp_path: Path) -> dlt.Pipeline:
    return make_pipeline(
        duckdb_path=tmp_path / "metrics.duckdb", pipelines_dir=tmp_path / "dlt", pipeline_name="cdr_test"
    )


def query(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


def holder_config(server: CdrHolderServer, name: str = "bank", **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": server.url, "timezone": server.state.timezone, **extra}
