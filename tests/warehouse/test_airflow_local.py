"""The three Airflow jobs in a real Airflow 3 with a parallel executor: scheduler, dag-processor and
api-server as subprocesses, LocalExecutor (parallelism 4), the metadata database on the test PostgreSQL,
loading into that PostgreSQL. Each test compares the warehouse row for row with the sandbox's truth:

- catchup: the daily DAG, unpaused 3 days after its start date, runs the 3 missed intervals;
- repair: a day's rows deleted from the warehouse come back when that day's run is cleared;
- backfill: `concord_backfill` over 30 days, partitions mapped over workers and running at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from concord_pipelines.concord import settings
from concord_pipelines.sandbox import SandboxConfig, SandboxServer
from concord_pipelines.serve import free_port
from tests.concord.conftest import _key, _normal, as_utc, expected_rows
from tests.warehouse.conftest import PostgresServer
from tests.warehouse.test_airflow import DAG_FILE, _base_env, airflow_python  # noqa: F401 - a fixture

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.postgres]

WINDOWED = ("consent_events", "compliance_requests", "compliance_request_events")
SCHEDULED = ("consent_events",)  # the daily DAG's resources here: one task per run keeps the 2-core CI quick
# The sandbox's clock stands at midnight, so whole days cover all of its rows.
SANDBOX_NOW = datetime(2026, 11, 20, tzinfo=UTC)
CATCHUP_START = SANDBOX_NOW - timedelta(days=3)
LOOKBACK = timedelta(hours=1)
BACKFILL_START = SANDBOX_NOW - timedelta(days=30)
PARALLEL = 3  # the backfill pool's slots


@dataclass
class Airflow:
    home: Path
    env: dict[str, str]
    python: Path
    db_url: str
    sandbox: SandboxServer
    pg: PostgresServer

    def cli(self, *args: str, timeout: int = 120) -> str:
        proc = subprocess.run([str(self.python), "-m", "airflow", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return sql_rows(self.db_url, sql, *params)

    def logs(self) -> str:
        tails = []
        for log in sorted(self.home.glob("*.log")):
            tails.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        for log in sorted((self.home / "logs").rglob("*.log"))[-6:]:
            tails.append(f"--- {log}\n{log.read_text(errors='replace')[-2500:]}")
        return "\n".join(tails)

    def wait_runs(self, dag_id: str, count: int, timeout: float, since: datetime | None = None) -> list[dict[str, Any]]:
        """The DAG's runs once `count` of them (ended after `since`) are finished; fails on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.query("SELECT run_id, state, data_interval_start, data_interval_end, end_date FROM dag_run "
                              "WHERE dag_id = %s ORDER BY data_interval_start", dag_id)
            done = [r for r in runs if r["state"] in ("success", "failed") and (since is None or (r["end_date"] and r["end_date"] > since))]
            if len(done) >= count and all(r["state"] in ("success", "failed") for r in runs):
                return runs
            time.sleep(2)
        pytest.fail(f"{dag_id}: {count} finished runs not seen in {timeout:.0f} s: {runs}\n{self.logs()}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:  # each was started in its own session: end it and the workers it forked
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_for(url: str, proc: subprocess.Popen, af: Airflow, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the api-server exited:\n{af.logs()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(1)
    pytest.fail(f"the api-server did not answer {url} in {timeout:.0f} s:\n{af.logs()}")


@pytest.fixture(scope="module")
def local_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(seed=23, events=3000, days=30, now=SANDBOX_NOW.isoformat())) as sb:
        yield sb


def _airflow_env(home: Path, pg: PostgresServer, sb: SandboxServer, api_port: int) -> dict[str, str]:
    db = pg.url.replace("postgresql://", "postgresql+psycopg2://")
    return _base_env(home) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        # the DAGs' shape, from the environment (parse time)
        "CONCORD_DESTINATION": "postgres",
        "CONCORD_RESOURCES": ",".join(SCHEDULED),  # concord_backfill always exports all of WINDOWED
        "CONCORD_MODELS": "false",
        "CONCORD_DAG_START_DATE": CATCHUP_START.isoformat(),
        # Airflow's end_date: no interval starts after it (so the last one ends at the sandbox's clock)
        "CONCORD_DAG_END_DATE": (SANDBOX_NOW - timedelta(days=1)).isoformat(),
        "CONCORD_RETRIES": "0",  # a failure here should fail the test now
        "CONCORD_BACKFILL_POOL": "concord_backfill",
        "CONCORD_BACKFILL_PARALLELISM": str(PARALLEL),
        "CONCORD_PARTITION_TIMEOUT_MINUTES": "10",
        "CONCORD_TASK_TIMEOUT_MINUTES": "10",
        # read when tasks run
        "CONCORD_PIPELINES_DIR": str(home / "dlt_pipelines"),
        "CONCORD_LAG_SECONDS": "0",
        "CONCORD_INTERVAL_LOOKBACK_SECONDS": str(int(LOOKBACK.total_seconds())),
        "AIRFLOW_CONN_CONCORD_API": json.dumps({"conn_type": "http", "host": sb.base_url, "password": sb.api_key,
                                                "extra": {"organization_id": sb.org_id}}),
        "AIRFLOW_CONN_CONCORD_WAREHOUSE": json.dumps({"conn_type": "postgres", "host": pg.host, "port": pg.port,
                                                      "login": pg.user, "password": pg.password,
                                                      "schema": pg.database}),
    }


@pytest.fixture(scope="module")
def airflow(airflow_python: Path, postgres_server: PostgresServer, local_sandbox: SandboxServer,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    home = tmp_path_factory.mktemp("airflow_local")
    (home / "dags").mkdir()
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    api_port = free_port("127.0.0.1")
    env = _airflow_env(home, postgres_server, local_sandbox, api_port)
    af = Airflow(home, env, airflow_python, postgres_server.url, local_sandbox, postgres_server)
    started = time.monotonic()
    af.cli("db", "migrate", timeout=600)
    af.cli("pools", "set", "concord_backfill", str(PARALLEL), "Concord backfill partitions")
    print(f"\nairflow db migrate (PostgreSQL) + pool: {time.monotonic() - started:.1f} s")
    airflow_bin = [str(airflow_python), "-m", "airflow"]
    procs = [_start([*airflow_bin, "api-server", "--port", str(api_port), "--workers", "1", "--host", "127.0.0.1"],
                    env, home / "api-server.log")]
    try:
        # task runners report to the execution API: a task started before it answers fails
        _wait_for(f"http://127.0.0.1:{api_port}/api/v2/version", procs[0], af)
        procs += [_start([*airflow_bin, "dag-processor"], env, home / "dag-processor.log"),
                  _start([*airflow_bin, "scheduler"], env, home / "scheduler.log")]
        yield af
    finally:
        _stop(procs)


def sql_rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(sql, params or None)
        return [dict(r) for r in cur.fetchall()] if cur.description else []


def warehouse_rows(pg: PostgresServer, dataset: str, table: str) -> list[dict[str, Any]]:
    return sql_rows(pg.url, f'SELECT * FROM "{dataset}"."{table}"')


def assert_rows_equal(af: Airflow, dataset: str, start: datetime, end: datetime,
                      tables: tuple[str, ...] = WINDOWED) -> dict[str, int]:
    """Each table holds exactly the truth's rows updated in [start, end), column for column."""
    counts = {}
    for table in tables:
        spec = settings.ALL_TABLE_SPECS[table]
        expected = {k: row for k, row in expected_rows(SimpleNamespace(state=af.sandbox.state), table).items()
                    if start <= as_utc(row["date_updated"]) < end}
        rows = warehouse_rows(af.pg, dataset, table)
        actual = {_key(spec, row): row for row in rows}
        assert len(actual) == len(rows), f"{table}: duplicate keys in the warehouse"
        missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
        assert not missing and not extra, f"{table}: {len(missing)} missing, {len(extra)} unexpected rows"
        for key, want in expected.items():
            for column, value in want.items():
                kind = spec.columns.get(column)
                assert _normal(kind, actual[key][column]) == _normal(kind, value), f"{table} {key} {column}"
        counts[table] = len(rows)
    return counts


def test_catchup_runs_the_missed_days(airflow: Airflow) -> None:
    """Unpaused 3 days after its start date, the DAG runs the 3 missed daily intervals, each exactly its day."""
    started = time.monotonic()
    runs = airflow.wait_runs("concord_export", 3, timeout=300)
    print(f"\ncatchup of 3 intervals: {time.monotonic() - started:.1f} s after the scheduler started")
    for task in airflow.query("SELECT task_id, run_id, start_date, end_date FROM task_instance "
                              "WHERE dag_id = 'concord_export' ORDER BY start_date"):
        print(f"  {task['run_id']} {task['task_id']}: {task['start_date']} .. {task['end_date']}")
    assert [r["state"] for r in runs] == ["success"] * 3, runs
    assert [r["data_interval_start"] for r in runs] == [CATCHUP_START + timedelta(days=i) for i in range(3)]
    assert all(r["data_interval_end"] - r["data_interval_start"] == timedelta(days=1) for r in runs)
    counts = assert_rows_equal(airflow, settings.DEFAULT_DATASET, CATCHUP_START - LOOKBACK, SANDBOX_NOW, SCHEDULED)
    assert counts["consent_events"] > 0
    pipelines = {r["pipeline_name"] for r in airflow.query(f'SELECT DISTINCT pipeline_name FROM {settings.DEFAULT_DATASET}."_dlt_pipeline_state"')}
    assert pipelines == {f"concord_{t}" for t in SCHEDULED}, "one pipeline per resource, named as the CLI would"


def test_clearing_a_past_run_repairs_its_day(airflow: Airflow) -> None:
    day = CATCHUP_START + timedelta(days=1)
    with closing(psycopg2.connect(airflow.pg.url)) as conn, conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {settings.DEFAULT_DATASET}.consent_events WHERE date_updated >= %s AND date_updated < %s",
                    (day, day + timedelta(days=1)))
        assert cur.rowcount > 0
    cleared = datetime.now(tz=UTC)
    started = time.monotonic()
    airflow.cli("tasks", "clear", "concord_export", "-s", day.isoformat(), "-e", day.isoformat(), "-y")
    runs = airflow.wait_runs("concord_export", 1, timeout=240, since=cleared)
    print(f"\nrepair of one cleared interval: {time.monotonic() - started:.1f} s")
    assert [r["state"] for r in runs] == ["success"] * 3, runs
    tries = airflow.query("SELECT run_id, max(try_number) AS tries FROM task_instance WHERE dag_id = 'concord_export' "
                          "GROUP BY run_id ORDER BY run_id")
    assert sorted(t["tries"] for t in tries) == [1, 1, 2], "only the cleared run ran again"
    assert_rows_equal(airflow, settings.DEFAULT_DATASET, CATCHUP_START - LOOKBACK, SANDBOX_NOW, SCHEDULED)


def test_partitioned_backfill_runs_partitions_at_once(airflow: Airflow) -> None:
    # its own dataset (a Variable, read when the tasks run): the backfill alone must account for every row
    airflow.cli("variables", "set", "concord_dataset", "concord_backfill")
    conf = {"start": BACKFILL_START.date().isoformat(), "end": SANDBOX_NOW.date().isoformat(), "partitions": 6}
    started = time.monotonic()
    airflow.cli("dags", "trigger", "concord_backfill", "--conf", json.dumps(conf))
    runs = airflow.wait_runs("concord_backfill", 1, timeout=420)
    print(f"\nbackfill of 30 days in 6 partitions: {time.monotonic() - started:.1f} s")
    tis = airflow.query("SELECT task_id, map_index, state, start_date, end_date FROM task_instance "
                        "WHERE dag_id = 'concord_backfill' ORDER BY map_index")
    assert runs[0]["state"] == "success", f"{tis}\n{airflow.logs()}"
    parts = [t for t in tis if t["task_id"] == "export_partition"]
    assert len(parts) == 6 and {t["state"] for t in parts} == {"success"}
    assert _max_overlap(parts) >= 2, f"partitions did not run at once: {parts}"
    assert _max_overlap(parts) <= PARALLEL, "the pool bounds the partitions running at once"
    assert_rows_equal(airflow, "concord_backfill", BACKFILL_START, SANDBOX_NOW)
    staging = airflow.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'concord_backfill_staging%'")
    assert staging == [], "the partitions' staging datasets are dropped at the end"


def _max_overlap(tis: list[dict[str, Any]]) -> int:
    events = sorted([(t["start_date"], 1) for t in tis] + [(t["end_date"], -1) for t in tis], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak
