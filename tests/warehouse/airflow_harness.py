"""Runs inside the Airflow venv (not the project's): load the DAGs folder with DagBag, then execute one
full run of the Concord DAG with `dag.test()`. Prints one JSON line prefixed `HARNESS ` with the result.

    AIRFLOW_HOME=... python airflow_harness.py <dags_folder> <dag_id> [--parse-only] [--logical-date ISO]
"""

from __future__ import annotations

import json
import sys
import time


def main(dags_folder: str, dag_id: str, parse_only: bool = False, logical_date: str | None = None) -> int:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag  # Airflow 2
    import airflow

    started = time.monotonic()
    try:
        bag = DagBag(dag_folder=dags_folder, include_examples=False)  # Airflow 2
    except TypeError:
        bag = DagBag(dag_folder=dags_folder)  # Airflow 3: examples follow [core] load_examples
    result: dict = {
        "airflow_version": airflow.__version__,
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dag_ids": sorted(bag.dag_ids),
        "parse_seconds": round(time.monotonic() - started, 2),
    }
    dag = bag.get_dag(dag_id) if dag_id in bag.dag_ids else None
    if dag is not None:
        result["tasks"] = sorted(t.task_id for t in dag.tasks)
        result["upstream"] = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
        result["retries"] = {t.task_id: t.retries for t in dag.tasks}
        result["execution_timeout"] = {t.task_id: getattr(t.execution_timeout, "total_seconds", lambda: None)()
                                       for t in dag.tasks}
        result["dagrun_timeout"] = dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None
        result["backoff"] = {t.task_id: bool(t.retry_exponential_backoff) for t in dag.tasks}
        result["max_active_runs"] = dag.max_active_runs
        result["catchup"] = bool(getattr(dag, "catchup", False))
        timetable = getattr(dag, "timetable", None)
        result["schedule"] = str(getattr(timetable, "_expression", None) or getattr(dag, "schedule", None) or timetable)
        result["timetable"] = type(timetable).__name__
        if parse_only:
            print("HARNESS " + json.dumps(result), flush=True)
            return 0
        started = time.monotonic()
        if logical_date:
            from datetime import datetime

            run = dag.test(logical_date=datetime.fromisoformat(logical_date))
        else:
            run = dag.test()
        result["run_seconds"] = round(time.monotonic() - started, 2)
        result["run_state"] = str(getattr(run, "state", None))
        try:
            tis = run.get_task_instances()
            result["task_states"] = {ti.task_id: str(ti.state) for ti in tis}
        except Exception as err:  # pragma: no cover - diagnostics only
            result["task_states_error"] = repr(err)
    print("HARNESS " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    rest = sys.argv[3:]
    when = rest[rest.index("--logical-date") + 1] if "--logical-date" in rest else None
    sys.exit(main(sys.argv[1], sys.argv[2], "--parse-only" in rest, when))
