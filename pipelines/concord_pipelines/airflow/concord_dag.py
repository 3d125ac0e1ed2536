"""Concord Privacy API -> warehouse with Airflow 3.x (2.10+ imports too): two DAGs.

`concord_export`, the daily schedule: real data intervals (CronDataIntervalTimetable), one task per resource
(`export_<resource>`, own dlt pipeline `concord_<resource>`). The date-windowed resources (consent events,
compliance requests and their events) export exactly their run's data interval (plus a lookback for late
rows) and merge it, moving no cursor: catchup runs missed days, and clearing a past run repairs exactly
that interval. The other resources run incrementally. Then `dbt_source_freshness` and `dbt_build`.

`concord_backfill`, manual: a long history cut into date partitions of similar size (from the API's
per-day counts), mapped over workers (dynamic task mapping), loaded in parallel into one dataset
(own pipeline and staging dataset per partition, loads serialised by a PostgreSQL advisory lock).

Deploy: install this project into Airflow's environment and copy this file into the DAGs folder;
configure with env `CONCORD_*` / Variables `concord_*` and the connections `concord_api` and
`concord_warehouse`. The DAGs' shape is read from the environment only, so parsing makes no
metadata-database look-ups; tasks read Variables and connections when they run. Guide: docs/airflow.md.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Connection, Param, Variable, get_current_context, task

    def _connection(conn_id: str) -> Any:
        return Connection.get(conn_id)

    def _variable(name: str) -> str | None:
        return Variable.get(name, default=None)

except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.decorators import task  # type: ignore[no-redef]
    from airflow.hooks.base import BaseHook
    from airflow.models import Variable  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]
    from airflow.operators.python import PythonOperator, get_current_context  # type: ignore[no-redef]

    def _connection(conn_id: str) -> Any:
        return BaseHook.get_connection(conn_id)

    def _variable(name: str) -> str | None:
        return Variable.get(name, default_var=None)

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2
    from airflow.exceptions import AirflowFailException  # type: ignore[no-redef]
from airflow.timetables.interval import CronDataIntervalTimetable

from concord_pipelines.airflow import concord_tasks as ct
from concord_pipelines.errors import ConfigError, PipelineError

log = logging.getLogger("concord.dag")
DAG_ID = "concord_export"
BACKFILL_DAG_ID = "concord_backfill"


def _mask(value: str | None) -> None:
    """Register a secret with Airflow's log masker (connections' passwords are masked already)."""
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret  # Airflow 3
    except ImportError:
        try:
            from airflow.utils.log.secrets_masker import mask_secret  # Airflow 2
        except ImportError:
            return
    mask_secret(value)


def _optional_connection(conn_id: str) -> Any | None:
    if not conn_id:
        return None
    try:
        return _connection(conn_id)
    except Exception:  # not defined: fall back to Variables / dlt config
        log.info("Airflow connection %r not defined; using Variables or dlt config instead", conn_id)
        return None


def _runtime() -> tuple[ct.DagSettings, str | None]:
    """Settings as the task runs: environment, then Variables, then defaults; the warehouse URL masked."""
    try:
        s = ct.load_settings(_variable)
    except ConfigError as err:
        raise AirflowFailException(str(err)) from None  # a config error does not get better by retrying
    warehouse = None
    if s.destination not in ("duckdb",):
        conn = _optional_connection(s.warehouse_conn_id)
        if conn is not None:
            warehouse = ct.warehouse_url(conn)
            _mask(warehouse)
    return s, warehouse


def _api(s: ct.DagSettings) -> ct.ApiCredentials:
    api = ct.api_credentials(_optional_connection(s.api_conn_id), _variable)
    _mask(api.api_key)
    return api


def export_task(resource: str, data_interval_start: datetime | None = None,
                data_interval_end: datetime | None = None, **_: Any) -> dict[str, Any]:
    s, warehouse = _runtime()
    interval = None
    if data_interval_start is not None and data_interval_end is not None and data_interval_end > data_interval_start:
        interval = ct.task_interval(data_interval_start, data_interval_end, s)
    try:
        return ct.export_resource(resource, s, _api(s), warehouse, out=sys.stdout, interval=interval)
    except ConfigError as err:
        raise AirflowFailException(str(err)) from None


def _dbt_task(run: Any) -> dict[str, Any]:
    s, warehouse = _runtime()
    try:
        return run(s, warehouse)
    except PipelineError as err:  # a failing test or stale source does not get better by retrying
        raise AirflowFailException(str(err)) from None


def freshness_task(**_: Any) -> dict[str, Any]:
    return _dbt_task(ct.source_freshness)


def build_task(**_: Any) -> dict[str, Any]:
    return _dbt_task(ct.build_models)


def _parse_settings() -> ct.DagSettings:
    """The DAGs' shape, from the environment only (no Variable look-ups while parsing)."""
    try:
        return ct.load_settings(None)
    except ConfigError as err:  # show the reason as the DAG's import error
        raise ValueError(f"Concord DAG misconfigured: {err}") from None


def _default_args(s: ct.DagSettings, timeout_minutes: int) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": "data",
        "retries": s.retries,
        "retry_delay": timedelta(seconds=s.retry_delay_seconds),
        "retry_exponential_backoff": True,  # 5 min, 10 min, 20 min ... capped below
        "max_retry_delay": timedelta(seconds=s.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=timeout_minutes),  # a hung API read fails (and retries) the task
    }
    return args


