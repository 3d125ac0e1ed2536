"""The `concord` dlt source: one resource per export endpoint, wired to the shared HTTP client."""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dlt
import orjson
import pyarrow as pa
from dlt.sources import DltResource

from concord_pipelines.concord import settings
from concord_pipelines.concord.client import (
    ClientOptions,
    ConcordClient,
    Page,
    ResourceStats,
    ResourceUnavailable,
)
from concord_pipelines.concord.config import ConcordSettings as Defaults
from concord_pipelines.concord.crawl import SweepUnstable, page_keys, sweep_updated_since
from concord_pipelines.concord.metrics import dashboard_tables
from concord_pipelines.concord.records import (
    PiiMode,
    apply_pii,
    arrow_to_columns,
    dlt_columns,
    flatten,
    items_to_arrow,
    rows_to_arrow,
    to_utc,
)
from concord_pipelines.concord.settings import TableSpec
from concord_pipelines.concord.windows import Window, iso, metric_days, scan_window, slice_end, whole_ms
from concord_pipelines.errors import ConfigError
from concord_pipelines.logs import quiet_arrow_hint_warnings
from concord_pipelines.memory import release_free_memory
from concord_pipelines.merging import unique_keys

# Soft-delete mark of the date-windowed tables. A merge replaces the whole row, so a row the API
# serves again comes back without the mark.
DELETED_COLUMN = "_concord_deleted_at"

log = logging.getLogger(__name__)

# Sources built in this process, newest last: a progress display reads their counters while dlt extracts.
_LIVE: list[weakref.ref[SourceContext]] = []


def live_stats() -> dict[str, ResourceStats]:
    """Counters of the resources being read now, by resource (the newest source's win): for display only.

    What a run did is kept in each resource's dlt state (`last_run`), which is what summaries read.
    """
    merged: dict[str, ResourceStats] = {}
    for ref in _LIVE:
        if ctx := ref():
            merged.update(ctx.stats)
    return merged


