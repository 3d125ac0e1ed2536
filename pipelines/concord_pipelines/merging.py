"""Every table merges on its key, on every destination: refuse one that would append instead.

dlt falls back from `merge` to `append` when a destination cannot merge (plain files on `filesystem`, a
sink, a vector store), with a warning in its log and duplicate rows in the data. The README promises no
duplicates, so a run checks before it reads anything. `filesystem` merges delta or iceberg tables.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from concord_pipelines.errors import ConfigError

log = logging.getLogger(__name__)

# Table formats a destination writes on request (dlt's `table_format` hint), and the package each needs.
TABLE_FORMAT_DESTINATIONS = {"filesystem": ("delta", "iceberg"), "athena": ("iceberg",)}
TABLE_FORMAT_PACKAGES = {"delta": "deltalake", "iceberg": "pyiceberg"}
INSTALL_HINTS = {"delta": "pip install 'concord-pipelines[filesystem]'", "iceberg": "pip install 'dlt[pyiceberg]==1.31.0'"}


def check_merges(destination: Any, name: str, table_format: str | None) -> None:
    """Every table merges on its key. A destination that cannot merge would make dlt append instead (a
    warning in its log, duplicates in the data): refuse it before anything is read or written."""
    if table_format:
        module = TABLE_FORMAT_PACKAGES[table_format]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"--destination {name} writes {table_format} tables, which needs the {module} package: "
                              f"{INSTALL_HINTS[table_format]}")
    try:
        caps = destination.capabilities()
    except Exception as err:  # reported by the run itself, with its step
        log.debug("merge support not checked up front: %s", type(err).__name__)
        return
    strategies = list(caps.supported_merge_strategies or [])
    if strategies and caps.merge_strategies_selector:
        strategies = list(caps.merge_strategies_selector(strategies, table_schema={"name": "consent_events",
                                                                                  "table_format": table_format}))
    if not strategies:
        fix = (f"pass --table-format {' or '.join(TABLE_FORMAT_DESTINATIONS[name])}" if name in TABLE_FORMAT_DESTINATIONS
               else "choose a destination that merges, such as duckdb, postgres, bigquery, snowflake or filesystem")
        raise ConfigError(f"--destination {name} cannot merge rows on their keys, so reruns would add duplicates: {fix}")


def unique_keys(resources: list[Any], table_format: str | None) -> list[Any]:
    """With a table format, each table's rows of one load carry every key once.

    A warehouse's merge (delete-insert) de-duplicates the rows of a load on their key, newest first by the
    table's `dedup_sort`; a delta or iceberg merge (upsert) does not: a key twice in one load is written twice
    into a new table and fails the MERGE of an existing one. Lists the API serves per project (data systems)
    and rows a paging re-read returns again are such keys. The newest row of a batch is kept, then the first
    of the load: a newer copy in a later batch waits for the next run's look-back, which re-reads it.
    """
    if not table_format:
        return resources
    for resource in resources:
        default_table = resource.table_name if isinstance(resource.table_name, str) else resource.name
        resource.add_map(_FirstOfEachKey(default_table))
    return resources


class _FirstOfEachKey:
    def __init__(self, default_table: str) -> None:
        self.default_table = default_table
        self.seen: dict[str, set[tuple[Any, ...]]] = {}

    def __call__(self, item: Any, meta: Any = None) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        from concord_pipelines.concord.settings import ALL_TABLE_SPECS

        hints = getattr(meta, "hints", None) or {}
        table = hints.get("table_name") if isinstance(hints.get("table_name"), str) else self.default_table
        spec = ALL_TABLE_SPECS.get(str(table))
        if spec is None or not isinstance(item, pa.Table) or not all(k in item.column_names for k in spec.primary_key):
            return item
        if spec.dedup_sort and spec.dedup_sort in item.column_names:
            item = item.take(pc.sort_indices(item, [(spec.dedup_sort, "descending")]))
        seen = self.seen.setdefault(str(table), set())
        keep = []
        for key in zip(*(item.column(k).to_pylist() for k in spec.primary_key), strict=True):
            keep.append(key not in seen)
            seen.add(key)
        return item if all(keep) else item.filter(pa.array(keep))
