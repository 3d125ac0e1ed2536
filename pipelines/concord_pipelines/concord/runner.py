"""Run the Concord export end to end: destination, locking, progress, summary, error mapping."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import dlt
from dlt.common.configuration.providers import DictionaryProvider
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.destination.reference import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir

from concord_pipelines.concord import settings
from concord_pipelines.concord.client import (
    ClientOptions,
    ConcordClient,
    ResourceStats,
    check_api_key,
    check_base_url,
)
from concord_pipelines.concord.config import resolve_settings
from concord_pipelines.concord.config_checks import (
    MAX_WINDOW_SECONDS,
    check_duckdb_file,
    check_lock_path,
    check_pii_salt,
    check_pipeline_name,
    check_pipelines_dir,
    check_start_year,
    missing_destination_settings,
    seconds,
    whole_number,
)
from concord_pipelines.concord.source import (
    concord_source,
    live_stats,
    parse_interval,
    parse_start_date,
    validate_organization_id,
    validate_pii,
)
from concord_pipelines.errors import ConcurrentRunError, ConfigError, Interrupted, PipelineError
from concord_pipelines.memory import limit_malloc_arenas, release_free_memory, use_system_allocator_for_arrow
from concord_pipelines.merging import TABLE_FORMAT_DESTINATIONS, check_merges
from concord_pipelines.progress import make_progress
from concord_pipelines.report import format_table
from concord_pipelines.telemetry import telemetry_off_by_default

if TYPE_CHECKING:
    from concord_pipelines.dbt_runner import DbtResult

log = logging.getLogger(__name__)

PARQUET_DESTINATIONS = {"duckdb", "motherduck", "filesystem", "bigquery", "snowflake", "athena", "databricks"}


@dataclass
class RunOptions:
    organization_id: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    resources: list[str] | None = None
    destination: str | None = None  # None: [sources.concord] destination, else duckdb
    duckdb_path: str | None = None
    dataset: str | None = None  # None: [sources.concord] dataset, else concord
    start_date: str | None = None
    full_refresh: bool = False
    pipeline_name: str | None = None  # None: [sources.concord] pipeline_name, else concord
    pipelines_dir: str | None = None
    project_ids: list[str] | None = None
    pii: str | None = None
    pii_salt: str | None = None
    lookback_seconds: int | None = None
    lag_seconds: int | None = None
    concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    backoff_base: float | None = None
    progress: bool = True
    # Interval mode (both or neither, ISO 8601): the date-windowed resources export exactly
    # [interval_start, interval_end) and merge it, leaving their incremental cursors alone.
    interval_start: str | datetime | None = None
    interval_end: str | datetime | None = None
    dbt: bool | None = None  # None: [sources.concord] dbt, else true (build the dbt models after the load)
    table_format: str | None = None  # None: [sources.concord] table_format, else delta on filesystem
    fail_on_dbt_test: bool | None = None  # None: [sources.concord] fail_on_dbt_test, else false


@dataclass
class TableSummary:
    table: str
    loaded: int
    new: int | None
    updated: int | None
    total: int | None


@dataclass
class RunResult:
    tables: list[TableSummary]
    resources: dict[str, ResourceStats]
    seconds: float
    destination: str
    dataset: str
    duckdb_path: str | None = None
    load_ids: list[str] = field(default_factory=list)
    dbt: DbtResult | None = None  # the post-load dbt build, None when it did not run
    fail_on_dbt_test: bool = False  # the caller exits non-zero when dbt did not pass (dbt_runner.check)

    def summary(self) -> str:
        table_rows = [(t.table, t.loaded, t.new, t.updated, t.total) for t in self.tables]
        resource_rows = [
            (name, s.items, s.pages, s.requests, s.retries, s.throttled, s.rereads + s.splits, round(s.seconds, 2))
            for name, s in sorted(self.resources.items())
        ]
        notes = [f"skipped in {name}: {line}" for name, s in sorted(self.resources.items()) for line in s.skipped]
        notes += [f"{name}: {s.swept:,} updated rows found outside the date filter's window (the API filters on another date)"
                  for name, s in sorted(self.resources.items()) if s.swept]
        return "\n".join(
            [
                format_table(["table", "rows loaded", "new", "updated", "rows in table"], table_rows),
                "",
                format_table(["resource", "items", "pages", "requests", "retries", "throttled", "re-reads", "seconds"],
                             resource_rows),
                *(["", *notes] if notes else []),
                "",
                f"finished in {self.seconds:.1f} s into {self.destination} dataset '{self.dataset}'"
                + (f" ({self.duckdb_path})" if self.duckdb_path else ""),
                *([self.dbt.summary_line()] if self.dbt is not None else []),
            ]
        )


def resolve_resources(names: list[str] | None) -> list[str]:
    return settings.resolve_resource_names(names, "--resources / SOURCES__CONCORD__RESOURCES")


class _DltDefaults(DictionaryProvider):
    NAME = "concord performance defaults"


def register_dlt_defaults() -> None:
    """settings.DLT_DEFAULTS as dlt's last config provider: they apply from any cwd, config/env override them."""
    telemetry_off_by_default()  # again: a reloaded dlt run context starts without the package's provider
    if _DltDefaults.NAME not in [p.name for p in dlt.config.config_providers]:
        provider = _DltDefaults()
        for key, value in settings.DLT_DEFAULTS.items():
            provider.set_value(key, value, None)
        dlt.config.register_provider(provider)