class SourceContext:
    """What every resource of one source instance shares: client, options, clock and counters."""

    def __init__(
        self,
        client: ConcordClient,
        *,
        project_ids: Sequence[str] | None,
        initial_start: datetime,
        lookback: timedelta,
        lag: timedelta,
        pii: PiiMode,
        pii_salt: bytes | None,
        full_refresh: bool,
        metrics_per_project: bool,
        metrics_lookback_days: int,
        metrics_initial_days: int,
        slice_rows: int = 0,
        slices_per_run: int = 0,
        interval: Window | None = None,
        table_format: str | None = None,
    ) -> None:
        self.client = client
        self.configured_projects = list(project_ids) if project_ids else None
        self.initial_start = initial_start
        self._run_started: datetime | None = None
        self.lookback, self.lag = lookback, lag
        self.pii, self.pii_salt = pii, pii_salt
        self.full_refresh = full_refresh
        self.metrics_per_project = metrics_per_project
        self.metrics_lookback_days = metrics_lookback_days
        self.metrics_initial_days = metrics_initial_days
        self.stats: dict[str, ResourceStats] = {}
        self.slice_rows, self.slices_per_run = slice_rows, slices_per_run
        # Interval mode (a repair or backfill): date-windowed resources read exactly this window and
        # neither read nor move their cursors; the other resources run incrementally as usual.
        self.interval = interval
        self.table_format = table_format  # delta/iceberg tables on filesystem (dlt's table_format hint)
        self._projects: list[dict[str, Any]] | None = None
        self.active = 0  # resources of this source being read now
        _LIVE[:] = [*(ref for ref in _LIVE if ref() is not None), weakref.ref(self)]  # a long-lived worker keeps no dead refs

    @property
    def run_started(self) -> datetime:
        """When this run's windows end (before `lag`): the server's time (its Date header), asked once.

        The server's clock, not this host's: a host clock that runs ahead would move cursors past rows
        the server has not written yet."""
        if self._run_started is None:
            self._run_started = self.client.server_now()
        return self._run_started

    def stats_for(self, resource: str) -> ResourceStats:
        return self.stats.setdefault(resource, ResourceStats())

    def all_projects(self) -> list[dict[str, Any]]:
        """Every project of the organization, fetched once per run."""
        if self._projects is None:
            path = self.client.path(settings.PROJECTS.endpoint)
            stats = self.stats_for("projects")
            self._projects = [item for page in self.client.iter_pages(path, {}, stats) for item in page]
        return self._projects

    def project_ids(self) -> list[str]:
        return self.configured_projects or [str(p["id"]) for p in self.all_projects()]

    def cursor(self, resource: str) -> datetime | None:
        return None if self.full_refresh else _parse_cursor(dlt.current.resource_state(resource).get("cursor"))

    def window(self, resource: str) -> Window | None:
        """The window a date-windowed resource reads: the fixed interval in interval mode."""
        return self.interval or self.incremental_window(resource)

    def incremental_window(self, resource: str) -> Window | None:
        cursor = self.cursor(resource)
        if cursor is not None and cursor > self.run_started:
            log.warning(
                "%s: the cursor %s is ahead of the server's clock %s (a host clock that was ahead?); reading from "
                "the server's time back; run `concord-pipeline verify --repair` to check the days in between",
                resource, cursor.isoformat(), self.run_started.isoformat(),
            )
            cursor = self.run_started - self.lag
        return scan_window(cursor, self.initial_start, self.run_started, self.lookback, self.lag)

    def table(self, spec: TableSpec, items: Iterable[dict[str, Any]] | pa.Table, **extra: Any) -> pa.Table:
        if isinstance(items, pa.Table):
            return arrow_to_columns(items, spec.columns, drop=self.dropped_columns, hashed=self.hashed_columns, salt=self.pii_salt)
        if not extra and isinstance(items, list):
            fast = items_to_arrow(items, spec.columns, drop=self.dropped_columns, hashed=self.hashed_columns, salt=self.pii_salt)
            if fast is not None:
                return fast
        rows = []
        for item in items:
            row = flatten(item)
            row.update(extra)
            apply_pii(row, self.pii, self.pii_salt)
            rows.append(row)
        return rows_to_arrow(rows, spec.columns, drop=self.dropped_columns)

    @property
    def dropped_columns(self) -> frozenset[str]:
        return settings.PII_COLUMNS if self.pii == "drop" else frozenset()

    @property
    def hashed_columns(self) -> frozenset[str]:
        return settings.PII_COLUMNS if self.pii == "hash" else frozenset()


def _parse_cursor(value: Any) -> datetime | None:
    return to_utc(value) if value else None


def _hints(spec: TableSpec, dropped: Iterable[str], table_format: str | None) -> dict[str, Any]:
    columns = {c["name"]: c for c in dlt_columns(spec.columns, spec.primary_key, dropped)}
    if spec.dedup_sort:
        columns[spec.dedup_sort] = {**columns[spec.dedup_sort], "dedup_sort": "desc"}
    if spec.windowed:  # set by `verify --repair` on rows the API no longer serves; never in API data
        columns[DELETED_COLUMN] = {"name": DELETED_COLUMN, "data_type": "timestamp", "nullable": True}
    return {
        "table_name": spec.name,
        "primary_key": list(spec.primary_key),
        "write_disposition": "merge",
        "columns": columns,
        **({"table_format": table_format} if table_format else {}),
    }


