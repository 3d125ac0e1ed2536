"""The partitioned backfill: cut [start, end) into day-aligned partitions of similar work, export each one in
interval mode in its own pipeline, and load them into one dataset without the races of concurrent dlt loads.

What concurrent dlt pipelines loading one dataset share, and what this module does about each:
- the staging dataset (`<dataset>_staging`, where merges stage their rows): each partition gets its own
  (`<dataset>_staging_p<NNN>`), dropped by `drop_staging` when the backfill ends;
- table creation and schema migration (the DDL dlt runs before loading): each partition applies its schema
  itself (`sync_schema`) under one PostgreSQL advisory lock per dataset, so DDL never races; the load that
  follows finds its schema version stored and runs no DDL. The loads themselves (staging, then merge) run
  in parallel: partitions are disjoint in dateUpdated, so their merges touch disjoint rows.
- DuckDB allows one writer per file: there, schema sync and load take a file lock, one partition at a time.
- Elsewhere (no lock available) `plan` loads the first partition alone, so the tables exist before any
  partition runs; a column first seen in a later partition could still race (see docs/airflow.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from concord_pipelines.airflow.concord_tasks import (
    WINDOWED,
    ApiCredentials,
    DagSettings,
    destination_credentials,
    env_override,
)
from concord_pipelines.errors import ConfigError

log = logging.getLogger(__name__)
DAY = timedelta(days=1)


@dataclass
class Partition:
    index: int
    start: str  # ISO 8601, UTC
    end: str
    rows: int | None  # the API's count for the partition (None: the server gave no totals)


def day_bounds(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) as UTC days; the first and last may be partial."""
    bounds, cursor = [], start
    while cursor < end:
        following = min(datetime.combine(cursor.date(), datetime.min.time(), tzinfo=UTC) + DAY, end)
        bounds.append((cursor, following))
        cursor = following
    return bounds


def cut(days: list[tuple[datetime, datetime]], counts: list[int] | None, partitions: int) -> list[Partition]:
    """Consecutive days grouped into at most `partitions` groups of similar row counts (equal day counts when
    there are no counts). Greedy: a group ends at the day boundary nearest to its share of what is left."""
    weights = counts if counts is not None else [1] * len(days)
    groups: list[list[int]] = []
    remaining, current, total = sum(weights), [], 0
    for i, weight in enumerate(weights):
        left = partitions - len(groups)
        if current and left > 1 and _close_before(total, weight, remaining / left, len(days) - i, left):
            groups.append(current)
            remaining -= total
            current, total = [], 0
        current.append(i)
        total += weight
    if current:
        groups.append(current)
    return [Partition(index=n, start=days[g[0]][0].isoformat(), end=days[g[-1]][1].isoformat(),
                      rows=sum(counts[j] for j in g) if counts is not None else None)
            for n, g in enumerate(groups)]


def _close_before(total: int, weight: int, share: float, days_left: int, groups_left: int) -> bool:
    """End the current group before the next day: it is nearer its share without that day, or the days
    still to come are only just enough for one group each."""
    if days_left <= groups_left - 1:
        return True
    return total + weight > share and abs(total - share) <= abs(total + weight - share)


def daily_counts(api: ApiCredentials, days: list[tuple[datetime, datetime]]) -> list[int] | None:
    """Rows per day over the windowed resources, from the `total` of one-item pages (one request per day and
    resource, eight at a time); None when the server reports no totals."""
    from concord_pipelines.concord import settings
    from concord_pipelines.concord.client import ClientOptions, ConcordClient, ResourceStats
    from concord_pipelines.concord.windows import Window

    if not (api.api_key and api.organization_id):
        return None
    options = ClientOptions(api.base_url or settings.DEFAULT_BASE_URL, api.api_key, api.organization_id)
    stats = ResourceStats()
    with ConcordClient(options) as client:
        paths = [client.path(settings.ALL_TABLE_SPECS[name].endpoint) for name in WINDOWED]

        def count(day: tuple[datetime, datetime]) -> int | None:
            totals = [client.count(path, Window(*day).params(), stats) for path in paths]
            return None if None in totals else sum(t for t in totals if t is not None)

        with ThreadPoolExecutor(max_workers=8) as pool:
            counts = list(pool.map(count, days))
    return None if None in counts else [c for c in counts if c is not None]