def with_one_duckdb_connection(pipeline: dlt.Pipeline, duckdb_path: str, scope: ExitStack) -> dlt.Pipeline:
    """The pipeline on one DuckDB connection held for the whole run, closed (checkpointed) when `scope` ends.

    dlt otherwise opens and closes a connection per load job, and every close checkpoints: a
    100,000-event first load spent ~0.8 s of its 1.6 s load step opening, closing and checkpointing.
    """
    import duckdb

    remember_duckdb_path(pipeline, duckdb_path)
    try:
        connection = scope.enter_context(duckdb.connect(duckdb_path))
    except duckdb.Error as err:
        raise duckdb_open_error(duckdb_path, err) from None
    destination = dlt.destinations.duckdb(credentials=connection)
    return dlt.pipeline(pipeline.pipeline_name, destination=destination, dataset_name=pipeline.dataset_name, pipelines_dir=pipeline.pipelines_dir)


def remember_duckdb_path(pipeline: dlt.Pipeline, duckdb_path: str) -> None:
    """Store the file in the pipeline's local state, where dlt looks when it re-creates the destination.

    dlt keeps no credentials in pipeline state: `dlt.attach()`, `dlt pipeline NAME info|show` and a later
    `pipeline.dataset()` rebuild the DuckDB destination from config, which would be `./<pipeline name>.duckdb`
    in the current folder. Only a configured path that is absolute wins over `_local.duckdb_database`
    (dlt's `WithLocalFiles.make_location`), so the run's file is what dlt's tools open, from any folder.
    """
    try:
        stored = pipeline.get_local_state_val("duckdb_database")
    except KeyError:
        stored = None
    if stored != duckdb_path:
        pipeline.set_local_state_val("duckdb_database", duckdb_path)


def duckdb_open_error(path: str, err: Exception) -> PipelineError:
    """DuckDB allows one writing process: a file held open elsewhere (a notebook, a SQL client) is not a bug."""
    text = _first_line(err)
    if "lock" in text.lower():
        pid = re.search(r"PID \d+", text)
        holder = f" ({pid.group(0)})" if pid else ""
        return ConcurrentRunError(
            f"the DuckDB file {path} is open in another program{holder}; DuckDB allows one writer at a time: "
            "close it there (or wait for it) and run again"
        )
    return ConfigError(f"cannot open the DuckDB file {path}: {text}; fix or move it, or choose another --duckdb-path")


def make_destination(options: RunOptions) -> tuple[Any, str | None]:
    name = options.destination
    if name == "duckdb":
        path = Path(options.duckdb_path or settings.DEFAULT_DUCKDB_PATH).expanduser().resolve()
        _check_writable(path)
        check_catalog_differs(path, str(options.dataset or settings.DEFAULT_DATASET))
        return dlt.destinations.duckdb(credentials=str(path)), str(path)
    try:
        destination = Destination.from_reference(name)
    except UnknownDestinationModule:
        raise ConfigError(
            f"unknown destination {name!r}: pass --destination with a dlt destination such as duckdb, postgres, "
            "bigquery, snowflake, motherduck or filesystem"
        ) from None
    except Exception as err:
        raise ConfigError(f"destination {name!r} could not be set up: {_first_line(err)}") from None
    check_merges(destination, name, table_format_for(options))  # before settings: no setting makes it merge
    _check_destination_settings(destination, options.pipeline_name or settings.DEFAULT_PIPELINE_NAME)
    return destination, None


