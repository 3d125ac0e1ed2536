"""The DAG's configuration logic (pipelines/concord_pipelines/airflow/concord_tasks.py), without Airflow installed."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from concord_pipelines.airflow import concord_tasks as ct
from concord_pipelines.airflow import locks, partitions
from concord_pipelines.concord.settings import RESOURCE_TABLES
from concord_pipelines.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for key in list(os.environ):
        if key.startswith(("CONCORD_", "DESTINATION__")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))


def variables(**values: str):
    return lambda name: values.get(name)


def test_defaults(tmp_path) -> None:
    s = ct.load_settings(variables())
    assert s.schedule == "@daily" and s.destination == "duckdb" and not s.parallel
    assert s.duckdb_path == str(tmp_path / "airflow" / "concord.duckdb")
    assert s.resources == list(RESOURCE_TABLES) and s.retries == 3 and s.models
    assert s.pipeline_name("consent_events") == "concord_consent_events"
    assert s.pipelines_dir == str(tmp_path / "airflow" / "dlt_pipelines")


def test_env_beats_variable_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    get = variables(concord_schedule="0 4 * * *", concord_resources="consent_events, metrics")
    assert ct.load_settings(get).schedule == "0 4 * * *"
    assert ct.load_settings(get).resources == ["consent_events", "usage_metrics"]
    monkeypatch.setenv("CONCORD_SCHEDULE", "@hourly")
    assert ct.load_settings(get).schedule == "@hourly"
    monkeypatch.setenv("CONCORD_SCHEDULE", "none")
    assert ct.load_settings(get).schedule is None


def test_a_failing_variable_lookup_falls_back_to_the_default() -> None:
    def broken(name: str) -> str:
        raise RuntimeError("no metadata database while parsing")

    assert ct.load_settings(broken).schedule == "@daily"


def test_parallel_only_where_the_destination_allows_several_writers() -> None:
    assert ct.load_settings(variables(concord_destination="postgres")).parallel
    assert ct.load_settings(variables(concord_destination="postgres", concord_parallelism="serial")).parallel is False
    assert ct.load_settings(variables(concord_parallelism="parallel")).parallel  # duckdb: the user's pool serialises
    assert ct.load_settings(variables(concord_destination="postgres")).duckdb_path is None


@pytest.mark.parametrize("bad", [dict(concord_duckdb_path="relative/concord.duckdb"),
                                 dict(concord_parallelism="sometimes"), dict(concord_retries="three"),
                                 dict(concord_resources="consent_events,nope")])
def test_bad_settings_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ct.load_settings(variables(**bad))


def test_api_credentials_from_a_connection_then_variables() -> None:
    conn = SimpleNamespace(conn_type="http", host="https://api.example.test/privacy-v1/", port=None, schema=None,
                           login=None, password="k3y", extra_dejson={"organization_id": "org-1"})
    creds = ct.api_credentials(conn, variables())
    assert (creds.api_key, creds.organization_id, creds.base_url) == ("k3y", "org-1", "https://api.example.test/privacy-v1")
    bare = SimpleNamespace(conn_type="http", host="api.example.test", port=8443, schema="privacy-v1", login="org-2",
                           password=None, extra_dejson={})
    creds = ct.api_credentials(bare, variables(concord_api_key="from-variable"))
    assert (creds.api_key, creds.organization_id, creds.base_url) == (
        "from-variable", "org-2", "https://api.example.test:8443/privacy-v1")
    none = ct.api_credentials(None, variables())
    assert none.api_key is None and none.base_url is None  # run_export then reads SOURCES__CONCORD__*


def test_warehouse_url_quotes_the_password() -> None:
    conn = SimpleNamespace(conn_type="postgres", host="db.internal", port=5432, schema="analytics", login="loader",
                           password="p@ss/w:rd", get_uri=lambda: "unused")
    assert ct.warehouse_url(conn) == "postgresql://loader:p%40ss%2Fw%3Ard@db.internal:5432/analytics"


def test_destination_credentials_are_set_for_the_task_only() -> None:
    with ct.destination_credentials("postgres", "postgresql://u:p@h/db"):
        assert os.environ["DESTINATION__POSTGRES__CREDENTIALS"] == "postgresql://u:p@h/db"
    assert "DESTINATION__POSTGRES__CREDENTIALS" not in os.environ


def test_dbt_freshness_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ct.load_settings(variables()).dbt_freshness == "error"
    assert ct.load_settings(variables(concord_dbt_freshness="WARN")).dbt_freshness == "warn"
    monkeypatch.setenv("CONCORD_DBT_FRESHNESS", "sometimes")
    with pytest.raises(ConfigError, match="concord_dbt_freshness must be error, warn or off"):
        ct.load_settings(variables())


def test_parse_time_reads_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG file is parsed every 30 s: its shape comes from env vars, never from Variable look-ups."""
    monkeypatch.setenv("AIRFLOW_VAR_CONCORD_DESTINATION", "postgres")
    s = ct.load_settings(None)
    assert s.destination == "postgres" and s.parallel
    assert s.catchup and s.dag_start_date == "2026-12-01" and s.dag_end_date is None
    assert (s.task_timeout_minutes, s.dagrun_timeout_minutes, s.backfill_parallelism) == (120, 720, 4)
    monkeypatch.setenv("CONCORD_CATCHUP", "false")
    assert not ct.load_settings(None).catchup


