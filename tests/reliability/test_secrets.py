"""The API key and the PII salt never leave the process: not in output, logs, errors, traces, files or data."""

from __future__ import annotations

import traceback
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.concord.runner import translate_failure
from pipelines.errors import PipelineError
from tests.concord.conftest import Export
from tests.reliability.conftest import cli_args, cli_env, run_cli

API_KEY = "ck_live_ZEBRA7QUOKKA19xylophone"
WRONG_KEY = "ck_live_WRONG4PANGOLIN77marimba"
SALT = "salt-OCELOT3VESPER58tamarind"
SECRETS = (API_KEY, WRONG_KEY, SALT)


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def _files_leaking(*folders: Path) -> list[str]:
    return [f"{path}: {_leaks(path.read_bytes())}" for folder in folders for path in folder.rglob("*")
            if path.is_file() and _leaks(path.read_bytes())]


def _data_leaking(duckdb_path: str) -> list[str]:
    """Every text-like column of every table, data and `_dlt_*` alike."""
    found = []
    with duckdb.connect(duckdb_path, read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON', 'BLOB') OR data_type LIKE 'STRUCT%' OR data_type LIKE '%[]'"
        ).fetchall()
        for schema, table, column in columns:
            for secret in SECRETS:
                hits = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?', [f"%{secret}%"]
                ).fetchone()[0]
                if hits:
                    found.append(f"{schema}.{table}.{column}")
    return found


def _trace_text(export: Export) -> str:
    pipeline = dlt.attach(export.pipeline_name, pipelines_dir=str(export.tmp / "pipelines"))
    trace = pipeline.last_trace
    return "" if trace is None else repr(trace.asdict()) + str(trace)


def _assert_nothing_leaked(export: Export, *outputs: str) -> None:
    for output in outputs:
        assert not _leaks(output), f"secret in output: {output[:2000]}"
    assert not _leaks(_trace_text(export)), "secret in the dlt trace"
    assert not _files_leaking(export.tmp / "pipelines", export.tmp / "cwd")
    assert not _data_leaking(export.duckdb_path)


@pytest.fixture
def export(make_export, workdir) -> Export:
    return make_export(events=400, api_key=API_KEY)


def _cli(export: Export, workdir: Path, key: str, *extra: str) -> str:
    env = cli_env(export, SOURCES__CONCORD__API_KEY=key, SOURCES__CONCORD__PII_SALT=SALT,
                  SOURCES__CONCORD__BACKOFF_BASE="0.01", RUNTIME__LOG_LEVEL="DEBUG")
    result = run_cli(["--debug", *cli_args(export, "--pii", "hash", *extra)], env, workdir)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_secrets_stay_secret_through_the_cli_after_failing_and_good_runs(export, workdir):
    export.state.faults.configure("500=next:1")  # a retry in the debug logs
    good = _cli(export, workdir, API_KEY)
    assert good.startswith("exit 0"), good
    assert "retrying" in good, "debug logs were not captured: the test would prove nothing"
    wrong = _cli(export, workdir, WRONG_KEY)
    assert wrong.startswith("exit 2") and "Traceback" in wrong, wrong
    export.state.faults.configure("503=always")
    down = _cli(export, workdir, API_KEY)
    assert down.startswith("exit 3"), down
    export.state.faults.clear()
    again = _cli(export, workdir, API_KEY, "--full-refresh")
    assert again.startswith("exit 0"), again
    _assert_nothing_leaked(export, good, wrong, down, again)


def test_secrets_stay_out_of_exceptions_and_the_in_process_trace(export):
    export.run(pii="hash", pii_salt=SALT)
    _assert_nothing_leaked(export)
    export.state.faults.configure("500=always")
    with pytest.raises(PipelineError) as raised:
        export.run(pii="hash", pii_salt=SALT)
    chain = "".join(traceback.format_exception(raised.value))
    assert not _leaks(chain), "secret in the exception chain"
    assert not _leaks(str(translate_failure(raised.value)))
    _assert_nothing_leaked(export)
