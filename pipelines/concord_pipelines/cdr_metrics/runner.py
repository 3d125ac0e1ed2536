"""Run the `cdr_metrics` source into a destination and summarise it per holder (used by the CLI and tests)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.destination.reference import Destination
from dlt.pipeline.exceptions import PipelineStepFailed

from concord_pipelines.cdr_metrics import settings
from concord_pipelines.cdr_metrics.config import HolderConfig
from concord_pipelines.cdr_metrics.source import RunOutcomes, cdr_metrics, run_outcomes
from concord_pipelines.errors import ConcurrentRunError, ConfigError, PipelineError
from concord_pipelines.merging import check_merges
from concord_pipelines.report import format_table

log = logging.getLogger(__name__)
TABLES = (settings.OBSERVATIONS_TABLE, settings.SNAPSHOTS_TABLE)
TABLE_FORMAT = "delta"  # on filesystem: merges (needs deltalake, the `filesystem` extra)


@dataclass
class RunResult:
    outcomes: RunOutcomes
    before: dict[tuple[str, str], int] = field(default_factory=dict)
    after: dict[tuple[str, str], int] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.outcomes.failed

    def new_rows(self, holder: str, table: str) -> int | None:
        if self.after is None:
            return None
        return self.after.get((holder, table), 0) - self.before.get((holder, table), 0)

    def summary(self) -> str:
        headers = ["holder", "version", "observations", "new", "updated", "snapshots", "seconds", "status"]
        rows: list[list[Any]] = []
        for o in self.outcomes.holders.values():
            new = self.new_rows(o.holder, settings.OBSERVATIONS_TABLE) if not o.error else None
            updated = o.observations - new if new is not None else None
            rows.append(
                [
                    o.holder,
                    f"v{o.version}" if o.version else "-",
                    o.observations,
                    new,
                    updated,
                    o.snapshots,
                    round(o.seconds, 2),
                    "failed" if o.error else "ok",
                ]
            )
        return format_table(headers, rows)

    def warning_lines(self) -> list[str]:
        return [f"warning: {w}" for o in self.outcomes.holders.values() for w in o.warnings]

    def error_lines(self) -> list[str]:
        return [f"error: {o.error}" for o in self.outcomes.failed if o.error]


def make_pipeline(
    destination: str = "duckdb",
    duckdb_path: str | Path | None = None,
    dataset: str = settings.DATASET_NAME,
    pipeline_name: str = settings.PIPELINE_NAME,
    pipelines_dir: str | Path | None = None,
) -> dlt.Pipeline:
    if duckdb_path is not None and destination != "duckdb":
        raise ConfigError(f"--duckdb-path only applies to --destination duckdb (got {destination})")
    path = Path(duckdb_path).expanduser().resolve() if destination == "duckdb" and duckdb_path else None
    if path is not None and path.stem.lower() == dataset.lower():
        raise ConfigError(
            f"the DuckDB file {path.name} is named like the dataset '{dataset}', which DuckDB cannot tell apart "
            f"(catalog vs schema): choose another --dataset or another --duckdb-path (default {settings.DEFAULT_DUCKDB_PATH})"
        )
    try:
        dest: Any = dlt.destinations.duckdb(str(path)) if path is not None else Destination.from_reference(destination)
    except UnknownDestinationModule:
        raise ConfigError(
            f"unknown dlt destination {destination!r}; use e.g. duckdb, postgres, filesystem"
        ) from None
    table_format = TABLE_FORMAT if dest.destination_type.endswith(".filesystem") else None
    check_merges(dest, destination, table_format)
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=dest,
        dataset_name=dataset,
        pipelines_dir=str(pipelines_dir) if pipelines_dir else None,
    )
    if path is not None:
        # dlt keeps no credentials in state: dlt.attach(), `dlt pipeline NAME info` and pipeline.dataset() find
        # the file here (concord_pipelines.concord.runner.remember_duckdb_path)
        pipeline.set_local_state_val("duckdb_database", str(path))
    return pipeline


def table_format_of(pipeline: dlt.Pipeline) -> str | None:
    """filesystem writes delta tables: plain files cannot merge, and reruns would duplicate rows."""
    return TABLE_FORMAT if pipeline.destination and pipeline.destination.destination_type.endswith(".filesystem") else None


def run(
    holders: Sequence[HolderConfig | dict[str, Any]],
    pipeline: dlt.Pipeline,
    x_v: int = settings.DEFAULT_X_V,
    x_min_v: int | None = settings.DEFAULT_X_MIN_V,
    period: str = settings.DEFAULT_PERIOD,
    concurrency: int = settings.CONCURRENCY,
) -> RunResult:
    """Extract every holder, load what succeeded, count rows per holder before/after."""
    started = time.monotonic()
    result = RunResult(RunOutcomes(), before=row_counts(pipeline) or {})
    source = cdr_metrics(
        holders=list(holders),
        x_v=x_v,
        x_min_v=x_min_v,
        period=period,
        concurrency=concurrency,
        log_failures=False,  # the summary reports them
    )
    try:
        pipeline.run(source, table_format=table_format_of(pipeline))
    except PipelineStepFailed as err:
        raise _step_error(err) from None
    result.outcomes = run_outcomes(pipeline)
    result.after = row_counts(pipeline)
    result.seconds = time.monotonic() - started
    return result


def row_counts(pipeline: dlt.Pipeline) -> dict[tuple[str, str], int] | None:
    """Rows per (holder, table) in the destination; None when the destination has no SQL client."""
    counts: dict[tuple[str, str], int] = {}
    try:
        client_cm = pipeline.sql_client()
    except Exception as err:  # filesystem and other non-SQL destinations
        log.debug("row counts unavailable: %s", type(err).__name__)
        return None
    try:
        with client_cm as client:
            for table in TABLES:
                name = client.make_qualified_table_name(table)
                try:
                    rows = client.execute_sql(f"SELECT data_holder, COUNT(*) FROM {name} GROUP BY 1") or []
                except Exception:  # table or dataset not created yet
                    continue
                counts.update({(str(holder), table): int(n) for holder, n in rows})
    except Exception as err:  # destination not reachable before the first load
        log.debug("row counts unavailable: %s", type(err).__name__)
    return counts


def _step_error(err: PipelineStepFailed) -> PipelineError:
    text = " ".join(str(err.exception).split())
    if "lock" in text.lower() and "conflicting" in text.lower():
        return ConcurrentRunError(
            f"the destination is locked by another process (step {err.step}); retry when it ends"
        )
    return PipelineError(f"dlt {err.step} step failed: {type(err.exception).__name__}: {text[:300]}")
