"""Holders injected by dlt from config (`sources.cdr_metrics.holders`), here via dlt's env var provider."""

from __future__ import annotations

import json
from pathlib import Path

import dlt
import pytest

from concord_pipelines.cdr_metrics.source import cdr_metrics, run_outcomes
from concord_pipelines.cli import main
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderState

from .conftest import holder_config, query


def test_source_reads_holders_and_settings_from_dlt_config(
    holder: CdrHolderServer, pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__CDR_METRICS__HOLDERS", json.dumps([holder_config(holder, "from_env")]))
    monkeypatch.setenv("SOURCES__CDR_METRICS__X_V", "4")
    pipeline.run(cdr_metrics())
    outcomes = run_outcomes(pipeline)
    assert outcomes.holders["from_env"].version == 4
    assert query(pipeline, "SELECT DISTINCT data_holder, payload_version FROM metric_observations") == [
        ("from_env", 4)
    ]


def test_cli_falls_back_to_dlt_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with CdrHolderServer(HolderState(name="cfg")) as srv:
        monkeypatch.setenv("SOURCES__CDR_METRICS__HOLDERS", json.dumps([holder_config(srv, "cfg")]))
        code = main(
            [
                "cdr-metrics",
                "--duckdb-path",
                str(tmp_path / "o.duckdb"),
                "--pipelines-dir",
                str(tmp_path / "d"),
            ]
        )
    assert code == 0
    assert any(line.startswith("cfg ") for line in capsys.readouterr().out.splitlines())


def test_tokens_come_from_credentials_and_stay_out_of_the_trace(
    state: HolderState, pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.tokens = {"sekrit-token-777"}
    with CdrHolderServer(state) as srv:
        monkeypatch.setenv("SOURCES__CDR_METRICS__HOLDERS", json.dumps([holder_config(srv, "bank")]))
        monkeypatch.setenv(
            "SOURCES__CDR_METRICS__CREDENTIALS", json.dumps({"bank": {"token": "sekrit-token-777"}})
        )
        pipeline.run(cdr_metrics())
    outcomes = run_outcomes(pipeline)
    assert outcomes.holders["bank"].error is None and outcomes.holders["bank"].version == 5
    for path in Path(pipeline.pipelines_dir).rglob("*"):
        if path.is_file():
            assert b"sekrit-token-777" not in path.read_bytes(), path


def test_credentials_for_unknown_holder_is_a_config_error() -> None:
    from concord_pipelines.cdr_metrics.source import with_credentials
    from concord_pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="credentials given for unknown holder 'nope'"):
        with_credentials([{"name": "a"}], {"nope": {"token": "x"}})
    with pytest.raises(ConfigError, match="credentials.a may only hold private_key, token"):
        with_credentials([{"name": "a"}], {"a": {"base_url": "x"}})
    assert with_credentials([{"name": "a"}], {"a": {"token": "t"}}) == [{"name": "a", "token": "t"}]
