"""Bad input through the real CLI: one `error:` line naming the fix, non-zero exit, nothing touched.

Each case runs `python -m concord_pipelines.cli run ...` in an empty cwd (no .dlt/ picked up) against the
same pipeline and DuckDB file as one good run, which must be left exactly as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from concord_pipelines.sandbox import SandboxConfig, SandboxServer
from concord_pipelines.serve import BackgroundServer, free_port
from tests.concord.conftest import SANDBOX_NOW, Export
from tests.reliability.conftest import Snapshot, cli_args, cli_env, run_cli

UNKNOWN_UUID = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
NOTES = "meeting notes, not a database\n" * 100


async def _html(request: Any) -> HTMLResponse:
    return HTMLResponse("<!DOCTYPE html><html><body><h1>Welcome to our website</h1></body></html>")


@pytest.fixture(scope="module")
def html_site() -> Iterator[str]:
    """A web site where the API should be: 200 and HTML on every path."""
    app = Starlette(routes=[Route("/{path:path}", _html)])
    with BackgroundServer(app) as server:
        yield server.url + "/privacy-v1"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Export]:
    """One good run (consent events only, to keep it quick) whose results every bad run must leave alone."""
    server = SandboxServer(SandboxConfig(seed=3, events=300, days=5, now=SANDBOX_NOW)).start()
    export = Export(server, tmp_path_factory.mktemp("bad_input"))
    export.run(resources=["projects", "consent_events"])
    yield export
    server.stop()


# settings the API judges (a key it rejects, a web page where it should be) may end as an API failure (3)
API_JUDGED = {"wrong api key", "unknown organization", "unknown project", "html instead of the api", "unreachable base url"}


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


URL_PASSWORD = "hunter2PELICAN88"
FRESH = "fresh"  # paths under tmp/fresh belong to no run: a failed run must not create them


def _case(name: str, export: Export, html_site: str, tmp: Path) -> tuple[list[str], dict[str, str], str]:
    """(args, env, text the error line must contain) for one kind of bad input."""
    args = cli_args(export, "--resources", "projects,consent_events")
    env = cli_env(export, SOURCES__CONCORD__BACKOFF_BASE="0.01")
    closed_port = free_port()
    base = export.sandbox.base_url
    # a new DuckDB file and pipelines dir: a run that fails on configuration must create neither
    fresh = _replace(_replace(args, "--duckdb-path", str(tmp / FRESH / "new.duckdb")), "--pipelines-dir", str(tmp / FRESH / "pipelines"))
    (tmp / "lock-folder" / ".other.lock").mkdir(parents=True, exist_ok=True)
    if name == "duckdb path is a fifo" and not (tmp / "pipe").exists():
        os.mkfifo(tmp / "pipe")
    cases: dict[str, tuple[list[str], dict[str, str], str]] = {
        "missing api key": (args, {k: v for k, v in env.items() if k != "SOURCES__CONCORD__API_KEY"}, "SOURCES__CONCORD__API_KEY"),
        "wrong api key": (args, {**env, "SOURCES__CONCORD__API_KEY": "wrong-key-123"}, "SOURCES__CONCORD__API_KEY"),
        "malformed organization id": (_replace(args, "--org", "acme-corp"), env, "--org"),
        "unknown organization": (_replace(args, "--org", UNKNOWN_UUID), env, "--org"),
        "unknown project": ([*args, "--project", UNKNOWN_UUID], env, "--project"),
        "unparsable start date": ([*args, "--start-date", "last tuesday"], env, "--start-date"),
        "start date in the future": ([*args, "--start-date", "2999-01-01"], env, "--start-date"),
        "negative lookback": ([*args, "--lookback-seconds", "-60"], env, "--lookback-seconds"),
        "unknown resource": (_replace(args, "--resources", "consent_events,cookies"), env, "--resources"),
        "unknown destination": ([*args, "--destination", "oracle_cloud_xyz"], env, "--destination"),
        "unreachable base url": (_replace(args, "--base-url", f"http://127.0.0.1:{closed_port}/privacy-v1"), env, "--base-url"),
        "html instead of the api": (_replace(args, "--base-url", html_site), env, "--base-url"),
        "unwritable duckdb path": (_replace(args, "--duckdb-path", str(tmp / "not-a-folder.txt" / "w.duckdb")), env, "--duckdb-path"),
        "duckdb path is not a database": (_replace(args, "--duckdb-path", str(tmp / "notes.txt")), env, "--duckdb-path"),
        "api key with a control character": (args, {**env, "SOURCES__CONCORD__API_KEY": "ck\x01" + export.sandbox.api_key}, "SOURCES__CONCORD__API_KEY"),
        "api key with a non-ascii character": (args, {**env, "SOURCES__CONCORD__API_KEY": export.sandbox.api_key + "\u00e9"}, "SOURCES__CONCORD__API_KEY"),
        "base url without scheme": (_replace(args, "--base-url", base.split("://", 1)[1]), env, "--base-url"),
        "base url with credentials": (_replace(args, "--base-url", base.replace("://", f"://loader:{URL_PASSWORD}@")), env, "--base-url"),
        "zero concurrency": ([*args, "--concurrency", "0"], env, "--concurrency"),
        "negative concurrency": ([*args, "--concurrency", "-3"], env, "--concurrency"),
        "concurrency in words": ([*args, "--concurrency", "four"], env, "--concurrency"),
        "concurrency in words (env)": (args, {**env, "SOURCES__CONCORD__CONCURRENCY": "four"}, "SOURCES__CONCORD__CONCURRENCY"),
        "timeout with a unit (env)": (args, {**env, "SOURCES__CONCORD__TIMEOUT": "30s"}, "SOURCES__CONCORD__TIMEOUT"),
        "start date in year 1": ([*args, "--start-date", "0001-01-01"], env, "--start-date"),
        "lookback beyond datetime": ([*args, "--lookback-seconds", "100000000000"], env, "--lookback-seconds"),
        "pipeline name with a slash": (_replace(args, "--pipeline-name", "../escaped/name"), env, "--pipeline-name"),
        "pipelines dir is a file": (_replace(args, "--pipelines-dir", str(tmp / "notes.txt")), env, "--pipelines-dir"),
        "lock path is a folder": (_replace(_replace(args, "--pipeline-name", "other"), "--pipelines-dir", str(tmp / "lock-folder")), env, "lock"),
        "duckdb path is a fifo": (_replace(args, "--duckdb-path", str(tmp / "pipe")), env, "--duckdb-path"),
        "hash with an empty salt": ([*fresh, "--pii", "hash"], {**env, "SOURCES__CONCORD__PII_SALT": ""}, "SOURCES__CONCORD__PII_SALT"),
        "hash with a one-space salt": ([*fresh, "--pii", "hash"], {**env, "SOURCES__CONCORD__PII_SALT": " "}, "SOURCES__CONCORD__PII_SALT"),
        "filesystem without bucket_url": ([*fresh, "--destination", "filesystem"], env, "DESTINATION__FILESYSTEM__BUCKET_URL"),
    }
    (tmp / "not-a-folder.txt").write_text("a file, not a folder")
    (tmp / "notes.txt").write_text(NOTES)
    return cases[name]


CASES = [
    "missing api key", "wrong api key", "malformed organization id", "unknown organization", "unknown project",
    "unparsable start date", "start date in the future", "negative lookback", "unknown resource",
    "unknown destination", "unreachable base url", "html instead of the api", "unwritable duckdb path",
    "duckdb path is not a database", "api key with a control character", "api key with a non-ascii character",
    "base url without scheme", "base url with credentials", "zero concurrency", "negative concurrency",
    "concurrency in words", "concurrency in words (env)", "timeout with a unit (env)", "start date in year 1",
    "lookback beyond datetime", "pipeline name with a slash", "pipelines dir is a file", "lock path is a folder",
    "duckdb path is a fifo", "hash with an empty salt", "hash with a one-space salt", "filesystem without bucket_url",
]


@pytest.fixture(scope="module")
def startup_seconds(tmp_path_factory: pytest.TempPathFactory) -> float:
    """What starting the CLI costs on this (shared, busy) machine: `run --help` imports everything a run does."""
    started = time.monotonic()
    run_cli(["run", "--help"], cli_env(), tmp_path_factory.mktemp("startup"), timeout=120)
    return time.monotonic() - started


def _files(root: Path) -> list[str]:
    """Every path under the good run's folder (pipelines dir, DuckDB file, lock files) but dlt's scratch
    folders: a run that failed during extract leaves an uncommitted package folder there, which no run reads."""
    scratch = ("/load/", "/normalize/")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not any(s in f"/{p.relative_to(root)}/" for s in scratch))


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_line_and_touches_nothing(good, html_site, workdir, tmp_path, startup_seconds, name):
    args, env, names_fix = _case(name, good, html_site, tmp_path)
    before, files = Snapshot.take(good), _files(good.tmp)
    started = time.monotonic()
    result = run_cli(args, env, workdir, timeout=60)
    seconds = time.monotonic() - started
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("exporting the Concord API")]
    assert result.returncode in ({2, 3} if name in API_JUDGED else {2}), result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and names_fix in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for secret in (good.sandbox.api_key, URL_PASSWORD):
        assert secret not in result.stderr + result.stdout
    # the time to fail, interpreter start-up (seconds on a busy 2-core machine) not counted; the API-judged
    # cases also start the pipeline and wait for the network (a web page is retried like a garbage body)
    limit = 30 if name in API_JUDGED else 10
    assert seconds - startup_seconds < limit, f"{name} took {seconds:.1f} s to fail (start-up {startup_seconds:.1f} s)"
    before.assert_unchanged(good)
    assert _files(good.tmp) == files, "a failed run created or removed files next to the good run's"
    assert not (tmp_path / FRESH).exists(), "a failed run created its DuckDB file, lock or state"
    assert not list(workdir.iterdir()), "a failed run wrote into the working directory"
    assert (tmp_path / "notes.txt").read_text() == NOTES


def test_unreachable_base_url_fails_within_seconds_with_production_backoff(good):
    """Connect retries are limited: a wrong host or port must not keep a job busy for minutes.
    Timed in-process so interpreter start-up on a busy CI machine does not count."""
    from concord_pipelines.errors import ConfigError

    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot connect"):
        good.run(resources=["consent_events"], base_url=f"http://127.0.0.1:{free_port()}/privacy-v1", backoff_base=0.5)
    assert time.monotonic() - started < 5


def test_debug_shows_the_traceback(good, workdir):
    env = {k: v for k, v in cli_env(good).items() if k != "SOURCES__CONCORD__API_KEY"}
    result = run_cli(["--debug", *cli_args(good)], env, workdir)
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no API key")
