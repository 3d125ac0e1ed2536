"""`concord-pipeline verify`: prove, per UTC day, that the warehouse holds what the API serves; repair it.

For each date-windowed resource and day, the API's row count (one `limit=1` request, its `total`)
is compared with the warehouse's rows whose `date_updated` falls in that day. With `repair`, the
days that differ are read again in interval mode (merged, cursors untouched), and then the rows of
those days that the API no longer serves are marked in `_concord_deleted_at` (soft) or deleted
(hard). Everything goes through dlt's sql_client, so DuckDB and PostgreSQL behave the same.

A `total` is a hint: when a server gives none, or one at a round number (Elasticsearch stops
counting at 10,000), the day's ids are paged instead. Ids are paged until an empty page (a full or
short page is never taken as the last), and a window is split in halves rather than paged past
`MAX_OFFSET`, where common backends refuse deep offsets.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import dlt

from concord_pipelines.concord import settings
from concord_pipelines.concord.client import ClientOptions, ConcordClient, ResourceStats
from concord_pipelines.concord.records import to_utc
from concord_pipelines.concord.runner import (
    RunOptions,
    _first_line,
    check_settings,
    exclusive,
    make_destination,
    resolve_names,
    run_export,
)
from concord_pipelines.concord.source import DELETED_COLUMN, REQUEST_EVENT_KEY
from concord_pipelines.concord.windows import Window, iso
from concord_pipelines.errors import ApiError, ConfigError, PipelineError
from concord_pipelines.report import format_table

EXIT_DIFFERENT = 5  # documented in the README: days differ (after the repair, when --repair was given)
DEFAULT_SINCE_DAYS = 30
ROUND_CAP = 1000  # a `total` that is a multiple of this may be a server's counting cap, not the count
MAX_OFFSET = 10_000  # Elasticsearch's default max_result_window: split the window instead of paging past it
DELETE_BATCH = 200

DeleteMode = Literal["soft", "hard"]
WINDOWED_SPECS = {
    spec.name: spec for spec in (settings.CONSENT_EVENTS, settings.COMPLIANCE_REQUESTS, settings.COMPLIANCE_REQUEST_EVENTS)
}
API_KEYS = {"consent_events": ("id",), "compliance_requests": ("id",), "compliance_request_events": REQUEST_EVENT_KEY}
PROJECT_COLUMNS = {"consent_events": "project", "compliance_requests": "project"}  # filtered by projectIds


@dataclass
class VerifyOptions:
    run: RunOptions = field(default_factory=RunOptions)  # connection, destination, resources, as for `run`
    since: str | None = None  # first UTC day checked (default: 30 days ago)
    repair: bool = False
    deletes: str = "soft"  # soft: mark `_concord_deleted_at`; hard: delete the rows
    now: datetime | None = None


@dataclass
class DayCount:
    resource: str
    window: Window  # the UTC day, cut at the resource's cursor on its last day
    api: int
    warehouse: int

    @property
    def day(self) -> date:
        return self.window.start.date()

    @property
    def differs(self) -> bool:
        return self.api != self.warehouse


@dataclass
class VerifyResult:
    checked: list[DayCount]
    deletes: str
    repaired: bool = False
    after: list[DayCount] = field(default_factory=list)  # the differing days, counted again after the repair
    reloaded: dict[str, int] = field(default_factory=dict)  # rows merged by the interval runs
    removed: dict[str, int] = field(default_factory=dict)  # rows marked or deleted
    skipped: list[str] = field(default_factory=list)  # resources with no table yet

    @property
    def differing(self) -> list[DayCount]:
        return [d for d in self.checked if d.differs]

    @property
    def remaining(self) -> list[DayCount]:
        return [d for d in (self.after if self.repaired else self.checked) if d.differs]

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENT if self.remaining else 0

    def summary(self) -> str:
        lines = [f"checked {len(self.checked)} resource-days: {len(self.differing)} differ"]
        lines += [f"{name}: no table in the warehouse yet, not checked" for name in self.skipped]
        if self.differing:
            lines += ["", _table(self.differing)]
        if self.repaired:
            verb = "marked deleted" if self.deletes == "soft" else "deleted"
            for name in sorted(set(self.reloaded) | set(self.removed)):
                lines.append(f"repair {name}: {self.reloaded.get(name, 0)} rows re-read, {self.removed.get(name, 0)} {verb}")
            remaining = self.remaining
            lines.append(f"after the repair: {len(remaining)} of {len(self.after)} days still differ")
            if remaining:
                lines += ["", _table(remaining)]
        return "\n".join(lines)


def _table(days: Sequence[DayCount]) -> str:
    rows = [(d.resource, d.day.isoformat(), d.api, d.warehouse, d.warehouse - d.api) for d in days]
    return format_table(["resource", "day (UTC)", "api rows", "warehouse rows", "difference"], rows)


@dataclass
class _Setup:
    """Everything resolved once: who to ask, where the warehouse is, what to check."""

    options: VerifyOptions
    run: RunOptions
    client_options: ClientOptions
    destination: Any
    duckdb_path: str | None
    pipelines_dir: Path
    project_ids: list[str] | None
    resources: list[str]
    since: datetime
    now: datetime
    lag: timedelta

    @property
    def live_only(self) -> bool:
        """Soft mode counts rows not marked deleted; hard mode wants marked rows gone too."""
        return self.options.deletes == "soft"

    def pipeline(self) -> dlt.Pipeline:
        return dlt.pipeline(self.run.pipeline_name, destination=self.destination, dataset_name=self.run.dataset,
                            pipelines_dir=str(self.pipelines_dir))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The locks `run` takes: verify never reads or edits a warehouse a run is writing."""
        with ExitStack() as stack:
            stack.enter_context(exclusive(self.pipelines_dir / f".{self.run.pipeline_name}.lock", f"pipeline '{self.run.pipeline_name}'"))
            if self.duckdb_path:
                stack.enter_context(exclusive(Path(self.duckdb_path + ".lock"), f"DuckDB file {self.duckdb_path}"))
            yield


