"""The `concord` dlt source: one resource per export endpoint, wired to the shared HTTP client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from pipelines.concord import settings
from pipelines.concord.client import ClientOptions, ConcordClient, Page, ResourceStats
from pipelines.concord.metrics import dashboard_tables
from pipelines.concord.records import (
    PiiMode,
    apply_pii,
    arrow_to_columns,
    dlt_columns,
    flatten,
    items_to_arrow,
    rows_to_arrow,
    to_utc,
)
from pipelines.concord.settings import TableSpec
from pipelines.concord.windows import Window, metric_days, scan_window, slice_end
from pipelines.errors import ConfigError
from pipelines.memory import release_free_memory

FINAL_SCAN_STATES = frozenset({"completed", "failed", "cancelled", "canceled", "error"})


class SourceContext:
    """What every resource of one source instance shares: client, options, clock and stats."""

    def __init__(
        self,
        client: ConcordClient,
        *,
        project_ids: Sequence[str] | None,
        initial_start: datetime,
        run_started: datetime,
        lookback: timedelta,
        lag: timedelta,
        pii: PiiMode,
        pii_salt: bytes | None,
        full_refresh: bool,
        metrics_per_project: bool,
        metrics_lookback_days: int,
        metrics_initial_days: int,
        stats: dict[str, ResourceStats],
        slice_rows: int = 0,
    ) -> None:
        self.client = client
        self.configured_projects = list(project_ids) if project_ids else None
        self.initial_start = initial_start
        self.run_started = run_started
        self.lookback, self.lag = lookback, lag
        self.pii, self.pii_salt = pii, pii_salt
        self.full_refresh = full_refresh
        self.metrics_per_project = metrics_per_project
        self.metrics_lookback_days = metrics_lookback_days
        self.metrics_initial_days = metrics_initial_days
        self.stats = stats
        self.slice_rows = slice_rows
        self._projects: list[dict[str, Any]] | None = None

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
        return scan_window(self.cursor(resource), self.initial_start, self.run_started, self.lookback, self.lag)

    def since(self, resource: str) -> datetime | None:
        """For endpoints without a date filter: only items updated after this are emitted."""
        window = self.window(resource)
        return None if window is None or window.start == self.initial_start else window.start

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


def _hints(spec: TableSpec, dropped: Iterable[str]) -> dict[str, Any]:
    columns = {c["name"]: c for c in dlt_columns(spec.columns, spec.primary_key, dropped)}
    if spec.dedup_sort:
        columns[spec.dedup_sort] = {**columns[spec.dedup_sort], "dedup_sort": "desc"}
    return {
        "table_name": spec.name,
        "primary_key": list(spec.primary_key),
        "write_disposition": "merge",
        "columns": columns,
    }


def _resource(ctx: SourceContext, spec: TableSpec | None, name: str, fn: Callable[[], Iterator[Any]]) -> DltResource:
    """A merge resource whose wall time (fetching and converting) is added to its stats.

    spec None: the resource fills several tables and marks each item with its table's hints.
    """

    def timed() -> Iterator[Any]:
        started = time.perf_counter()
        stats = ctx.stats_for(name)
        try:
            yield from fn()
        finally:
            stats.add(seconds=time.perf_counter() - started)
            if stats.items >= settings.RELEASE_MEMORY_AFTER_ROWS:
                release_free_memory()  # the load that follows allocates outside malloc's free lists

    timed.__name__ = name
    hints = _hints(spec, ctx.dropped_columns) if spec else {"write_disposition": "merge"}
    return dlt.resource(timed, name=name, **hints)


def _marked(ctx: SourceContext, spec: TableSpec, table: pa.Table) -> Any:
    return dlt.mark.with_hints(table, dlt.mark.make_hints(**_hints(spec, ctx.dropped_columns)), create_table_variant=True)


def windowed_resource(ctx: SourceContext, spec: TableSpec, key: tuple[str, ...] = ("id",)) -> DltResource:
    """Resources whose endpoint filters by date: read [cursor - lookback, start - lag) sorted ascending."""

    def read() -> Iterator[pa.Table]:
        window = ctx.window(spec.name)
        if window is None:
            return
        path = ctx.client.path(spec.endpoint)
        query: dict[str, Any] = {"sort": "dateUpdated", "order": "asc"}
        if ctx.configured_projects and spec.name != "compliance_request_events":
            query["projectIds"] = ctx.configured_projects
        stats = ctx.stats_for(spec.name)
        first_page = None
        if ctx.slice_rows:
            window, first_page = _first_slice(ctx, spec, window, path, query, stats)
        pages = ctx.client.iter_pages(path, query, stats, key, window, arrow=True, first_page=first_page)
        yield from batched_tables((ctx.table(spec, page) for page in pages), settings.ARROW_BATCH_ROWS)
        dlt.current.resource_state(spec.name)["cursor"] = window.end.isoformat()

    return _resource(ctx, spec, spec.name, read)


def _first_slice(
    ctx: SourceContext, spec: TableSpec, window: Window, path: str, query: dict[str, Any], stats: ResourceStats
) -> tuple[Window, Page | None]:
    """The part of `window` this run reads (all of it, unless it holds more than `slice_rows`).

    The window's first page tells its total; when the whole window is read, paging goes on from
    that page, so deciding costs no request (with 50 ms of latency a separate count cost a round).
    """
    first_page = ctx.client.get_page(path, {**query, **window.params()}, 0, stats, arrow=True)
    if first_page.total <= ctx.slice_rows:
        return window, first_page

    def count(part: Window) -> int:
        return first_page.total if part == window else ctx.client.count(path, {**query, **part.params()}, stats)

    end = slice_end(window, count, ctx.slice_rows, floor=ctx.cursor(spec.name))
    if end >= window.end:
        return window, None
    stats.unfinished = True
    return Window(window.start, end), None


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


def projects_resource(ctx: SourceContext) -> DltResource:
    spec = settings.PROJECTS

    def read() -> Iterator[pa.Table]:
        since = ctx.since(spec.name)
        items = [p for p in ctx.all_projects() if _updated_since(p, since)]
        if ctx.configured_projects:
            items = [p for p in items if str(p.get("id")) in ctx.configured_projects]
        if items:
            yield ctx.table(spec, items)
        dlt.current.resource_state(spec.name)["cursor"] = (ctx.run_started - ctx.lag).isoformat()

    return _resource(ctx, spec, spec.name, read)


def consent_types_resource(ctx: SourceContext) -> DltResource:
    spec = settings.CONSENT_TYPES

    def read() -> Iterator[pa.Table]:
        since = ctx.since(spec.name)
        stats = ctx.stats_for(spec.name)
        for project in ctx.project_ids():
            path = ctx.client.path(spec.endpoint, project)
            for page in ctx.client.iter_pages(path, {"sort": "dateUpdated", "order": "asc"}, stats):
                items = [t for t in page if _updated_since(t, since)]
                if items:
                    yield ctx.table(spec, items)
        dlt.current.resource_state(spec.name)["cursor"] = (ctx.run_started - ctx.lag).isoformat()

    return _resource(ctx, spec, spec.name, read)


def tracker_scans_resource(ctx: SourceContext) -> DltResource:
    """Configs (one row per project) and scans (one per scanHistory entry) from one endpoint.

    The endpoint has no date filter, so every run reads the history and emits only scans newer
    than the cursor, scans not finished yet, and scans that were unfinished on the last run.
    """
    config_spec, scan_spec = settings.TRACKER_SCAN_CONFIGS, settings.TRACKER_SCANS

    def read() -> Iterator[Any]:
        state = dlt.current.resource_state("tracker_scans")
        since = ctx.since("tracker_scans")
        pending_before = set(state.get("pending", [])) if not ctx.full_refresh else set()
        pending_now: list[str] = []
        stats = ctx.stats_for("tracker_scans")
        for project in ctx.project_ids():
            path = ctx.client.path(config_spec.endpoint, project)
            for page in ctx.client.iter_pages(path, {}, stats, key=("projectId",)):
                configs = [{k: v for k, v in c.items() if k != "scanHistory"} for c in page]
                yield _marked(ctx, config_spec, ctx.table(config_spec, configs))
                scans = [s for c in page for s in _scan_rows(c)]
                chosen = [s for s in scans if _scan_wanted(s, since, pending_before)]
                pending_now += [_scan_key(s) for s in scans if _scan_unfinished(s)]
                if chosen:
                    yield _marked(ctx, scan_spec, ctx.table(scan_spec, chosen))
        state["pending"] = sorted(set(pending_now))
        state["cursor"] = (ctx.run_started - ctx.lag).isoformat()

    return _resource(ctx, None, "tracker_scans", read)


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
    return f"{scan['projectId']}|{scan['scanDate'].isoformat()}"


def _scan_unfinished(scan: dict[str, Any]) -> bool:
    return str(scan.get("status", "")).lower() not in FINAL_SCAN_STATES


def _scan_wanted(scan: dict[str, Any], since: datetime | None, pending: set[str]) -> bool:
    if since is None or _scan_unfinished(scan) or _scan_key(scan) in pending:
        return True
    return scan["scanDate"] >= since


def _updated_since(item: dict[str, Any], since: datetime | None) -> bool:
    if since is None:
        return True
    updated = to_utc(item.get("dateUpdated")) or to_utc(item.get("dateCreated"))
    return updated is None or updated >= since


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
        consent_types_resource(ctx),
        windowed_resource(ctx, settings.COMPLIANCE_REQUESTS),
        windowed_resource(ctx, settings.COMPLIANCE_REQUEST_EVENTS, REQUEST_EVENT_KEY),
        tracker_scans_resource(ctx),
        usage_metrics_resource(ctx),
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
    base_url: str = settings.DEFAULT_BASE_URL,
    project_ids: list[str] | None = None,
    start_date: str | None = None,
    lookback_seconds: int = settings.DEFAULT_LOOKBACK_SECONDS,
    lag_seconds: int = settings.DEFAULT_LAG_SECONDS,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    pii: str = "keep",
    pii_salt: str | None = None,
    metrics_per_project: bool = False,
    metrics_lookback_days: int = settings.DEFAULT_METRICS_LOOKBACK_DAYS,
    metrics_initial_days: int = settings.DEFAULT_METRICS_INITIAL_DAYS,
    full_refresh: bool = False,
    timeout: float = 30.0,
    max_retries: int = 6,
    backoff_base: float = 0.5,
    run_started: datetime | None = None,
    stats: dict[str, ResourceStats] | None = None,
    slice_rows: int = settings.SLICE_ROWS,
) -> list[DltResource]:
    """Concord Privacy API export. Config lives in section `sources.concord` (see README)."""
    options = ClientOptions(
        base_url=base_url,
        api_key=api_key,
        organization_id=validate_organization_id(organization_id),
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        backoff_base=backoff_base,
    )
    ctx = SourceContext(
        ConcordClient(options),
        project_ids=validate_project_ids(project_ids),
        initial_start=parse_start_date(start_date),
        run_started=run_started or datetime.now(tz=UTC),
        lookback=timedelta(seconds=lookback_seconds),
        lag=timedelta(seconds=lag_seconds),
        pii=validate_pii(pii, pii_salt),
        pii_salt=pii_salt.encode() if pii_salt else None,
        full_refresh=full_refresh,
        metrics_per_project=metrics_per_project,
        metrics_lookback_days=metrics_lookback_days,
        metrics_initial_days=metrics_initial_days,
        stats=stats if stats is not None else {},
        slice_rows=max(0, slice_rows),
    )
    return build_resources(ctx)


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