def _resource(ctx: SourceContext, spec: TableSpec | None, name: str, fn: Callable[[], Iterator[Any]]) -> DltResource:
    """A merge resource whose wall time (fetching and converting) is added to its stats.

    spec None: the resource fills several tables and marks each item with its table's hints.
    """

    def timed() -> Iterator[Any]:
        started = time.perf_counter()
        stats = ctx.stats_for(name)
        ctx.active += 1
        try:
            yield from fn()
        finally:
            stats.add(seconds=time.perf_counter() - started)
            dlt.current.resource_state(name)["last_run"] = stats.as_state()
            ctx.active -= 1
            if not ctx.active:  # dlt may interleave resources: the last one out ends the HTTP workers
                ctx.client.idle()
            if stats.items >= settings.RELEASE_MEMORY_AFTER_ROWS:
                release_free_memory()  # the load that follows allocates outside malloc's free lists

    timed.__name__ = name
    hints = _hints(spec, ctx.dropped_columns, ctx.table_format) if spec else {"write_disposition": "merge"}
    return dlt.resource(timed, name=name, **hints)


def _marked(ctx: SourceContext, spec: TableSpec, table: pa.Table) -> Any:
    return dlt.mark.with_hints(table, dlt.mark.make_hints(**_hints(spec, ctx.dropped_columns, ctx.table_format)), create_table_variant=True)


def windowed_resource(ctx: SourceContext, spec: TableSpec, key: tuple[str, ...] = ("id",)) -> DltResource:
    """Resources whose endpoint filters by date: read [cursor - lookback, start - lag) sorted ascending.

    A window holding more than `slice_rows` rows is read slice after slice, each slice's end saved as
    the cursor, so one run of the source reads the whole window whoever runs it. With
    `slices_per_run`, the resource stops after that many slices and sets `unfinished` in its state:
    the CLI loads slice by slice that way (each load commits, and memory stays that of one slice).
    dlt's `incremental` is not used here: it filters rows by a cursor value, which drops rows that share
    the cursor's instant or arrive late with an old date; the windows re-read a lookback instead.
    """

    def read() -> Iterator[pa.Table]:
        window = ctx.window(spec.name)
        if window is None:
            return
        path = ctx.client.path(spec.endpoint)
        query: dict[str, Any] = {"sort": "dateUpdated", "order": "asc"}
        if ctx.configured_projects and spec.name != "compliance_request_events":
            query["projectIds"] = ctx.configured_projects
        stats, state = ctx.stats_for(spec.name), dlt.current.resource_state(spec.name)
        # The dateUpdated sweep belongs to a catch-up (a cursor existed) that ends at this run's end.
        sweep = ctx.interval is None and ctx.cursor(spec.name) is not None and window.end >= ctx.run_started - ctx.lag
        delivered: set[Any] = set()
        floor, start = ctx.cursor(spec.name), window.start
        for done in itertools.count(1):
            part, first_page = Window(start, window.end), None
            if ctx.slice_rows:
                part, first_page = _first_slice(ctx, part, path, query, stats, floor)
            pages = ctx.client.iter_pages(path, query, stats, key, part, arrow=True, first_page=first_page)
            if sweep:
                pages = _noting_keys(pages, key, delivered)
            yield from batched_tables((ctx.table(spec, page) for page in pages), settings.ARROW_BATCH_ROWS)
            if ctx.interval is None:  # an interval run repairs the past: the incremental cursor stays put
                state["cursor"] = part.end.isoformat()
            state["unfinished"] = part.end < window.end
            if not state["unfinished"] or done == ctx.slices_per_run:
                break
            floor, start = None, part.end
        if sweep and not state["unfinished"]:
            yield from _updates_outside(ctx, spec, path, query, key, window, delivered)

    return _resource(ctx, spec, spec.name, read)


def _noting_keys(pages: Iterable[Any], key: tuple[str, ...], delivered: set[Any]) -> Iterator[Any]:
    for page in pages:
        delivered.update(page_keys(page, key))
        yield page