def verify(options: VerifyOptions) -> VerifyResult:
    """Compare (and with `repair`, fix) every day since `since`; raises PipelineError on what the user can fix."""
    setup = _setup(options)
    try:
        return _verify(setup, options)
    except PipelineError:
        raise
    except Exception as err:  # a destination that cannot be reached or queried: one line, not a traceback
        raise PipelineError(f"verify failed: {type(err).__name__}: {_first_line(err)}; nothing was marked or deleted "
                            "after the failure (use --debug for the traceback)") from err


def _verify(setup: _Setup, options: VerifyOptions) -> VerifyResult:
    with ConcordClient(setup.client_options) as client:
        with setup.locked():
            checked, skipped, cutoffs = _check_all(setup, client)
        result = VerifyResult(checked=checked, deletes=options.deletes, skipped=skipped)
        if options.repair and result.differing:
            _repair(setup, client, result, cutoffs)
    return result


def _setup(options: VerifyOptions) -> _Setup:
    if options.deletes not in ("soft", "hard"):
        raise ConfigError(f"unknown --deletes {options.deletes!r}: use soft (mark {DELETED_COLUMN}) or hard (delete the rows)")
    run = resolve_names(options.run)
    checked = check_settings(run)
    resources = [r for r in checked.resources if r in WINDOWED_SPECS]
    if not resources:
        raise ConfigError(f"verify checks the date-windowed resources: pass --resources with {', '.join(WINDOWED_SPECS)}")
    now = options.now or datetime.now(tz=UTC)
    since = _parse_since(options.since, now)
    destination, duckdb_path = make_destination(run)
    if duckdb_path and not Path(duckdb_path).exists():
        raise ConfigError(f"nothing to verify: {duckdb_path} does not exist; run `concord-pipeline run` first or fix --duckdb-path")
    return _Setup(options, run, checked.client_options(), destination, duckdb_path, checked.pipelines_dir,
                  checked.project_ids, resources, since, now, timedelta(seconds=checked.lag))