def _date_setting(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"Concord DAG misconfigured: concord_{name} {value!r} is not a date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_dag(s: ct.DagSettings) -> DAG:
    default_args = _default_args(s, s.task_timeout_minutes)
    if s.pool:
        default_args["pool"] = s.pool
    dag = DAG(
        dag_id=DAG_ID,
        description="Concord Privacy API export of each data interval (dlt), then dbt source freshness and dbt build",
        # Real [start, end) intervals: Airflow 3 turns a plain cron string into CronTriggerTimetable, whose
        # runs have zero-width intervals (start == end), so a run could not say which day it exports.
        schedule=CronDataIntervalTimetable(s.schedule, timezone="UTC") if s.schedule else None,
        start_date=_date_setting(s.dag_start_date, "dag_start_date"),
        end_date=_date_setting(s.dag_end_date, "dag_end_date") if s.dag_end_date else None,
        catchup=s.catchup,
        max_active_runs=1,  # intervals run in order; a long history is concord_backfill's job
        dagrun_timeout=timedelta(minutes=s.dagrun_timeout_minutes),
        default_args=default_args,
        tags=["concord", "dlt"],
        doc_md=__doc__,
    )
    with dag:
        exports = [
            PythonOperator(
                task_id=f"export_{resource}",
                python_callable=export_task,
                op_kwargs={"resource": resource},
                # serial mode: a failed resource must not stop the others (the run still fails)
                trigger_rule="all_success" if s.parallel or i == 0 else "all_done",
            )
            for i, resource in enumerate(s.resources)
        ]
        if not s.parallel:
            for before, after in zip(exports, exports[1:], strict=False):
                before >> after
        _dbt_tasks(s, exports)
    return dag


def _dbt_tasks(s: ct.DagSettings, exports: list[Any]) -> None:
    if not s.models:
        return
    # all_done: judge and build what did load even when one export failed (the run still fails)
    if s.dbt_freshness != "off":
        freshness = PythonOperator(task_id="dbt_source_freshness", python_callable=freshness_task,
                                   trigger_rule="all_done")
        build = PythonOperator(task_id="dbt_build", python_callable=build_task)
        exports >> freshness >> build
    else:
        build = PythonOperator(task_id="dbt_build", python_callable=build_task, trigger_rule="all_done")
        exports >> build


def _bound(value: Any, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AirflowFailException(f"backfill {name} {value!r} is not a date: use ISO 8601, e.g. 2025-01-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def plan_backfill() -> list[dict[str, Any]]:
    """Cut [start, end) into partitions of similar row counts; where loads cannot be locked (not PostgreSQL
    or DuckDB) the first partition is loaded here, so its tables exist before partitions run side by side."""
    from concord_pipelines.airflow import partitions

    params = dict(get_current_context().get("params") or {})
    s, warehouse = _runtime()
    if not params.get("start") or not params.get("end"):
        raise AirflowFailException("trigger concord_backfill with conf {\"start\": \"2025-01-01\", \"end\": \"2026-01-01\"}")
    count = int(params.get("partitions") or s.backfill_partitions)
    parts = partitions.plan(_api(s), _bound(params["start"], "start"), _bound(params["end"], "end"), count)
    if s.destination not in ("postgres", "duckdb") and parts:
        log.info("%s loads are not locked: loading partition 0 first, to create the tables", s.destination)
        partitions.export_partition(parts[0], s, _api(s), warehouse)
        parts = parts[1:]
    return [partitions.asdict(p) for p in parts]


def partition_task(partition: dict[str, Any]) -> dict[str, Any]:
    from concord_pipelines.airflow import partitions

    s, warehouse = _runtime()
    try:
        return partitions.export_partition(partitions.Partition(**partition), s, _api(s), warehouse)
    except ConfigError as err:
        raise AirflowFailException(str(err)) from None


def finish_backfill(parts: list[dict[str, Any]]) -> dict[str, Any]:
    from concord_pipelines.airflow import partitions

    s, warehouse = _runtime()
    last = max((p["index"] for p in parts or []), default=-1)
    return {"partitions": len(parts or []), "dropped_staging": partitions.drop_staging(s, warehouse, last + 1)}


def build_backfill_dag(s: ct.DagSettings) -> DAG:
    dag = DAG(
        dag_id=BACKFILL_DAG_ID,
        description="Concord backfill of [start, end): date partitions mapped over workers, loaded in parallel",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,  # partitions' pipeline and staging names are per index, not per run
        dagrun_timeout=timedelta(minutes=s.backfill_timeout_minutes),
        default_args=_default_args(s, s.partition_timeout_minutes),
        params={"start": Param(None, type=["null", "string"], description="first day (ISO 8601, UTC)"),
                "end": Param(None, type=["null", "string"], description="end, exclusive (ISO 8601, UTC)"),
                "partitions": Param(None, type=["null", "integer"], description="default: concord_backfill_partitions")},
        tags=["concord", "dlt", "backfill"],
        doc_md=__doc__,
    )
    mapped: dict[str, Any] = {"max_active_tis_per_dagrun": s.backfill_parallelism}
    if s.backfill_pool:
        mapped["pool"] = s.backfill_pool
    with dag:
        plan = task(task_id="plan")(plan_backfill)()
        exported = task(task_id="export_partition", **mapped)(partition_task).expand(partition=plan)
        finish = task(task_id="finish", trigger_rule="all_done")(finish_backfill)(plan)
        exported >> finish
    return dag


_settings = _parse_settings()
dag = build_dag(_settings)
backfill_dag = build_backfill_dag(_settings)
