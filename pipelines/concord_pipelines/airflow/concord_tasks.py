"""What the Concord Airflow DAGs run, kept free of Airflow imports so it is testable without Airflow.

Settings come, highest first, from an environment variable `CONCORD_<NAME>` (e.g. CONCORD_SCHEDULE), an
Airflow Variable `concord_<name>` (which Airflow also reads from AIRFLOW_VAR_CONCORD_<NAME>), then the
default below. When a DAG file is parsed only the environment is read (CONCORD_<NAME>, then
AIRFLOW_VAR_CONCORD_<NAME>): no metadata-database look-ups per parse. Tasks read Variables when they run. Credentials come from Airflow connections (`concord_api`, `concord_warehouse`), else
from Variables, else from dlt's own config (SOURCES__CONCORD__API_KEY, DESTINATION__POSTGRES__CREDENTIALS,
.dlt/secrets.toml) - never from the DAG file, and they are never logged. See docs/airflow.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from concord_pipelines.concord import settings as concord_settings
from concord_pipelines.errors import ConfigError

log = logging.getLogger(__name__)

Getter = Callable[[str], "str | None"]

DEFAULTS: dict[str, str] = {
    "schedule": "@daily",
    "resources": "",  # empty = every resource
    "destination": "duckdb",
    "duckdb_path": "",  # empty = $AIRFLOW_HOME/concord.duckdb
    "dataset": concord_settings.DEFAULT_DATASET,
    "parallelism": "auto",  # auto | serial | parallel
    "pool": "",
    "retries": "3",
    "retry_delay_seconds": "300",
    "max_retry_delay_seconds": "3600",
    "pipelines_dir": "",  # empty = $AIRFLOW_HOME/dlt_pipelines
    "pipeline_prefix": concord_settings.DEFAULT_PIPELINE_NAME,  # the CLI's default name: one naming for both
    "start_date": "",
    "lag_seconds": "",
    "lookback_seconds": "",
    "concurrency": "",
    "models": "true",  # the dbt tasks: source freshness, then build (models and tests)
    "dbt_freshness": "error",  # error: stale sources fail dbt_source_freshness | warn: only logged | off
    "api_conn_id": "concord_api",
    "warehouse_conn_id": "concord_warehouse",
    # the shape of the scheduled DAG (read from the environment when the file is parsed)
    "dag_start_date": "2026-12-01",  # the first data interval; older history is the backfill DAG's job
    "dag_end_date": "",  # empty: no end; else the last data interval ends on or before it
    "catchup": "true",  # missed intervals are run when the DAG is unpaused
    "interval_lookback_seconds": "3600",  # each interval also re-reads this much before its start (late rows)
    "task_timeout_minutes": "120",
    "dagrun_timeout_minutes": "720",
    # the partitioned backfill DAG
    "backfill_partitions": "8",  # how many partitions a backfill is cut into (by the API's per-day counts)
    "backfill_parallelism": "4",  # partitions running at once in one backfill run
    "backfill_pool": "",  # an Airflow pool bounding partitions across all runs (create it first)
    "partition_timeout_minutes": "120",
    "backfill_timeout_minutes": "2880",
}

# Settings that shape a DAG: read at parse time from the environment only.
PARSE_TIME = ("schedule", "resources", "destination", "parallelism", "pool", "retries", "retry_delay_seconds",
              "max_retry_delay_seconds", "models", "dbt_freshness", "dag_start_date", "dag_end_date", "catchup",
              "task_timeout_minutes", "dagrun_timeout_minutes", "backfill_parallelism", "backfill_pool",
              "partition_timeout_minutes", "backfill_timeout_minutes")


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


@dataclass
class DagSettings:
    schedule: str | None
    resources: list[str]
    destination: str
    duckdb_path: str | None
    dataset: str
    parallel: bool
    pool: str | None
    retries: int
    retry_delay_seconds: int
    max_retry_delay_seconds: int
    pipelines_dir: str
    pipeline_prefix: str
    start_date: str | None
    lag_seconds: int | None
    lookback_seconds: int | None
    concurrency: int | None
    models: bool
    dbt_freshness: str
    api_conn_id: str
    warehouse_conn_id: str
    dag_start_date: str
    dag_end_date: str | None
    catchup: bool
    interval_lookback_seconds: int
    task_timeout_minutes: int
    dagrun_timeout_minutes: int
    backfill_partitions: int
    backfill_parallelism: int
    backfill_pool: str | None
    partition_timeout_minutes: int
    backfill_timeout_minutes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def pipeline_name(self, resource: str) -> str:
        """One dlt pipeline per resource: own state, own lock, so tasks never share or clobber state.
        The CLI reaches the same state with `--pipeline-name <prefix>_<resource> --resources <resource>`."""
        return f"{self.pipeline_prefix}_{resource}"

    def partition_pipeline_name(self, index: int) -> str:
        """A backfill partition's own pipeline (own local state and lock; intervals move no cursor)."""
        return f"{self.pipeline_prefix}_backfill_p{index:03d}"