@pytest.mark.parametrize("name", ["task_timeout_minutes", "backfill_partitions", "backfill_parallelism"])
def test_timeouts_and_partitions_must_be_positive(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"CONCORD_{name.upper()}", "0")
    with pytest.raises(ConfigError, match=f"concord_{name} must be a whole number of at least 1"):
        ct.load_settings(None)


def test_pipeline_names_follow_the_cli_default() -> None:
    s = ct.load_settings(variables())
    assert s.pipeline_prefix == "concord"  # concord_pipelines.concord.settings.DEFAULT_PIPELINE_NAME
    assert s.partition_pipeline_name(7) == "concord_backfill_p007"


def test_a_task_exports_its_interval_with_the_lookback() -> None:
    s = ct.load_settings(variables(concord_interval_lookback_seconds="3600"))
    start, end = datetime(2026, 10, 14, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC)
    assert ct.task_interval(start, end, s) == (datetime(2026, 10, 13, 23, tzinfo=UTC), end)
    future = datetime.now(tz=UTC) + timedelta(days=1)
    assert ct.task_interval(start, future, s)[1] <= datetime.now(tz=UTC), "an interval never ends in the future"
    assert ct.WINDOWED == ("consent_events", "compliance_requests", "compliance_request_events")


def test_partitions_carry_similar_row_counts() -> None:
    days = partitions.day_bounds(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC))
    assert len(days) == 30
    counts = [10] * 10 + [100] * 10 + [10] * 10  # a busy third of the month
    parts = partitions.cut(days, counts, 6)
    assert [p.rows for p in parts] == [200] * 6
    assert parts[0].start == days[0][0].isoformat() and parts[-1].end == days[-1][1].isoformat()
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False)), "contiguous, no gap or overlap"


def test_without_totals_partitions_have_similar_day_counts() -> None:
    days = partitions.day_bounds(datetime(2026, 10, 1, 12, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC))
    assert days[0] == (datetime(2026, 10, 1, 12, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))  # partial first day
    parts = partitions.cut(days, None, 4)
    lengths = [sum(1 for d in days if p.start <= d[0].isoformat() < p.end) for p in parts]
    assert len(parts) == 4 and max(lengths) - min(lengths) <= 1 and sum(lengths) == 30
    assert len(partitions.cut(days[:2], [5, 5], 8)) == 2, "never more partitions than days"


def test_lock_keys_are_stable_64_bit_integers() -> None:
    key = locks.lock_key("concord:concord:concord_consent_events")
    assert key == locks.lock_key("concord:concord:concord_consent_events") and -(2**63) <= key < 2**63
    assert key != locks.lock_key("concord:concord:concord_projects")
    assert locks.postgres_url("duckdb", "postgresql://x") is None
    assert locks.postgres_url("postgres", "postgresql://u@h/db") == "postgresql://u@h/db"
