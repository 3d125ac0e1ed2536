"""Airflow deployment of the Concord export: `concord_dag.py` (the DAG file) and `concord_tasks.py`
(what its tasks run, importable without Airflow). See docs/airflow.md."""