def lookup(name: str, variable: Getter | None = None) -> str:
    """CONCORD_<NAME> env var, else Airflow Variable concord_<name>, else the default. Without `variable`
    (parse time) the Variable is read from its environment form AIRFLOW_VAR_CONCORD_<NAME> only."""
    env = os.environ.get(f"CONCORD_{name.upper()}")
    if env is not None and env != "":
        return env
    if variable is None:
        env = os.environ.get(f"AIRFLOW_VAR_CONCORD_{name.upper()}")
        return env if env else DEFAULTS[name]
    try:
        value = variable(f"concord_{name}")
    except Exception:  # no metadata DB here, or the Variable does not exist
        value = None
    if value is not None and str(value) != "":
        return str(value)
    return DEFAULTS[name]


def _int(name: str, raw: str) -> int | None:
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"concord_{name} must be a whole number, got {raw!r}") from None


def resolve_resources(names: list[str]) -> list[str]:
    """Like runner.resolve_resources, without importing dlt: the DAG file is parsed every 30 s."""
    return concord_settings.resolve_resource_names(names, "concord_resources")


def load_settings(variable: Getter | None = None) -> DagSettings:
    get = lambda name: lookup(name, variable)  # noqa: E731
    destination = get("destination").strip()
    duckdb_path: str | None = None
    if destination == "duckdb":
        duckdb_path = get("duckdb_path").strip() or str(airflow_home() / "concord.duckdb")
        if not Path(duckdb_path).expanduser().is_absolute():
            raise ConfigError(f"concord_duckdb_path must be absolute (workers run in other folders), got {duckdb_path!r}")
        duckdb_path = str(Path(duckdb_path).expanduser())
    parallelism = get("parallelism").strip().lower()
    if parallelism not in ("auto", "serial", "parallel"):
        raise ConfigError(f"concord_parallelism must be auto, serial or parallel, got {parallelism!r}")
    schedule = get("schedule").strip()
    freshness = get("dbt_freshness").strip().lower()
    if freshness not in ("error", "warn", "off"):
        raise ConfigError(f"concord_dbt_freshness must be error, warn or off, got {freshness!r}")
    resources = [r for r in get("resources").split(",") if r.strip()]
    return DagSettings(
        schedule=None if schedule.lower() in ("none", "null", "manual") else schedule,
        resources=resolve_resources(resources or None),
        destination=destination,
        duckdb_path=duckdb_path,
        dataset=get("dataset").strip(),
        # DuckDB allows one writer per file: tasks into one file run one after another.
        parallel=parallelism == "parallel" or (parallelism == "auto" and destination not in ("duckdb", "motherduck")),
        pool=get("pool").strip() or None,
        retries=_int("retries", get("retries")) or 0,
        retry_delay_seconds=_int("retry_delay_seconds", get("retry_delay_seconds")) or 0,
        max_retry_delay_seconds=_int("max_retry_delay_seconds", get("max_retry_delay_seconds")) or 0,
        pipelines_dir=get("pipelines_dir").strip() or str(airflow_home() / "dlt_pipelines"),
        pipeline_prefix=get("pipeline_prefix").strip(),
        start_date=get("start_date").strip() or None,
        lag_seconds=_int("lag_seconds", get("lag_seconds")),
        lookback_seconds=_int("lookback_seconds", get("lookback_seconds")),
        concurrency=_int("concurrency", get("concurrency")),
        models=_flag(get("models")),
        dbt_freshness=freshness,
        api_conn_id=get("api_conn_id").strip(),
        warehouse_conn_id=get("warehouse_conn_id").strip(),
        dag_start_date=get("dag_start_date").strip(),
        dag_end_date=get("dag_end_date").strip() or None,
        catchup=_flag(get("catchup")),
        interval_lookback_seconds=_int("interval_lookback_seconds", get("interval_lookback_seconds")) or 0,
        task_timeout_minutes=_positive("task_timeout_minutes", get),
        dagrun_timeout_minutes=_positive("dagrun_timeout_minutes", get),
        backfill_partitions=_positive("backfill_partitions", get),
        backfill_parallelism=_positive("backfill_parallelism", get),
        backfill_pool=get("backfill_pool").strip() or None,
        partition_timeout_minutes=_positive("partition_timeout_minutes", get),
        backfill_timeout_minutes=_positive("backfill_timeout_minutes", get),
    )


