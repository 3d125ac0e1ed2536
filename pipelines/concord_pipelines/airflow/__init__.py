"""Airflow deployment of the Concord export: `concord_dag.py` (the DAG file: `concord_export` and
`concord_backfill`), `concord_tasks.py` (settings and the export tasks), `partitions.py` (the backfill's
planning and partition loads) and `locks.py` (PostgreSQL advisory locks); all but the DAG file import
without Airflow. See docs/airflow.md."""