def table_format_for(options: RunOptions) -> str | None:
    """The table format of every table: --table-format, else [sources.concord] table_format, else delta on
    filesystem (plain files cannot merge) and none elsewhere (the warehouse's own tables merge)."""
    name = canonical_destination(str(options.destination))
    explicit = options.table_format
    if not explicit:
        return settings.DEFAULT_TABLE_FORMAT if name == "filesystem" else None
    value = str(explicit).strip().lower()
    if value not in settings.TABLE_FORMATS:
        raise ConfigError(f"unknown table format {explicit!r}: use --table-format {' or '.join(settings.TABLE_FORMATS)} "
                          "(or SOURCES__CONCORD__TABLE_FORMAT)")
    if name not in TABLE_FORMAT_DESTINATIONS or value not in TABLE_FORMAT_DESTINATIONS[name]:
        raise ConfigError(f"--table-format {value} does not apply to --destination {name}: drop it "
                          "(filesystem takes delta or iceberg, athena iceberg)")
    return value


def _check_destination_settings(destination: Any, pipeline_name: str) -> None:
    """A missing bucket_url or credentials, named as the env var to set, before any state exists.

    Resolved in the pipeline's config section, as dlt will, so `[<pipeline>.destination...]` counts too.
    """
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.exceptions import ConfigFieldMissingException
    from dlt.common.configuration.specs.config_section_context import ConfigSectionContext

    try:
        with Container().injectable_context(ConfigSectionContext(pipeline_name=pipeline_name)):
            destination.configuration(destination.spec())
    except ConfigFieldMissingException as err:
        missing = missing_destination_settings(err, destination.destination_type)
        if missing is not None:
            raise missing from None
    except Exception as err:  # anything else is reported by the run itself, with its step
        log.debug("destination settings not checked up front: %s", _first_line(err))


def check_catalog_differs(path: Path, dataset: str) -> None:
    """DuckDB names a file's catalog after its stem: `concord.duckdb` holding schema `concord` makes every
    `concord.<table>` ambiguous, and dlt's loads, `pipeline.dataset()` and plain SQL all fail on it."""
    if path.stem.lower() == dataset.lower():
        raise ConfigError(
            f"the DuckDB file {path.name} is named like the dataset '{dataset}', which DuckDB cannot tell apart "
            f"(catalog vs schema): choose another --dataset (default {settings.DEFAULT_DATASET}) or another --duckdb-path"
        )


def canonical_destination(name: str) -> str:
    """`dlt.destinations.duckdb` is `duckdb`: the same file path, lock and catalog handling."""
    prefix = "dlt.destinations."
    return name[len(prefix):] if name.startswith(prefix) else name


def _check_writable(path: Path) -> None:
    parent = path.parent
    if path.is_dir():
        raise ConfigError(f"--duckdb-path {path} is a directory: give a file path such as {path / 'concord.duckdb'}")
    if not parent.is_dir():
        raise ConfigError(f"cannot write the DuckDB file {path}: folder {parent} does not exist; create it or choose another --duckdb-path")
    check_duckdb_file(path)
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise ConfigError(f"cannot write the DuckDB file {path}: permission denied; choose a writable --duckdb-path")


@contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Refuse a second run on the same pipeline or DuckDB file; the OS frees the lock if we die."""
    check_lock_path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as err:
        raise ConfigError(f"cannot create the lock file {lock_path}: {err.strerror}; fix the folder's permissions or choose another one") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConcurrentRunError(f"another run is using {what} (lock {lock_path}); wait for it to finish and run again") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@dataclass
class Checked:
    """Every setting of one run, resolved (flag, env, .dlt/, default) and validated before any file is touched."""

    organization_id: str
    api_key: str
    base_url: str
    resources: list[str]
    start_date: str | None
    lookback: int
    lag: int
    concurrency: int
    timeout: float
    max_retries: int
    backoff_base: float
    pii: str
    pii_salt: str | None
    project_ids: list[str] | None
    pipelines_dir: Path

    def client_options(self) -> ClientOptions:
        return ClientOptions(self.base_url, self.api_key, self.organization_id, concurrency=self.concurrency,
                             timeout=self.timeout, max_retries=self.max_retries, backoff_base=self.backoff_base)

    def source_arguments(self) -> dict[str, Any]:
        """concord_source's arguments for these settings (the caller adds the run's mode)."""
        return dict(organization_id=self.organization_id, api_key=self.api_key, base_url=self.base_url,
                    project_ids=self.project_ids, start_date=self.start_date, lookback_seconds=self.lookback,
                    lag_seconds=self.lag, concurrency=self.concurrency, pii=self.pii, pii_salt=self.pii_salt,
                    timeout=self.timeout, max_retries=self.max_retries, backoff_base=self.backoff_base)


def check_settings(options: RunOptions) -> Checked:
    """One ConfigError line for the first bad setting; nothing on disk exists yet when it is raised."""
    check_pipeline_name(options.pipeline_name or "")
    with _fix_hint("--org or SOURCES__CONCORD__ORGANIZATION_ID"):
        org = validate_organization_id(options.organization_id)
    api_key = options.api_key
    if not api_key:
        raise ConfigError("no API key: set SOURCES__CONCORD__API_KEY or api_key in .dlt/secrets.toml ([sources.concord])")
    resources = resolve_resources(options.resources)
    start_date = options.start_date
    with _fix_hint("--start-date or SOURCES__CONCORD__START_DATE"):
        check_start_year(parse_start_date(start_date))
    parse_interval(options.interval_start, options.interval_end)
    pii, pii_salt = str(options.pii), options.pii_salt
    validate_pii(pii, pii_salt)
    check_pii_salt(pii, pii_salt)
    return Checked(
        organization_id=org,
        api_key=check_api_key(str(api_key)),
        base_url=check_base_url(str(options.base_url)),
        resources=resources,
        start_date=start_date,
        lookback=whole_number(options.lookback_seconds,
                              "lookback_seconds", "--lookback-seconds", 0, MAX_WINDOW_SECONDS),
        lag=whole_number(options.lag_seconds,
                         "lag_seconds", "--lag-seconds", 0, MAX_WINDOW_SECONDS),
        concurrency=whole_number(options.concurrency,
                                 "concurrency", "--concurrency", 1, 256),
        timeout=seconds(options.timeout, "timeout", None, 0, positive=True),
        max_retries=whole_number(options.max_retries, "max_retries", None, 0, 100),
        backoff_base=seconds(options.backoff_base, "backoff_base", None, 0),
        pii=pii,
        pii_salt=pii_salt,
        project_ids=options.project_ids,
        pipelines_dir=check_pipelines_dir(str(options.pipelines_dir or get_dlt_pipelines_dir())),
    )


def open_pipeline(name: str, destination: Any, dataset: str, pipelines_dir: Path) -> dlt.Pipeline:
    """dlt.pipeline(), with unreadable local state (a corrupted or empty state or schema file) as one line."""
    try:
        return dlt.pipeline(pipeline_name=name, destination=destination, dataset_name=dataset, pipelines_dir=str(pipelines_dir))
    except Exception as err:
        working = pipelines_dir / name
        raise ConfigError(
            f"the local state of pipeline '{name}' in {working} is unreadable ({type(err).__name__}): move that folder "
            "away and run again; the state is restored from the destination"
        ) from None


def run_export(options: RunOptions, out: IO[str] | None = None) -> RunResult:
    """Run one export; raises PipelineError with a one-line message on anything the user can fix."""
    out = out or sys.stderr
    started = time.monotonic()
    use_system_allocator_for_arrow()
    limit_malloc_arenas()
    options = resolve_names(options)
    checked = check_settings(options)
    destination, duckdb_path = make_destination(options)
    register_dlt_defaults()
    with exclusive(checked.pipelines_dir / f".{options.pipeline_name}.lock", f"pipeline '{options.pipeline_name}'"), (
        exclusive(Path(duckdb_path + ".lock"), f"DuckDB file {duckdb_path}") if duckdb_path else nullcontext()
    ), ExitStack() as connection_scope:
        pipeline = _pipeline_for_run(options, destination, duckdb_path, checked.pipelines_dir, connection_scope)
        if checked.project_ids:
            check_project_ids(checked.client_options(), checked.project_ids)
        tables = [t for r in checked.resources for t in settings.RESOURCE_TABLES[r]]
        before = count_rows(pipeline, tables)
        try:
            with make_progress(live_stats, out) if options.progress else nullcontext():
                loads = _load_until_caught_up(pipeline, checked, options, duckdb_path, connection_scope)
        except Exception as err:
            raise translate_failure(err) from err
        after = count_rows(loads.pipeline, tables)
        dbt_result = build_models(loads.pipeline, options, duckdb_path, connection_scope, out)
    return RunResult(
        tables=[_table_summary(t, loads.rows.get(t, 0), before.get(t), after.get(t)) for t in tables],
        resources=loads.resources,
        seconds=time.monotonic() - started,
        destination=options.destination,
        dataset=options.dataset,
        duckdb_path=duckdb_path,
        load_ids=loads.load_ids,
        dbt=dbt_result,
        fail_on_dbt_test=bool(options.fail_on_dbt_test),
    )


def _pipeline_for_run(options: RunOptions, destination: Any, duckdb_path: str | None, pipelines_dir: Path,
                      connection_scope: ExitStack) -> dlt.Pipeline:
    pipeline = open_pipeline(options.pipeline_name, destination, options.dataset, pipelines_dir)
    if duckdb_path and not Path(duckdb_path).exists() and pipeline.first_run is False:
        # The warehouse was deleted but local state survived: start over instead of skipping data.
        pipeline.drop()
        pipeline = open_pipeline(options.pipeline_name, destination, options.dataset, pipelines_dir)
    return with_one_duckdb_connection(pipeline, duckdb_path, connection_scope) if duckdb_path else pipeline


@dataclass
class Loads:
    """What the loads of one run did: row counts from dlt's trace, counters from the resources' state."""

    pipeline: dlt.Pipeline
    rows: Counter[str] = field(default_factory=Counter)
    resources: dict[str, ResourceStats] = field(default_factory=dict)
    load_ids: list[str] = field(default_factory=list)

    def add(self, info: Any, names: list[str]) -> None:
        self.load_ids += info.loads_ids
        if self.pipeline.last_trace.last_normalize_info:
            self.rows.update(self.pipeline.last_trace.last_normalize_info.row_counts)
        for name in names:
            if saved := _resource_state(self.pipeline, name).get("last_run"):
                self.resources.setdefault(name, ResourceStats()).merge(ResourceStats.from_state(saved))


def _resource_state(pipeline: dlt.Pipeline, name: str) -> dict[str, Any]:
    return pipeline.state.get("sources", {}).get("concord", {}).get("resources", {}).get(name, {})


def _load_until_caught_up(pipeline: dlt.Pipeline, checked: Checked, options: RunOptions, duckdb_path: str | None,
                          connection_scope: ExitStack) -> Loads:
    """Pending packages first, then one load per slice until every resource's state says it caught up.

    The source alone reads a big window completely in one load; the CLI asks it for one slice per load,
    so each load commits its rows and cursor, and holds the memory of one slice.
    """
    loads = Loads(pipeline, load_ids=load_pending(pipeline))
    fmt = "parquet" if options.destination in PARQUET_DESTINATIONS else None
    table_format = table_format_for(options)  # delta on filesystem: merges (concord_pipelines.merging)
    names, full_refresh = list(checked.resources), options.full_refresh
    while names:
        source = concord_source(**checked.source_arguments(), full_refresh=full_refresh, slices_per_run=1,
                                interval_start=options.interval_start, interval_end=options.interval_end,
                                table_format=table_format)
        loads.add(loads.pipeline.run(source.with_resources(*names), loader_file_format=fmt), names)
        names = [n for n in names if _resource_state(loads.pipeline, n).get("unfinished")]
        full_refresh = False
        if names and duckdb_path:
            # Closing checkpoints the slice into the file and frees DuckDB's buffers, which the next
            # slice's fetch would otherwise sit on top of.
            connection_scope.close()
            release_free_memory()
            loads.pipeline = with_one_duckdb_connection(loads.pipeline, duckdb_path, connection_scope)
    return loads


def resolve_names(options: RunOptions) -> RunOptions:
    """Every setting of the run: the option when given, else dlt's config ([sources.concord], env), else the
    default declared in concord.config: the one place settings are resolved, for the CLI and the DAG alike."""
    resolved = resolve_settings({f.name: getattr(options, f.name) for f in fields(options)})
    values = {f.name: getattr(resolved, f.name) for f in fields(options) if hasattr(resolved, f.name)}
    return replace(options, **{**values, "destination": canonical_destination(str(resolved.destination))})


def build_models(pipeline: dlt.Pipeline, options: RunOptions, duckdb_path: str | None, connection_scope: ExitStack,
                 out: IO[str]) -> DbtResult | None:
    """dbt build of the bundled project after a successful load (concord_pipelines.dbt_runner); a failing test or
    model is reported in the summary and never undoes the load. Off with --no-dbt or dbt = false."""
    if not options.dbt:
        return None
    from concord_pipelines import dbt_runner

    if options.destination not in dbt_runner.BUILT_DESTINATIONS:
        print(f"dbt build skipped: the connector builds into {' and '.join(dbt_runner.BUILT_DESTINATIONS)}; "
              f"for {options.destination} run the dbt package from your own dbt project (README)", file=out)
        return None
    if options.progress:
        print("building the dbt models (--no-dbt skips this) ...", file=out, flush=True)
    existing = dbt_runner.existing_tables(pipeline)
    connection_scope.close()  # dbt opens the DuckDB file from its own process: release our handle first
    try:
        return dbt_runner.build_after_load(pipeline, options.destination, str(options.dataset), duckdb_path, existing)
    except Exception as err:  # the data is loaded; say why the models are missing and go on
        log.warning("dbt build not run: %s", _first_line(err))
        return None


def load_pending(pipeline: dlt.Pipeline) -> list[str]:
    """Finish the packages a killed run left behind, then let this run extract as usual.

    dlt's `run()` would load pending packages and return without extracting, so a daily job
    would skip a day after every crash. Loading them first keeps their rows and state (cursors
    advance only together with the data they describe).
    """
    if not pipeline.has_pending_data:
        return []
    if pipeline.list_extracted_load_packages():
        pipeline.normalize()
    if not pipeline.list_normalized_load_packages():
        return []
    return list(pipeline.load().loads_ids)


def check_project_ids(client_options: ClientOptions, project_ids: list[str]) -> None:
    """A mistyped --project would otherwise export nothing, successfully, every day."""
    with ConcordClient(client_options) as client:
        path = client.path(settings.PROJECTS.endpoint)
        known = {str(p.get("id")) for page in client.iter_pages(path, {}, ResourceStats()) for p in page}
    unknown = [p for p in project_ids if p not in known]
    if unknown:
        raise ConfigError(
            f"unknown project id {unknown[0]!r} for organization {client_options.organization_id}: "
            "fix --project / SOURCES__CONCORD__PROJECT_IDS (ids are listed by GET /organizations/{org}/projects)"
        )


@contextmanager
def _fix_hint(fix: str) -> Iterator[None]:
    """Append where a setting comes from to a ConfigError raised by a validator that does not know."""
    try:
        yield
    except ConfigError as err:
        raise ConfigError(f"{err} (set {fix})") from None


def _table_summary(table: str, loaded: int, before: int | None, after: int | None) -> TableSummary:
    if after is None:
        return TableSummary(table, loaded, None, None, None)
    new = after - (before or 0)
    return TableSummary(table, loaded, new, max(loaded - new, 0), after)


def count_rows(pipeline: dlt.Pipeline, tables: list[str]) -> dict[str, int]:
    """Rows per table in the destination (missing tables are left out)."""
    counts: dict[str, int] = {}
    try:
        with pipeline.sql_client() as client:
            for table in tables:
                name = client.make_qualified_table_name(table)
                try:
                    rows = client.execute_sql(f"SELECT count(*) FROM {name}")
                except Exception:
                    continue
                counts[table] = int(rows[0][0]) if rows else 0
    except Exception:
        return counts
    return counts


def translate_failure(err: BaseException) -> PipelineError:
    """dlt wraps our errors in PipelineStepFailed; surface the root cause as one line."""
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in chain:
        if isinstance(cause, PipelineError):
            return cause
        if isinstance(cause, Interrupted | KeyboardInterrupt):  # dlt wrapped a signal: it is not a failure
            raise cause if isinstance(cause, Interrupted) else Interrupted(signal.SIGINT)
        if isinstance(cause, StopIteration | StopAsyncIteration | GeneratorExit):
            break  # generator plumbing a bug was raised during, not the cause: report the bug
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    root = chain[-1]
    resource = next((getattr(c, "resource_name", None) for c in chain if getattr(c, "resource_name", None)), None)
    step = getattr(err, "step", "run")
    where = f"{step} of {resource}" if resource else step
    if step == "load":  # part of the package may be in; the rest stays pending, its cursors with it
        outcome = "the data and cursors not loaded yet stay in a pending load package, which the next run loads first"
    else:
        outcome = "loaded data and state are as the last successful run left them, and the next run retries"
    return PipelineError(f"the export failed during {where}: {type(root).__name__}: {_first_line(root)}; {outcome} (use --debug for the traceback)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