def plan(api: ApiCredentials, start: datetime, end: datetime, partitions: int) -> list[Partition]:
    if end <= start:
        raise ConfigError(f"the backfill's end {end.isoformat()} is not after its start {start.isoformat()}")
    days = day_bounds(start, end)
    try:
        counts = daily_counts(api, days)
    except Exception as err:  # sizing is an optimisation: equal day counts still load everything
        log.warning("per-day counts unavailable (%s); cutting partitions by days", err)
        counts = None
    cuts = cut(days, counts, partitions)
    log.info("backfill of %s .. %s: %d partitions %s", start.isoformat(), end.isoformat(), len(cuts),
             [(p.start[:10], p.end[:10], p.rows) for p in cuts])
    return cuts


def staging_layout(index: int) -> str:
    return f"%s_staging_p{index:03d}"


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Wait for an exclusive lock on `path` (one host: what a DuckDB file allows anyway)."""
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locks(s: DagSettings, warehouse: str | None) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(schema lock, load lock) for the destination."""
    from concord_pipelines.airflow.locks import postgres_url, wait_lock

    url = postgres_url(s.destination, warehouse)
    if url is not None:
        return (lambda: wait_lock(url, f"concord:{s.dataset}:schema")), nullcontext
    if s.destination == "duckdb" and s.duckdb_path:
        lock = f"{s.duckdb_path}.backfill.lock"
        return (lambda: file_lock(lock)), (lambda: file_lock(lock))
    return nullcontext, nullcontext


def export_partition(part: Partition, s: DagSettings, api: ApiCredentials, warehouse: str | None) -> dict[str, Any]:
    """Export one partition: read and load it in parallel with the others, its schema changes one at a time."""
    Path(s.pipelines_dir).mkdir(parents=True, exist_ok=True)
    layout_key = f"DESTINATION__{s.destination.upper()}__STAGING_DATASET_NAME_LAYOUT"
    schema_lock, load_lock = _locks(s, warehouse)
    with destination_credentials(s.destination, warehouse), env_override(layout_key, staging_layout(part.index)):
        return _run(part, s, api, schema_lock, load_lock)


def _run(part: Partition, s: DagSettings, api: ApiCredentials, schema_lock: Callable[[], Any],
         load_lock: Callable[[], Any]) -> dict[str, Any]:
    """extract and normalize (API-bound), sync the schema (DDL) under `schema_lock`, then load."""
    from concord_pipelines.concord import runner
    from concord_pipelines.concord.source import concord_source

    options = runner.resolve_names(runner.RunOptions(
        organization_id=api.organization_id, api_key=api.api_key, base_url=api.base_url, resources=list(WINDOWED),
        destination=s.destination, duckdb_path=s.duckdb_path, dataset=s.dataset,
        pipeline_name=s.partition_pipeline_name(part.index), pipelines_dir=s.pipelines_dir,
        concurrency=s.concurrency, interval_start=part.start, interval_end=part.end, progress=False, dbt=False))
    checked = runner.check_settings(options)
    destination, _ = runner.make_destination(options)
    runner.register_dlt_defaults()
    source = concord_source(**checked.source_arguments(), interval_start=part.start, interval_end=part.end).with_resources(*WINDOWED)
    pipeline = runner.open_pipeline(str(options.pipeline_name), destination, str(options.dataset), checked.pipelines_dir)
    fmt = "parquet" if options.destination in runner.PARQUET_DESTINATIONS else None
    try:
        pipeline.extract(source, loader_file_format=fmt)
        rows = pipeline.normalize()
        with schema_lock():
            pipeline.sync_schema()  # stores this schema version: the load below then runs no DDL
        with load_lock():
            pipeline.load()
    except Exception as err:
        raise runner.translate_failure(err) from err
    counts = dict(rows.row_counts) if rows is not None else {}
    return {**asdict(part), "pipeline_name": options.pipeline_name,
            "loaded": {t: n for t, n in counts.items() if not t.startswith("_dlt")}}


def drop_staging(s: DagSettings, warehouse: str | None, parts: int) -> list[str]:
    """Drop the partitions' staging schemas (PostgreSQL; elsewhere they stay, named <dataset>_staging_pNNN)."""
    from concord_pipelines.airflow.locks import _connect, postgres_url

    url = postgres_url(s.destination, warehouse)
    if url is None:
        return []
    names = [staging_layout(i) % s.dataset for i in range(parts)]
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        conn.close()
    return names