def _parse_since(value: str | None, now: datetime) -> datetime:
    if not value:
        return datetime.combine(now.date() - timedelta(days=DEFAULT_SINCE_DAYS), time.min, UTC)
    try:
        parsed = to_utc(value.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise ConfigError(f"--since {value!r} is not a date: use ISO 8601, e.g. 2026-10-01")
    if parsed >= now:
        raise ConfigError(f"--since {value!r} is not in the past: give a day before today")
    return datetime.combine(parsed.date(), time.min, UTC)  # days are whole UTC days


# -- comparing ---------------------------------------------------------------------------------


def _check_all(setup: _Setup, client: ConcordClient) -> tuple[list[DayCount], list[str], dict[str, datetime]]:
    pipeline = setup.pipeline()
    if not pipeline.default_schema_name:
        pipeline.sync_destination()  # a machine without local state: take schema and state from the warehouse
    if not pipeline.default_schema_name:
        raise ConfigError(f"nothing to verify: pipeline '{setup.run.pipeline_name}' has not loaded anything yet; run `concord-pipeline run` first")
    checked: list[DayCount] = []
    skipped: list[str] = []
    cutoffs: dict[str, datetime] = {}
    with pipeline.sql_client() as sql:
        for resource in setup.resources:
            if resource not in pipeline.default_schema.tables:
                skipped.append(resource)
                continue
            cutoffs[resource] = _cutoff(setup, pipeline, resource)
            windows = day_windows(setup.since, cutoffs[resource])
            api = _api_counts(setup, client, resource, windows)
            live = setup.live_only and _has_deleted_column(pipeline, resource)
            stored = [_warehouse_count(sql, setup, resource, w, live) for w in windows]
            checked += [DayCount(resource, w, a, s) for w, a, s in zip(windows, api, stored, strict=True)]
    return checked, skipped, cutoffs


def _cutoff(setup: _Setup, pipeline: dlt.Pipeline, resource: str) -> datetime:
    """Where the check ends: the resource's cursor (what the last run claims is loaded), else now - lag."""
    state = pipeline.state.get("sources", {}).get("concord", {}).get("resources", {}).get(resource, {})
    cursor = to_utc(state.get("cursor")) if state.get("cursor") else None
    return min(cursor or setup.now - setup.lag, setup.now - setup.lag)


def day_windows(since: datetime, end: datetime) -> list[Window]:
    """Whole UTC days from `since` on; the last one ends at `end`."""
    windows, start = [], since
    while start < end:
        stop = min(start + timedelta(days=1), end)
        windows.append(Window(start, stop))
        start += timedelta(days=1)
    return windows


def _has_deleted_column(pipeline: dlt.Pipeline, table: str) -> bool:
    return DELETED_COLUMN in pipeline.default_schema.tables[table].get("columns", {})


def _query(setup: _Setup, resource: str) -> dict[str, Any]:
    query: dict[str, Any] = {"sort": "dateUpdated", "order": "asc"}
    if setup.project_ids and resource in PROJECT_COLUMNS:
        query["projectIds"] = list(setup.project_ids)
    return query


def _path(client: ConcordClient, resource: str) -> str:
    return client.path(WINDOWED_SPECS[resource].endpoint)


def _api_counts(setup: _Setup, client: ConcordClient, resource: str, windows: list[Window]) -> list[int]:
    """One `limit=1` request per day; a day whose total cannot be trusted has its ids counted."""
    path, query, stats = _path(client, resource), _query(setup, resource), ResourceStats()
    queries = [{**query, **w.params(), "offset": 0, "limit": 1} for w in windows]
    totals = [trusted_total(body) for body in client.get_json_each(path, queries, stats)]
    return [t if t is not None else len(api_keys(setup, client, resource, w)) for t, w in zip(totals, windows, strict=True)]


def trusted_total(body: Any) -> int | None:
    """The page's `total` when it can be believed: present, an integer, and not at a round cap."""
    total = body.get("total") if isinstance(body, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return None
    return None if total and total % ROUND_CAP == 0 else total


def api_keys(setup: _Setup, client: ConcordClient, resource: str, window: Window) -> set[Hashable]:
    """Every key the API serves in `window`, paged to an empty page; halves instead of deep offsets."""
    path, query, fields = _path(client, resource), _query(setup, resource), API_KEYS[resource]
    seen: dict[Hashable, bool] = {}  # key -> the row sits at exactly window.end (an inclusive endDate)
    offset, trusted = 0, None
    stats = ResourceStats()
    while True:
        if offset >= MAX_OFFSET and window.splittable:
            return set().union(*(api_keys(setup, client, resource, half) for half in window.split()))
        params = {**query, **window.params(), "offset": offset, "limit": settings.PAGE_LIMIT}
        try:
            body = client.get_json(path, params, stats)
        except ApiError:
            if offset == 0 or not window.splittable:
                raise
            return set().union(*(api_keys(setup, client, resource, half) for half in window.split()))
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ApiError(f"{client.base_url}{path} answered a page without an 'items' list; is --base-url the Concord API?")
        trusted = trusted_total(body) if offset == 0 else trusted
        _check_filter_field(items, window, f"{client.base_url}{path}")
        fresh = {_api_key(item, fields): _at_end(item, window) for item in items}
        if not fresh.keys() - seen.keys():  # an empty page, or a server ignoring offset: nothing more to read
            break
        seen.update(fresh)
        offset += len(items)
    if trusted is not None and len(seen) < trusted:
        # Deleting rows on an incomplete id list would erase live data: refuse instead.
        raise ApiError(f"the API's ids for {iso(window.start)}..{iso(window.end)} did not add up ({len(seen)} of {trusted}); "
                       "nothing was deleted; run verify again")
    return {key for key, at_end in seen.items() if not at_end}


def _check_filter_field(items: list[Any], window: Window, where: str) -> None:
    """Days are matched on dateUpdated: a server filtering on another date would make live rows look gone."""
    for item in items:
        updated = to_utc(item.get("dateUpdated")) if isinstance(item, dict) else None
        if updated is not None and not window.start <= updated <= window.end:  # an inclusive endDate is tolerated
            raise ApiError(
                f"{where} returned a row updated at {iso(updated)} for startDate/endDate {iso(window.start)}..{iso(window.end)}: "
                "this server filters dates on another field than dateUpdated, so verify cannot match its days with the "
                "warehouse; nothing was deleted (use `run --full-refresh` to re-read everything)"
            )


def _at_end(item: Any, window: Window) -> bool:
    """A row at exactly the window's end, served by a server whose endDate is inclusive: the next day's."""
    return isinstance(item, dict) and to_utc(item.get("dateUpdated")) == window.end


def _api_key(item: dict[str, Any], fields: tuple[str, ...]) -> Hashable:
    if fields == ("id",):
        return str(item.get("id"))
    return tuple(to_utc(item.get(f)) if f.startswith("date") else str(item.get(f)) for f in fields)


def _where(setup: _Setup, resource: str, window: Window, live: bool) -> tuple[str, list[Any]]:
    """The rows of `window` (by date_updated), of the configured projects, not marked deleted if `live`."""
    sql, args = "date_updated >= %s AND date_updated < %s", [window.start, window.end]
    column = PROJECT_COLUMNS.get(resource)
    if setup.project_ids and column:
        sql += f" AND {column} IN ({', '.join(['%s'] * len(setup.project_ids))})"
        args += list(setup.project_ids)
    if live:
        sql += f" AND {DELETED_COLUMN} IS NULL"
    return sql, args


def _warehouse_count(sql_client: Any, setup: _Setup, resource: str, window: Window, live: bool) -> int:
    where, args = _where(setup, resource, window, live)
    table = sql_client.make_qualified_table_name(resource)
    rows = sql_client.execute_sql(f"SELECT count(*) FROM {table} WHERE {where}", *args)
    return int(rows[0][0]) if rows else 0


def _warehouse_keys(sql_client: Any, setup: _Setup, resource: str, window: Window, live: bool) -> set[Hashable]:
    columns = WINDOWED_SPECS[resource].primary_key
    where, args = _where(setup, resource, window, live)
    table = sql_client.make_qualified_table_name(resource)
    rows = sql_client.execute_sql(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}", *args) or []
    if columns == ("id",):
        return {str(row[0]) for row in rows}
    return {tuple(to_utc(v) if c.startswith("date") else str(v) for c, v in zip(columns, row, strict=True)) for row in rows}


# -- repairing ---------------------------------------------------------------------------------


def _repair(setup: _Setup, client: ConcordClient, result: VerifyResult, cutoffs: dict[str, datetime]) -> None:
    """Re-read the differing days (interval runs), then take out what the API no longer serves."""
    result.repaired = True
    differing = result.differing
    for resource in sorted({d.resource for d in differing}):
        for interval in merged_windows([d.window for d in differing if d.resource == resource]):
            loaded = run_export(replace(setup.run, resources=[resource], interval_start=interval.start,
                                        interval_end=interval.end, progress=False))
            result.reloaded[resource] = result.reloaded.get(resource, 0) + sum(t.loaded for t in loaded.tables)
    with setup.locked():
        pipeline = setup.pipeline()
        with pipeline.sql_client() as sql:
            for day in differing:
                removed = _remove_gone(setup, client, sql, pipeline, day, cutoffs[day.resource])
                result.removed[day.resource] = result.removed.get(day.resource, 0) + removed
            for day in differing:
                live = setup.live_only and _has_deleted_column(pipeline, day.resource)
                stored = _warehouse_count(sql, setup, day.resource, day.window, live)
                api = _api_counts(setup, client, day.resource, [day.window])[0]
                result.after.append(DayCount(day.resource, day.window, api, stored))


def merged_windows(windows: list[Window]) -> list[Window]:
    """Adjacent days joined, so each run of differing days is one interval run."""
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: w.start):
        if merged and merged[-1].end >= window.start:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def _remove_gone(setup: _Setup, client: ConcordClient, sql: Any, pipeline: dlt.Pipeline, day: DayCount, cutoff: datetime) -> int:
    """Mark or delete the rows of `day` the API does not serve (after the re-read merged the rest)."""
    soft = setup.options.deletes == "soft"
    if soft and not _has_deleted_column(pipeline, day.resource):
        raise ConfigError(f"table {day.resource} has no {DELETED_COLUMN} column yet: run `concord-pipeline run` once "
                          "with this version (it adds the column), or use --deletes hard")
    stored = _warehouse_keys(sql, setup, day.resource, day.window, live=soft)
    gone = stored - api_keys(setup, client, day.resource, day.window)
    if gone and cutoff < setup.now:
        # A row updated after the cutoff left this day without being deleted: it is not gone.
        gone -= api_keys(setup, client, day.resource, Window(cutoff, setup.now))
    if not gone:
        return 0
    _apply_removal(sql, setup, day, sorted(gone, key=str), soft)
    return len(gone)


def _apply_removal(sql: Any, setup: _Setup, day: DayCount, keys: list[Hashable], soft: bool) -> None:
    columns = WINDOWED_SPECS[day.resource].primary_key
    table = sql.make_qualified_table_name(day.resource)
    where, args = _where(setup, day.resource, day.window, live=soft)
    match = "(" + " AND ".join(f"{c} = %s" for c in columns) + ")"
    with sql.begin_transaction():
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            key_args = [v for key in batch for v in (key if isinstance(key, tuple) else (key,))]
            keys_sql = " OR ".join([match] * len(batch))
            if soft:
                sql.execute_sql(f"UPDATE {table} SET {DELETED_COLUMN} = %s WHERE {where} AND ({keys_sql})",
                                setup.now, *args, *key_args)
            else:
                sql.execute_sql(f"DELETE FROM {table} WHERE {where} AND ({keys_sql})", *args, *key_args)
