"""Signals and the run lock through the real CLI, with the sandbox stalling mid-response.

- SIGINT exits 130 and SIGTERM 143 (the documented codes) within seconds, even while a request hangs;
  one `error:` line, no traceback, data and state as before; the next run works.
- The lock lives with dlt's state (DLT_DATA_DIR/pipelines), not under $HOME: two runs that differ only
  in HOME are one-at-a-time. `--destination dlt.destinations.duckdb` is `duckdb`: same file, same lock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.concord.conftest import Export
from tests.reliability.conftest import Snapshot, cli_args, cli_env, run_cli

STALL = "stall=always,stall_seconds=600"


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "concord_pipelines.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_stall(export: Export, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not export.state.faults.injected.get("stall"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the stalled server"
        time.sleep(0.2)


def _drop_stalled_responses(export: Export) -> None:
    """The signalled run's request still sleeps in the sandbox (stall_seconds=600) with nobody reading it:
    stopping the server would wait 10 s for it (uvicorn's graceful shutdown, BackgroundServer's join)."""
    export.sandbox._server._server.force_exit = True  # only read when the server shuts down


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("exporting the Concord API")]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_a_stalled_run_promptly_with_its_exit_code(make_export, workdir, sig, code):
    export = make_export(events=300)
    export.run(resources=["projects", "consent_events"])
    before = Snapshot.take(export)
    export.state.faults.configure(STALL)
    proc = _start(cli_args(export, "--resources", "projects,consent_events", "--full-refresh"), cli_env(export), workdir)
    try:
        _wait_for_stall(export, proc)
        time.sleep(0.5)  # well inside the stalled response
        sent = time.monotonic()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert seconds < 10, f"exit took {seconds:.1f} s after the signal"
    lines = _error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: interrupted by {sig.name}"), stderr
    assert "Traceback" not in stderr
    export.state.faults.clear()
    _drop_stalled_responses(export)
    before.assert_unchanged(export)
    export.run(resources=["projects", "consent_events"])  # and the next run works


def test_lock_lives_with_dlt_state_not_home_and_covers_the_dlt_duckdb_reference(make_export, workdir, tmp_path):
    export = make_export(events=300)
    data_dir = tmp_path / "dlt-data"
    args = cli_args(export, "--resources", "projects,consent_events")
    at = args.index("--pipelines-dir")
    args = args[:at] + args[at + 2:]  # dlt's own pipelines dir, from DLT_DATA_DIR
    env = cli_env(export, DLT_DATA_DIR=str(data_dir))
    export.state.faults.configure(STALL)
    first = _start(args, {**env, "HOME": str(tmp_path / "home-a")}, workdir)
    try:
        _wait_for_stall(export, first)
        lock = data_dir / "pipelines" / f".{export.pipeline_name}.lock"
        assert lock.is_file(), "the lock is not next to dlt's state"
        second = run_cli(args, {**env, "HOME": str(tmp_path / "home-b")}, workdir)
        assert second.returncode == 4 and "another run" in second.stderr, second.stderr
        # the same DuckDB file through dlt's full destination reference, under another pipeline name
        other = [*args, "--destination", "dlt.destinations.duckdb"]
        other[other.index("--pipeline-name") + 1] = "other"
        third = run_cli(other, env, workdir)
        assert third.returncode == 4 and "DuckDB file" in third.stderr, third.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    _drop_stalled_responses(export)
    assert not (tmp_path / "home-a" / ".dlt").exists() and not (tmp_path / "home-b" / ".dlt").exists()
    export.state.faults.clear()
    done = run_cli(other, env, workdir)
    assert done.returncode == 0, done.stderr
    assert not list(workdir.glob("*.duckdb")), "dlt.destinations.duckdb wrote ./<pipeline>.duckdb, not --duckdb-path"
    assert export.count("consent_events") == 300
