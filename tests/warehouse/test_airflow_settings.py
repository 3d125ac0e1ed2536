"""The DAG's configuration logic (pipelines/concord_pipelines/airflow/concord_tasks.py), without Airflow installed."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from concord_pipelines.airflow import concord_tasks as ct
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