def _flag(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _positive(name: str, get: Callable[[str], str]) -> int:
    value = _int(name, get(name))
    if value is None or value < 1:
        raise ConfigError(f"concord_{name} must be a whole number of at least 1, got {get(name)!r}")
    return value


@dataclass
class ApiCredentials:
    organization_id: str | None = None
    api_key: str | None = None
    base_url: str | None = None


def api_credentials(conn: Any | None, variable: Getter | None) -> ApiCredentials:
    """From the Airflow connection (password = API key, host = base URL, login or extra
    organization_id = org), else Variables concord_api_key / concord_organization_id / concord_base_url,
    else None (run_export then reads dlt's SOURCES__CONCORD__* config)."""
    creds = ApiCredentials()
    if conn is not None:
        extra = _extra(conn)
        creds.api_key = getattr(conn, "password", None) or extra.get("api_key")
        creds.organization_id = extra.get("organization_id") or getattr(conn, "login", None)
        creds.base_url = extra.get("base_url") or _base_url(conn)
    for attr, name in (("api_key", "api_key"), ("organization_id", "organization_id"), ("base_url", "base_url")):
        if not getattr(creds, attr) and variable is not None:
            try:
                value = variable(f"concord_{name}")
            except Exception:
                value = None
            setattr(creds, attr, value or None)
    return creds


def _extra(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    if isinstance(extra, dict):
        return extra
    return {}


def _base_url(conn: Any) -> str | None:
    host = getattr(conn, "host", None)
    if not host:
        return None
    if "://" in host:
        base = host
    else:
        schema = getattr(conn, "schema", None) or ""
        scheme = "http" if getattr(conn, "conn_type", "") == "http" and host in ("127.0.0.1", "localhost") else "https"
        base = f"{scheme}://{host}" + (f":{conn.port}" if getattr(conn, "port", None) else "")
        if schema:
            base += "/" + schema.strip("/")
    return base.rstrip("/")


def warehouse_url(conn: Any) -> str:
    """A SQLAlchemy-style URL (what dlt's credentials accept) from an Airflow connection."""
    if hasattr(conn, "get_uri") and getattr(conn, "conn_type", None) in ("postgres", "postgresql"):
        user = quote(conn.login or "", safe="")
        password = quote(conn.password or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        port = f":{conn.port}" if conn.port else ""
        return f"postgresql://{auth}{conn.host}{port}/{conn.schema or ''}"
    return conn.get_uri()


@contextmanager
def destination_credentials(destination: str, url: str | None) -> Iterator[None]:
    """Expose a warehouse URL to dlt as DESTINATION__<NAME>__CREDENTIALS for this task only."""
    if not url:
        yield
        return
    with env_override(f"DESTINATION__{destination.upper()}__CREDENTIALS", url):
        yield


@contextmanager
def env_override(key: str, value: str) -> Iterator[None]:
    """`key` set to `value` in this process's environment while the block runs (dlt reads its config there)."""
    previous = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


WINDOWED = tuple(name for name in concord_settings.RESOURCE_TABLES
                 if getattr(concord_settings.ALL_TABLE_SPECS.get(name), "windowed", False))


def task_interval(start: datetime, end: datetime, s: DagSettings) -> tuple[datetime, datetime]:
    """The rows a scheduled run exports: its data interval, reaching `interval_lookback_seconds` further back
    for rows written late; an end still in the future (a manual run) is cut at now: intervals may not pass it."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    return start - timedelta(seconds=s.interval_lookback_seconds), min(end, datetime.now(tz=UTC))


def export_resource(resource: str, s: DagSettings, api: ApiCredentials, warehouse: str | None,
                    out: Any = None, interval: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """Run one resource's export with its own pipeline; returns a small summary (safe for XCom).

    A date-windowed resource with an `interval` exports exactly that interval and merges it, its cursor
    untouched (repairs and backfills are idempotent); the others always run incrementally."""
    from concord_pipelines.airflow.locks import postgres_url, run_lock
    from concord_pipelines.concord.runner import RunOptions, run_export

    window = interval if resource in WINDOWED else None
    options = RunOptions(
        organization_id=api.organization_id,
        api_key=api.api_key,
        base_url=api.base_url,
        resources=[resource],
        destination=s.destination,
        duckdb_path=s.duckdb_path,
        dataset=s.dataset,
        start_date=s.start_date,
        pipeline_name=s.pipeline_name(resource),
        pipelines_dir=s.pipelines_dir,
        lag_seconds=s.lag_seconds,
        lookback_seconds=s.lookback_seconds,
        concurrency=s.concurrency,
        progress=True,
        dbt=False,  # the DAG builds once, after every export (build_models), not after each one
        interval_start=window[0] if window else None,
        interval_end=window[1] if window else None,
    )
    Path(s.pipelines_dir).mkdir(parents=True, exist_ok=True)
    lock_name = f"concord:{s.dataset}:{options.pipeline_name}"
    with destination_credentials(s.destination, warehouse), run_lock(postgres_url(s.destination, warehouse), lock_name):
        result = run_export(options, out=out)
    if out is not None:
        print(result.summary(), file=out)
    return {
        "resource": resource,
        "pipeline_name": options.pipeline_name,
        "interval": [window[0].isoformat(), window[1].isoformat()] if window else None,
        "seconds": round(result.seconds, 2),
        "tables": {t.table: {"loaded": t.loaded, "total": t.total} for t in result.tables},
    }


def _dbt_target(s: DagSettings, warehouse: str | None) -> Any:
    from concord_pipelines import dbt_runner

    if s.destination == "duckdb":
        return dbt_runner.DbtTarget.duckdb(str(s.duckdb_path), s.dataset)
    if s.destination == "postgres":
        with destination_credentials(s.destination, warehouse):
            return dbt_runner.postgres_target(s.dataset, warehouse)
    raise ConfigError(f"the DAG's dbt tasks build into duckdb or postgres, not {s.destination!r}: set concord_models "
                      "to false and run the dbt package from your own dbt project (README, SQL and dbt)")


def _excludes(s: DagSettings, warehouse: str | None) -> list[str]:
    """Leave out the models of tables not loaded yet (a first run where an export failed, a resource subset)."""
    from concord_pipelines import dbt_runner

    with destination_credentials(s.destination, warehouse):
        existing = dbt_runner.tables_in(s.destination, s.dataset, s.duckdb_path, s.pipelines_dir)
    if existing is None:
        return []
    return dbt_runner.missing_table_excludes(existing, concord_settings.ALL_TABLE_SPECS)


def build_models(s: DagSettings, warehouse: str | None) -> dict[str, Any]:
    """`dbt build` (models, then their tests) after the exports; raises DbtTestsFailed when a test fails or a
    model errors, so the task fails visibly (the loaded data stays)."""
    from concord_pipelines import dbt_runner

    result = dbt_runner.run_dbt(_dbt_target(s, warehouse), "build", exclude=_excludes(s, warehouse),
                                variables={"cdr_enabled": False})
    log.info("%s", result.summary_line())
    dbt_runner.check(result, fail_on_test=True)
    return {"passed": result.passed, "failed": result.failed, "errored": result.errored, "skipped": result.skipped}


def source_freshness(s: DagSettings, warehouse: str | None) -> dict[str, Any]:
    """`dbt source freshness` on the loaded tables; with dbt_freshness=error a source past its error_after
    threshold fails the task (and so skips the build), with warn it is only logged."""
    from concord_pipelines import dbt_runner

    result = dbt_runner.run_dbt(_dbt_target(s, warehouse), "source freshness", exclude=_excludes(s, warehouse),
                                variables={"cdr_enabled": False})
    log.info("%s", result.summary_line())
    if s.dbt_freshness == "error" and not result.ok:
        raise dbt_runner.DbtTestsFailed(f"{result.summary_line()}: the loads are older than the freshness "
                                        "thresholds in sources.yml; check the exports (or set concord_dbt_freshness=warn)")
    return {"passed": result.passed, "warned": result.warned, "stale": result.failures}
