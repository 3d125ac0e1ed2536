"""Concord Privacy API -> warehouse, on a schedule (Airflow 3.x; 2.10+ works too).

One task per resource (`export_<resource>`), each with its own dlt pipeline `concord_<resource>`
(own incremental state and lock), then `dbt_source_freshness` and `dbt_build` (the bundled dbt project:
models and their tests). Into DuckDB the
exports run one after another (one writer per file); into PostgreSQL and other warehouses they run in
parallel. Deploy: install this project into Airflow's environment and copy this file into the DAGs
folder; configure with Variables `concord_*` / env `CONCORD_*` and the connections `concord_api` and
`concord_warehouse`. Full guide: docs/airflow.md.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Connection, Variable

    def _connection(conn_id: str) -> Any:
        return Connection.get(conn_id)

    def _variable(name: str) -> str | None:
        return Variable.get(name, default=None)

    AIRFLOW_3 = True
except ImportError:  # Airflow 2.10 / 2.11
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.hooks.base import BaseHook
    from airflow.models import Variable  # type: ignore[no-redef]
    from airflow.operators.python import PythonOperator  # type: ignore[no-redef]

    def _connection(conn_id: str) -> Any:
        return BaseHook.get_connection(conn_id)

    def _variable(name: str) -> str | None:
        return Variable.get(name, default_var=None)

    AIRFLOW_3 = False

from airflow.exceptions import AirflowFailException

from concord_pipelines.airflow import concord_tasks as ct
from concord_pipelines.errors import ConfigError, PipelineError

log = logging.getLogger("concord.dag")
DAG_ID = "concord_export"


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


def export_task(resource: str, **_: Any) -> dict[str, Any]:
    s, warehouse = _runtime()
    api = ct.api_credentials(_optional_connection(s.api_conn_id), _variable)
    _mask(api.api_key)
    try:
        return ct.export_resource(resource, s, api, warehouse, out=sys.stdout)
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


def build_dag() -> DAG:
    try:
        s = ct.load_settings(_variable)
    except ConfigError as err:  # show the reason as the DAG's import error
        raise ValueError(f"Concord DAG misconfigured: {err}") from None
    default_args: dict[str, Any] = {
        "owner": "data",
        "retries": s.retries,
        "retry_delay": timedelta(seconds=s.retry_delay_seconds),
        "retry_exponential_backoff": True,  # 5 min, 10 min, 20 min ... capped below
        "max_retry_delay": timedelta(seconds=s.max_retry_delay_seconds),
    }
    if s.pool:
        default_args["pool"] = s.pool
    dag = DAG(
        dag_id=DAG_ID,
        description="Concord Privacy API export (dlt), then dbt source freshness and dbt build",
        schedule=s.schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,  # each run reads from its own incremental cursors, not the data interval
        max_active_runs=1,
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
        if s.models:
            # all_done: judge and build what did load even when one export failed (the run still fails)
            if s.dbt_freshness != "off":
                freshness = PythonOperator(task_id="dbt_source_freshness", python_callable=freshness_task,
                                           trigger_rule="all_done")
                build = PythonOperator(task_id="dbt_build", python_callable=build_task)
                exports >> freshness >> build
            else:
                build = PythonOperator(task_id="dbt_build", python_callable=build_task, trigger_rule="all_done")
                exports >> build
    return dag


dag = build_dag()