def _updates_outside(
    ctx: SourceContext, spec: TableSpec, path: str, query: dict[str, Any], key: tuple[str, ...], window: Window,
    delivered: set[Any],
) -> Iterator[pa.Table]:
    """Rows updated since the window began that the window did not return: the server filters on another date.

    The reference does not say which field `startDate`/`endDate` filter on. When it is
    `consentDate` or `dateCreated`, a new version of an old event never falls in an incremental
    window; a sweep ordered by `dateUpdated` (usually one request) finds it.
    """
    if len(delivered) > settings.SWEEP_MAX_ROWS:
        log.info("%s: %d rows in this window; no dateUpdated sweep for a catch-up this size", spec.name, len(delivered))
        return
    params = {k: v for k, v in query.items() if k not in ("sort", "order")}
    stats = ctx.stats_for(spec.name)
    try:
        for items in sweep_updated_since(ctx.client, path, params, key, window.start, stats):
            # Rows updated after the window's end are the next run's: its sweep starts before this end.
            fresh = [i for i in items if _item_key(i, key) not in delivered and to_utc(i.get("dateUpdated")) < window.end]
            if fresh:
                stats.add(items=len(fresh), swept=len(fresh))
                delivered.update(_item_key(item, key) for item in fresh)
                yield ctx.table(spec, fresh)
    except SweepUnstable as err:
        # Offsets cannot be trusted across rows that share one instant in a changing order: read the
        # whole history through date windows instead (once; the windows' own checks make it complete).
        log.warning("%s; reading all of %s again through date windows to be sure", err, spec.name)
        whole = Window(ctx.initial_start, window.end)
        yield from batched_tables((ctx.table(spec, p) for p in ctx.client.iter_pages(path, query, stats, key, whole, arrow=True)),
                                  settings.ARROW_BATCH_ROWS)  # fmt: skip


def _item_key(item: dict[str, Any], key: tuple[str, ...]) -> Any:
    return item.get(key[0]) if len(key) == 1 else tuple(item.get(k) for k in key)


def _first_slice(
    ctx: SourceContext, window: Window, path: str, query: dict[str, Any], stats: ResourceStats, floor: datetime | None
) -> tuple[Window, Page | None]:
    """The first part of `window` holding at most `slice_rows` rows (all of it when it fits), ending after `floor`.

    The window's first page tells its total; when the whole window is read, paging goes on from
    that page, so deciding costs no request (with 50 ms of latency a separate count cost a round).
    """
    first_page = ctx.client.get_page(path, {**query, **window.params()}, 0, stats, arrow=True)
    if first_page.total is None or first_page.total <= ctx.slice_rows:
        return window, first_page  # no total (the server does not count): the window is read in one load

    def count(part: Window) -> int:
        if part == window:
            return first_page.total
        rows = ctx.client.count(path, {**query, **part.params()}, stats)
        return ctx.slice_rows + 1 if rows is None else rows  # a part the server no longer counts: assume it is big

    end = slice_end(window, count, ctx.slice_rows, floor=floor)
    return (window, None) if end >= window.end else (Window(window.start, end), None)


def batched_tables(tables: Iterable[pa.Table], min_rows: int) -> Iterator[pa.Table]:
    """Pages joined into tables of at least `min_rows` rows (chunks are not copied).

    dlt computes and validates the table schema once per yielded item, which costs more than
    converting a page of 1,000 rows: fewer, larger items make extraction several times faster.
    Pages whose columns differ (a field the spec does not declare) are never joined.
    """
    batch: list[pa.Table] = []
    rows = 0
    for table in tables:
        if batch and table.schema != batch[0].schema:
            yield pa.concat_tables(batch)
            batch, rows = [], 0
        batch.append(table)
        rows += table.num_rows
        if rows >= min_rows:
            yield pa.concat_tables(batch)
            batch, rows = [], 0
    if batch:
        yield pa.concat_tables(batch)


