"""The Concord DAGs in a real Airflow: a separate venv (built once, cached), `airflow db migrate`, DagBag
without import errors, one full `dag.test()` run of one data interval against the sandbox into DuckDB,
then the DuckDB file checked against the sandbox's truth. Airflow never enters the project's venv.
The parallel jobs (LocalExecutor, PostgreSQL) are in test_airflow_local.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from concord_pipelines.concord.settings import DEFAULT_DATASET, RESOURCE_TABLES
from tests.warehouse.conftest import REPO_ROOT
from tests.warehouse.truth import MARTS, when

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

# Airflow 3: Airflow 2 is past its end of life, and dlt 1.31's helper imports the Airflow 3 task SDK
# (docs/airflow.md). Override with CONCORD_TEST_AIRFLOW_VERSION=2.11.0 to check the 2.x code path.
AIRFLOW_VERSION = os.environ.get("CONCORD_TEST_AIRFLOW_VERSION", "3.3.2")
HARNESS = Path(__file__).with_name("airflow_harness.py")
DAG_FILE = REPO_ROOT / "pipelines" / "concord_pipelines" / "airflow" / "concord_dag.py"


def _uv() -> list[str]:
    # `uv run` (CI: .ci/run) names itself in $UV without putting its folder on PATH
    if os.environ.get("UV") and Path(os.environ["UV"]).exists():
        return [os.environ["UV"]]
    found = shutil.which("uv")
    if found:
        return [found]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.fail("uv is needed to build the Airflow venv: `python3 -m pip install uv` (CI's .ci/run does)")


def _cache_root() -> Path:
    return Path(os.environ.get("CONCORD_AIRFLOW_VENV_CACHE") or Path.home() / ".cache" / "concord-airflow-venv")


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """Python of a venv with apache-airflow==AIRFLOW_VERSION and this repo (editable). Built once per
    version and Python; later sessions only re-run the (no-op, ~1 s) install to pick up dependency changes."""
    tag = f"airflow-{AIRFLOW_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    venv = _cache_root() / tag
    python = venv / "bin" / "python"
    uv = _uv()
    started = time.monotonic()
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=300)
    # Only apache-airflow (no extras): the DAG needs the standard provider, which it brings. This repo with
    # [postgres]: psycopg2 serves the PostgreSQL warehouse and, with asyncpg (Airflow 3's async engine), the
    # LocalExecutor tests' metadata database.
    install = subprocess.run([*uv, "pip", "install", "--python", str(python), f"apache-airflow=={AIRFLOW_VERSION}",
                              "asyncpg", "-e", f"{REPO_ROOT}[postgres]"], capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.fail(f"building the Airflow venv failed:\n{install.stderr[-4000:]}")
    (venv / ".complete").write_text(AIRFLOW_VERSION)
    print(f"\nAirflow {AIRFLOW_VERSION} venv ready in {time.monotonic() - started:.1f} s ({venv})")
    return python


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "CONCORD_", "SOURCES__", "DESTINATION__", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}")
    return env


def _harness(python: Path, env: dict[str, str], home: Path, *args: str, timeout: int = 600,
             dag: str = "concord_export") -> tuple[dict, str]:
    proc = subprocess.run([str(python), str(HARNESS), str(home / "dags"), dag, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + "\n" + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HARNESS ")]
    assert proc.returncode == 0 and lines, f"harness failed ({proc.returncode}):\n{output[-6000:]}"
    return json.loads(lines[-1][len("HARNESS "):]), output


@pytest.fixture(scope="module")
def airflow_home(airflow_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)  # the documented deployment: copy the DAG file
    started = time.monotonic()
    migrate = subprocess.run([str(airflow_python), "-m", "airflow", "db", "migrate"], env=_base_env(home),
                             capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    print(f"\nairflow db migrate: {time.monotonic() - started:.1f} s")
    return home


def test_dag_parses_with_defaults(airflow_python: Path, airflow_home: Path) -> None:
    """No import errors; DuckDB (default) -> exports chained one after another; retries with backoff;
    real data intervals, catchup, timeouts."""
    result, _ = _harness(airflow_python, _base_env(airflow_home), airflow_home, "--parse-only")
    assert result["import_errors"] == {}
    assert result["dag_ids"] == ["concord_backfill", "concord_export"]
    exports = [f"export_{r}" for r in RESOURCE_TABLES]
    assert sorted(result["tasks"]) == sorted([*exports, "dbt_source_freshness", "dbt_build"])
    assert result["upstream"]["dbt_source_freshness"] == sorted(exports)
    assert result["upstream"]["dbt_build"] == ["dbt_source_freshness"]
    chained = [t for t in exports if result["upstream"][t]]
    assert len(chained) == len(exports) - 1, "DuckDB exports must run one at a time"
    assert set(result["retries"].values()) == {3} and all(result["backoff"].values())
    assert result["schedule"] in ("@daily", "0 0 * * *")  # Airflow 2 reports the preset as its cron
    assert result["timetable"] == "CronDataIntervalTimetable", "a plain cron gives zero-width intervals in Airflow 3"
    assert result["max_active_runs"] == 1 and result["catchup"]
    assert set(result["execution_timeout"].values()) == {120 * 60} and result["dagrun_timeout"] == 720 * 60


def test_backfill_dag_parses(airflow_python: Path, airflow_home: Path) -> None:
    env = _base_env(airflow_home) | {"CONCORD_DESTINATION": "postgres", "CONCORD_PARTITION_TIMEOUT_MINUTES": "30"}
    result, _ = _harness(airflow_python, env, airflow_home, "--parse-only", dag="concord_backfill")
    assert result["import_errors"] == {}
    assert result["upstream"] == {"plan": [], "export_partition": ["plan"], "finish": ["export_partition", "plan"]}
    assert set(result["execution_timeout"].values()) == {30 * 60} and not result["catchup"]


def test_dag_runs_exports_in_parallel_into_postgres(airflow_python: Path, airflow_home: Path) -> None:
    env = _base_env(airflow_home) | {"AIRFLOW_VAR_CONCORD_DESTINATION": "postgres", "CONCORD_SCHEDULE": "0 3 * * *"}
    result, _ = _harness(airflow_python, env, airflow_home, "--parse-only")
    assert result["import_errors"] == {}
    assert all(not result["upstream"][f"export_{r}"] for r in RESOURCE_TABLES)
    assert result["schedule"] == "0 3 * * *"


@pytest.mark.timeout(900)
def test_full_dag_run_into_duckdb(airflow_python: Path, airflow_home: Path, sandbox) -> None:
    duckdb_path = airflow_home / "warehouse" / "concord.duckdb"
    duckdb_path.parent.mkdir()
    env = _base_env(airflow_home) | {
        # credentials through an Airflow connection (env form), settings through Variables and env
        "AIRFLOW_CONN_CONCORD_API": json.dumps({"conn_type": "http", "host": sandbox.base_url,
                                                "password": sandbox.api_key,
                                                "extra": {"organization_id": sandbox.org_id}}),
        "AIRFLOW_VAR_CONCORD_DUCKDB_PATH": str(duckdb_path),
        "AIRFLOW_VAR_CONCORD_LAG_SECONDS": "0",
        "CONCORD_PIPELINES_DIR": str(airflow_home / "dlt_pipelines"),
        "CONCORD_RETRIES": "0",  # a failure here should fail the test now, not in 5 minutes
        # the sandbox's clock is fixed in the past: its data is stale by design, so freshness only warns here
        "CONCORD_DBT_FRESHNESS": "warn",
        "CONCORD_DAG_START_DATE": "2026-11-01",
        "CONCORD_INTERVAL_LOOKBACK_SECONDS": "3600",
    }
    started = time.monotonic()
    # the run of [2026-11-19, 2026-11-20): the sandbox's clock stands at 2026-11-20 12:00
    result, output = _harness(airflow_python, env, airflow_home, "--logical-date", "2026-11-20T00:00:00+00:00",
                              timeout=900)
    print(f"\nDAG run: {result.get('run_seconds')} s (harness {time.monotonic() - started:.1f} s), "
          f"Airflow {result['airflow_version']}")
    assert result["import_errors"] == {}
    assert result["run_state"].lower().endswith("success"), f"{result}\n{output[-6000:]}"
    assert set(result["task_states"].values()) == {"success"}, result["task_states"]
    assert sandbox.api_key not in output, "the API key leaked into the task logs"

    state = sandbox.state
    start, end = datetime(2026, 11, 18, 23, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)  # with the lookback

    def updated_in(resource: str) -> int:  # the windowed resources hold exactly the run's interval
        return sum(1 for item in state.truth(resource) if start <= when(item["dateUpdated"]) < end)

    truth = {
        "projects": len(state.truth("projects")),
        "consent_events": updated_in("consent-events"),
        "consent_types": len(state.truth("consent-types")),
        "compliance_requests": updated_in("compliance-requests"),
        "compliance_request_events": updated_in("compliance-requests-events"),
        "tracker_scan_configs": len(state.truth("tracker-scan-history")),
        "tracker_scans": sum(len(c["scanHistory"]) for c in state.truth("tracker-scan-history")),
    }
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        conn.execute(f'USE "concord"."{DEFAULT_DATASET}"')
        for table, want in truth.items():
            assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == want, table
        assert truth["consent_events"] > 0
        assert conn.execute("SELECT count(*) FROM usage_daily").fetchone()[0] > 0
        built = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE "
                                            f"table_schema = '{DEFAULT_DATASET}'").fetchall()}
        assert set(MARTS) <= built, "dbt_build built the marts and the v1_* views"
        pipelines = {r[0] for r in conn.execute("SELECT DISTINCT pipeline_name FROM _dlt_pipeline_state").fetchall()}
    assert pipelines == {f"concord_{r}" for r in RESOURCE_TABLES}, "each resource keeps its own dlt state"
