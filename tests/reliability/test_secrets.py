"""The API key and the PII salt never leave the process: not in output, logs, errors, traces, files or data."""

from __future__ import annotations

import traceback
from pathlib import Path

import dlt
import duckdb
import pytest

from concord_pipelines.concord.runner import translate_failure
from concord_pipelines.errors import PipelineError
from tests.concord.conftest import Export
from tests.reliability.conftest import cli_args, cli_env, run_cli

API_KEY = "ck_live_ZEBRA7QUOKKA19xylophone"
WRONG_KEY = "ck_live_WRONG4PANGOLIN77marimba"
SALT = "salt-OCELOT3VESPER58tamarind"
URL_PASSWORD = "pw-NARWHAL6quince41"
SECRETS = (API_KEY, WRONG_KEY, SALT, URL_PASSWORD)


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
    if (export.tmp / "pipelines" / export.pipeline_name).exists():
        assert not _leaks(_trace_text(export)), "secret in the dlt trace"
    assert not _files_leaking(export.tmp / "pipelines", export.tmp / "cwd")
    if Path(export.duckdb_path).exists():
        assert not _data_leaking(export.duckdb_path)


@pytest.fixture
def export(make_export, workdir) -> Export:
    return make_export(events=400, api_key=API_KEY)


def _cli(export: Export, workdir: Path, key: str, *extra: str, base_url: str | None = None, dbt: bool = False) -> str:
    env = cli_env(export, SOURCES__CONCORD__API_KEY=key, SOURCES__CONCORD__PII_SALT=SALT,
                  SOURCES__CONCORD__BACKOFF_BASE="0.01", RUNTIME__LOG_LEVEL="DEBUG",
                  SOURCES__CONCORD__DBT=str(dbt).lower())
    args = cli_args(export, "--pii", "hash", *extra)
    if base_url is not None:
        args[args.index("--base-url") + 1] = base_url
    result = run_cli(["--debug", *args], env, workdir)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def _error_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("error: "))


def test_secrets_stay_secret_through_the_cli_after_failing_and_good_runs(export, workdir):
    export.state.faults.configure("500=next:1")  # a retry in the debug logs
    # one good run builds the models too: dbt's child process inherits the key and salt in its environment
    good = _cli(export, workdir, API_KEY, dbt=True)
    assert good.startswith("exit 0"), good
    assert "retrying" in good, "debug logs were not captured: the test would prove nothing"
    assert "dbt build: " in good, "the models were not built: dbt's output was not checked"
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


def test_key_pasted_with_a_trailing_newline_works_and_never_leaks(export, workdir):
    """A copy-paste newline used to be an `Illegal header value b'<key>'` error, printed and kept in trace.pickle."""
    out = _cli(export, workdir, API_KEY + "\n", "--resources", "projects,consent_events")
    assert out.startswith("exit 0"), out
    assert export.count("consent_events") == 400
    _assert_nothing_leaked(export, out)


class _Capture:
    """The other origin a redirect points to: records every request it receives."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        from starlette.responses import JSONResponse

        self.headers.append({k.decode(): v.decode() for k, v in scope.get("headers", [])})
        await JSONResponse({"items": [], "total": 0})(scope, receive, send)


def test_redirect_to_another_origin_never_carries_the_key(export, workdir):
    """httpx strips `Authorization` on a cross-origin redirect but not `x-api-key`: the client refuses to follow."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    from concord_pipelines.serve import BackgroundServer

    capture = _Capture()
    with BackgroundServer(capture) as other:
        async def moved(request: object) -> RedirectResponse:
            return RedirectResponse(other.url + request.url.path, status_code=307)  # type: ignore[attr-defined]

        with BackgroundServer(Starlette(routes=[Route("/{path:path}", moved)])) as front:
            out = _cli(export, workdir, API_KEY, "--resources", "projects", base_url=front.url + "/privacy-v1")
    assert out.startswith("exit 2"), out
    line = _error_line(out)
    assert f"redirected to {other.url}" in line and "--base-url" in line, line
    assert not capture.headers, f"the other origin received {len(capture.headers)} request(s)"
    _assert_nothing_leaked(export, out)


def test_password_in_the_base_url_is_refused_and_never_echoed(export, workdir):
    base = export.sandbox.base_url.replace("://", f"://loader:{URL_PASSWORD}@")
    out = _cli(export, workdir, API_KEY, base_url=base)
    assert out.startswith("exit 2"), out
    assert "--base-url" in _error_line(out)
    assert not (export.tmp / "pipelines" / export.pipeline_name).exists(), "refused only after creating state"
    _assert_nothing_leaked(export, out)