class ChangedRows:
    """Which rows of a list read whole differ from the last successful run, by a digest per key in resource state.

    Endpoints without a date filter (projects, consent types, scan history, data systems, regions)
    are read whole on every run; a row is emitted when its content changed, whatever its dates, so
    a scan that finishes, or a project that appears with dates older than the lookback, is never
    dropped. The digests are saved with the load (dlt state), so a failed run re-emits them.
    """

    def __init__(self, resource: str, full_refresh: bool) -> None:
        self.state = dlt.current.resource_state(resource)
        self.before: dict[str, str] = {} if full_refresh else self.state.get("digests", {})
        self.now: dict[str, str] = {}

    def __call__(self, rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
        changed = []
        for row in rows:
            row_key = key(row)
            digest = hashlib.blake2b(orjson.dumps(row, option=_DIGEST_JSON), digest_size=8).hexdigest()
            self.now[row_key] = digest
            if self.before.get(row_key) != digest:
                changed.append(row)
        return changed

    def save(self) -> None:
        self.state["digests"] = self.now
        self.state.pop("cursor", None), self.state.pop("pending", None)  # older versions' bookkeeping


_DIGEST_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _by_id(row: dict[str, Any]) -> str:
    return str(row.get("id"))


def projects_resource(ctx: SourceContext) -> DltResource:
    spec = settings.PROJECTS

    def read() -> Iterator[pa.Table]:
        changed = ChangedRows(spec.name, ctx.full_refresh)
        items = ctx.all_projects()
        if ctx.configured_projects:
            items = [p for p in items if str(p.get("id")) in ctx.configured_projects]
        if rows := changed(items, _by_id):
            yield ctx.table(spec, rows)
        changed.save()

    return _resource(ctx, spec, spec.name, read)


def project_list_resource(ctx: SourceContext, spec: TableSpec) -> DltResource:
    """A list per project read whole (consent types, regions): the rows that changed, project by project."""

    def read_project(project: str, changed: ChangedRows) -> Iterator[pa.Table]:
        path = ctx.client.path(spec.endpoint, project)
        for page in ctx.client.iter_pages(path, {"sort": "dateUpdated", "order": "asc"}, ctx.stats_for(spec.name)):
            if rows := changed(page, _by_id):
                yield ctx.table(spec, rows)

    return _per_project_resource(ctx, spec, spec.name, read_project)


def _per_project_resource(
    ctx: SourceContext, spec: TableSpec | None, name: str, read_project: Callable[[str, ChangedRows], Iterator[Any]]
) -> DltResource:
    """A resource read project by project; a 403/404 on one project's sub-resource skips that project.

    Only the organization-level endpoints (`/projects`, consent events...) decide that the
    organization, key or base URL is wrong. A project without a scan configured yet, or one the key
    may not read, is left out of this resource with a warning and a line in the summary; when the
    projects were given explicitly (--project) and every one of them fails, the run fails.
    """

    def read() -> Iterator[Any]:
        changed = ChangedRows(name, ctx.full_refresh)
        projects, failures = ctx.project_ids(), []
        for project in projects:
            try:
                yield from read_project(project, changed)
            except ResourceUnavailable as err:
                failures.append(err)
                ctx.stats_for(name).skipped.append(f"project {project}: {err}")
                log.warning("%s: skipped project %s: %s", name, project, err)
        if failures and ctx.configured_projects and len(failures) == len(projects):
            raise ConfigError(
                f"every project given for {name} was refused ({failures[0]}); check --project / "
                "SOURCES__CONCORD__PROJECT_IDS, the organization id and the key's access"
            )
        changed.save()

    return _resource(ctx, spec, name, read)


def tracker_scans_resource(ctx: SourceContext) -> DltResource:
    """Configs (one row per project) and scans (one per scanHistory entry) from one endpoint.

    The endpoint has no date filter: every run reads the history and emits the configs and scans
    that changed since the last run (a scan that finished, one that appeared late with an old date).
    """
    config_spec, scan_spec = settings.TRACKER_SCAN_CONFIGS, settings.TRACKER_SCANS

    def read_project(project: str, changed: ChangedRows) -> Iterator[Any]:
        path = ctx.client.path(config_spec.endpoint, project)
        for page in ctx.client.iter_pages(path, {}, ctx.stats_for("tracker_scans"), key=("projectId",)):
            configs = [{k: v for k, v in c.items() if k != "scanHistory"} for c in page]
            if rows := changed(configs, lambda c: f"config|{c.get('projectId')}"):
                yield _marked(ctx, config_spec, ctx.table(config_spec, rows))
            if scans := changed([s for c in page for s in _scan_rows(c)], _scan_key):
                yield _marked(ctx, scan_spec, ctx.table(scan_spec, scans))

    return _per_project_resource(ctx, None, "tracker_scans", read_project)


def _scan_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for scan in config.get("scanHistory") or []:
        row = {k: v for k, v in scan.items() if k != "date"}
        row["scanDate"] = to_utc(scan.get("date"))
        row["projectId"] = config.get("projectId")
        row["organizationId"] = config.get("organizationId")
        rows.append(row)
    return rows


def _scan_key(scan: dict[str, Any]) -> str:
    return f"{scan['projectId']}|{scan['scanDate'].isoformat() if scan['scanDate'] else None}"


def usage_metrics_resource(ctx: SourceContext) -> DltResource:
    """One dashboard request per day (and per project when configured) -> daily rows."""

    def read() -> Iterator[Any]:
        state = dlt.current.resource_state("usage_metrics")
        last_complete = None if ctx.full_refresh else state.get("last_complete_day")
        cutoff = ctx.run_started - ctx.lag
        today = cutoff.date()
        initial = max(ctx.initial_start.date(), today - timedelta(days=ctx.metrics_initial_days - 1))
        days = metric_days(date.fromisoformat(last_complete) if last_complete else None, initial, today, ctx.metrics_lookback_days)
        projects: list[str | None] = list(ctx.project_ids()) if ctx.metrics_per_project else [None]
        stats = ctx.stats_for("usage_metrics")
        path = ctx.client.path(settings.METRICS_ENDPOINT)
        requests = [(day, project) for day in days for project in projects]
        queries = [_metrics_params(day, project) for day, project in requests]
        fetched_at = datetime.now(tz=UTC)
        dashboards = ctx.client.get_json_each(path, queries, stats)
        for (day, project), dashboard in zip(requests, dashboards, strict=True):
            stats.add(pages=1, items=1)
            complete = _day_end(day) <= cutoff
            for table_spec, rows in dashboard_tables(dashboard, day, project or "", complete, fetched_at, ctx.client.options.organization_id):
                if rows:
                    yield _marked(ctx, table_spec, rows_to_arrow(rows, table_spec.columns))
        complete_days = [d for d in days if _day_end(d) <= cutoff]
        if complete_days:
            state["last_complete_day"] = max(complete_days).isoformat()

    return _resource(ctx, None, "usage_metrics", read)


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


def _metrics_params(day: date, project: str | None) -> dict[str, Any]:
    params: dict[str, Any] = Window(_day_end(day) - timedelta(days=1), _day_end(day)).params()
    if project:
        params["project"] = [project]
    return params


# The API gives compliance-request events no id: the request, the event and its time identify one.
REQUEST_EVENT_KEY = ("complianceRequestId", "event", "dateCreated")


def build_resources(ctx: SourceContext) -> list[DltResource]:
    return [
        projects_resource(ctx),
        windowed_resource(ctx, settings.CONSENT_EVENTS),
        project_list_resource(ctx, settings.CONSENT_TYPES),
        windowed_resource(ctx, settings.COMPLIANCE_REQUESTS),
        windowed_resource(ctx, settings.COMPLIANCE_REQUEST_EVENTS, REQUEST_EVENT_KEY),
        tracker_scans_resource(ctx),
        usage_metrics_resource(ctx),
        data_systems_resource(ctx),
        project_list_resource(ctx, settings.REGIONS),
    ]


def validate_organization_id(value: str | None) -> str:
    if not value:
        raise ConfigError("no organization id: pass --org or set SOURCES__CONCORD__ORGANIZATION_ID (a UUID from the Concord admin UI)")
    if not settings.UUID_RE.match(value.strip()):
        raise ConfigError(f"malformed organization id {value.strip()!r}: it must be a UUID like 497f6eca-6276-4993-bfeb-53cbbbba6f08")
    return value.strip()


def validate_project_ids(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    bad = [v for v in values if not settings.UUID_RE.match(v)]
    if bad:
        raise ConfigError(f"malformed project id {bad[0]!r}: project ids are UUIDs; fix project_ids / --project")
    return list(values)


@dlt.source(name="concord", max_table_nesting=0, root_key=False)
def concord_source(
    organization_id: str = dlt.config.value,
    api_key: str = dlt.secrets.value,
    base_url: str = Defaults.base_url,
    project_ids: list[str] | None = None,
    start_date: str | None = None,
    lookback_seconds: int = Defaults.lookback_seconds,
    lag_seconds: int = Defaults.lag_seconds,
    concurrency: int = Defaults.concurrency,
    pii: str = Defaults.pii,
    pii_salt: str | None = None,
    metrics_per_project: bool = Defaults.metrics_per_project,
    metrics_lookback_days: int = Defaults.metrics_lookback_days,
    metrics_initial_days: int = Defaults.metrics_initial_days,
    full_refresh: bool = False,
    timeout: float = Defaults.timeout,
    max_retries: int = Defaults.max_retries,
    backoff_base: float = Defaults.backoff_base,
    slice_rows: int = Defaults.slice_rows,
    slices_per_run: int = 0,
    max_offset: int = Defaults.max_offset,
    interval_start: str | datetime | None = None,
    interval_end: str | datetime | None = None,
    allow_external_schedulers: bool = False,
    table_format: str | None = None,
) -> list[DltResource]:
    """Concord Privacy API export. Config lives in section `sources.concord` (see README).

    One run of the source loads every resource up to the server's time minus `lag_seconds`, however
    big (`slice_rows` only splits the reading; `slices_per_run` > 0 stops after that many slices and
    leaves `unfinished` in the resource's state, for callers that load slice by slice).
    `interval_start`/`interval_end` (both or neither): export exactly the rows of [start, end) of
    the date-windowed resources and merge them, without reading or moving their cursors.
    `allow_external_schedulers`: without an explicit interval, take it from the scheduler running the
    source (Airflow's data interval, or dlt's DLT_INTERVAL_START/END), as dlt's incremental does.
    `table_format` ("delta", "iceberg"): every table in that format on `filesystem`, each key once per load
    (their merge, unlike a warehouse's, does not de-duplicate a load).
    """
    if interval_start is None and interval_end is None and allow_external_schedulers:
        interval_start, interval_end = scheduler_interval()
    interval = parse_interval(interval_start, interval_end)
    options = ClientOptions(
        base_url=base_url,
        api_key=api_key,
        organization_id=validate_organization_id(organization_id),
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        backoff_base=backoff_base,
        max_offset=max(0, max_offset),
    )
    ctx = SourceContext(
        ConcordClient(options),
        project_ids=validate_project_ids(project_ids),
        initial_start=parse_start_date(start_date),
        lookback=timedelta(seconds=lookback_seconds),
        lag=timedelta(seconds=lag_seconds),
        pii=validate_pii(pii, pii_salt),
        pii_salt=pii_salt.encode() if pii_salt else None,
        full_refresh=full_refresh,
        metrics_per_project=metrics_per_project,
        metrics_lookback_days=metrics_lookback_days,
        metrics_initial_days=metrics_initial_days,
        # An interval is loaded in one piece: slices advance through the cursor, which it leaves alone.
        slice_rows=0 if interval else max(0, slice_rows),
        slices_per_run=max(0, slices_per_run),
        interval=interval,
        table_format=table_format,
    )
    resources = build_resources(ctx)
    quiet_arrow_hint_warnings({r.name for r in resources})
    return unique_keys(resources, table_format)


def validate_pii(mode: str, salt: str | None) -> PiiMode:
    if mode not in ("keep", "hash", "drop"):
        raise ConfigError(f"unknown pii mode {mode!r}: use keep, hash or drop")
    if mode == "hash" and not salt:
        raise ConfigError('pii = "hash" needs a salt: set SOURCES__CONCORD__PII_SALT or pii_salt in .dlt/secrets.toml')
    return mode  # type: ignore[return-value]


def parse_start_date(value: str | None, now: datetime | None = None) -> datetime:
    if not value:
        return to_utc(settings.DEFAULT_START_DATE)  # type: ignore[return-value]
    try:
        parsed = to_utc(value.strip())
    except ValueError:
        raise ConfigError(f"unparsable start date {value!r}: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T00:00:00Z") from None
    assert parsed is not None
    if parsed > (now or datetime.now(tz=UTC)):
        raise ConfigError(f"start date {value!r} is in the future: give a date on or before today")
    return parsed


# ---- data systems and regions (small lists read whole on every run) -----------------------------------------
# Every row read is emitted, whatever its dates: the lists are a few rows per organization or project, the
# merge keeps one row per id, and filtering by date would drop a row that arrives carrying old dates.


def data_systems_resource(ctx: SourceContext) -> DltResource:
    spec = settings.DATA_SYSTEMS

    def read() -> Iterator[pa.Table]:
        changed = ChangedRows(spec.name, ctx.full_refresh)
        path = ctx.client.path(spec.endpoint)
        for page in ctx.client.iter_pages(path, {"sort": "dateUpdated", "order": "asc"}, ctx.stats_for(spec.name)):
            items = [s for s in page if _uses_configured_project(ctx, s.get("projectIds"))]
            if rows := changed(items, _by_id):
                yield ctx.table(spec, rows)
        changed.save()

    return _resource(ctx, spec, spec.name, read)


def _uses_configured_project(ctx: SourceContext, project_ids: Any) -> bool:
    """With --project, only data systems linked to one of those projects (all of them otherwise)."""
    if not ctx.configured_projects:
        return True
    return bool(set(project_ids or ()) & set(ctx.configured_projects))


def parse_interval(
    start: str | datetime | None, end: str | datetime | None, now: datetime | None = None
) -> Window | None:
    """[start, end) of an interval run (ISO 8601, UTC when no offset), or None for an incremental run."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ConfigError("an interval needs both ends: pass --start and --end (or interval_start and interval_end)")
    first, last = _interval_bound(start, "--start"), _interval_bound(end, "--end")
    if last <= first:
        raise ConfigError(f"--end {iso(last)} is not after --start {iso(first)}: the interval [start, end) would be empty")
    if last > (now or datetime.now(tz=UTC)):
        raise ConfigError(f"--end {iso(last)} is in the future: give an end on or before now")
    return Window(first, last)


def scheduler_interval() -> tuple[datetime | None, datetime | None]:
    """The data interval of the scheduler running this process (dlt's own detection: DLT_INTERVAL_START/END,
    then Airflow's task context), or (None, None) outside one."""
    from dlt.common.configuration.container import Container
    from dlt.extract.incremental.context import TimeIntervalContext

    found = Container()[TimeIntervalContext].interval
    return (found.start, found.end) if found else (None, None)


def _interval_bound(value: str | datetime, flag: str) -> datetime:
    try:
        parsed = to_utc(value.strip() if isinstance(value, str) else value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ConfigError(f"{flag} {value!r} is not a date: use ISO 8601, e.g. 2026-10-14 or 2026-10-14T06:00:00Z")
    return whole_ms(parsed)  # the API's filter has millisecond precision
