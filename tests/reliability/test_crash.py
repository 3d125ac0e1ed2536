"""SIGKILL the real CLI mid-extract, between extract and load, and mid-load: the next run converges.

The export runs in a child process (tests/reliability/crash_driver.py: the real CLI plus phase
markers) against a sandbox in this process; latency faults make extraction slow enough to hit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.concord.conftest import Export, assert_table_matches, assert_warehouse_matches
from tests.reliability.conftest import (
    SOURCE_RESOURCES,
    catch_up_clock,
    cli_args,
    cli_env,
    pending_packages,
    run_cli,
)

pytestmark = pytest.mark.slow

RESOURCES = ",".join(SOURCE_RESOURCES)


def _start(export: Export, markers: Path, pause: str | None, workdir: Path) -> subprocess.Popen[str]:
    env = cli_env(export, CRASH_MARKERS=str(markers), SOURCES__CONCORD__BACKOFF_BASE="0.01")
    if pause:
        env["CRASH_PAUSE"] = pause
    args = cli_args(export, "--resources", RESOURCES)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_driver", *args],
        env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _served(export: Export) -> int:
    return sum(n for route, n in export.state.stats.items() if "/privacy-v1/" in route)


def _first_run_then_changes(export: Export, workdir: Path) -> None:
    """A good run, then the source moves on: the crashed run has old rows to update and new ones to add."""
    done = run_cli(cli_args(export, "--resources", RESOURCES), cli_env(export), workdir)
    assert done.returncode == 0, done.stderr
    catch_up_clock(export)
    export.state.mutate(insert_events=300, update_events=40, late_events=20, import_events=10, finish_scans=True,
                        new_scans=1, advance_compliance=4, insert_compliance=2, seed=21)


def _rerun_converges(export: Export, workdir: Path) -> None:
    """One run after the crash catches up completely, including what changed since the crash."""
    export.state.faults.clear()
    export.state.mutate(insert_events=25, update_events=10, seed=22)
    again = run_cli(cli_args(export, "--resources", RESOURCES), cli_env(export), workdir)
    assert again.returncode == 0, again.stderr
    assert_warehouse_matches(export)  # no loss, and no duplicate keys
    assert not pending_packages(export)


@pytest.mark.parametrize("phase", ["extract", "normalize", "load_job"])
def test_sigkill_then_the_next_run_converges(make_export, workdir, tmp_path, phase):
    export = make_export(events=1500)
    _first_run_then_changes(export, workdir)
    markers = tmp_path / "markers"
    markers.mkdir()
    if phase == "extract":
        export.state.faults.configure("latency=100,cap=50", reset=True)  # ~40 pages, 0.1 s each
        proc = _start(export, markers, None, workdir)
        served = _served(export)
        _wait_for(lambda: _served(export) >= served + 8, proc, "extraction was under way")
        assert not (markers / "normalize").exists()
    else:
        proc = _start(export, markers, phase, workdir)
        _wait_for((markers / phase).exists, proc, f"phase {phase}")
    _kill(proc)
    if phase == "extract":
        assert not pending_packages(export), "a killed extract must not leave a partial package to load"
    else:
        assert pending_packages(export), "the killed run should have left a package for the next run"
    _rerun_converges(export, workdir)


def test_second_run_at_once_is_refused_and_the_first_finishes(make_export, workdir, tmp_path):
    export = make_export(events=800)
    markers = tmp_path / "markers"
    markers.mkdir()
    env = cli_env(export, CRASH_MARKERS=str(markers), CRASH_PAUSE="normalize", CRASH_PAUSE_SECONDS="120")
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_driver", *cli_args(export, "--resources", RESOURCES)],
        env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for((markers / "normalize").exists, first, "the first run to finish extracting")
    other = cli_args(export, "--resources", RESOURCES)
    other[other.index("--pipeline-name") + 1] = "another_pipeline"
    with ThreadPoolExecutor(2) as pool:  # both while the first run holds its locks (it waits for release)
        same_pipeline = pool.submit(run_cli, cli_args(export, "--resources", RESOURCES), cli_env(export), workdir)
        same_duckdb = pool.submit(run_cli, other, cli_env(export), workdir)
    for future, what in ((same_pipeline, "pipeline 'concord_test'"), (same_duckdb, "DuckDB file")):
        refused = future.result()
        assert refused.returncode == 4, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert lines[-1].startswith("error: another run is using ") and what in lines[-1], refused.stderr
        assert "Traceback" not in refused.stderr
    assert first.poll() is None, "the refused runs must not disturb the first one"
    (markers / "release").touch()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert_warehouse_matches(export)
    assert not pending_packages(export)


def test_duckdb_file_open_in_another_program_is_refused_clearly(make_export, workdir):
    """DuckDB allows one writing process: a notebook holding the file must not end in a traceback."""
    export = make_export(events=300)
    export.run(resources=["consent_events"])
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({export.duckdb_path!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        refused = run_cli(cli_args(export, "--resources", "consent_events"), cli_env(export), workdir)
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 4, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the DuckDB file ") and f"PID {holder.pid}" in last, refused.stderr
    assert "Traceback" not in refused.stderr
    export.state.advance_clock(60)
    export.state.insert_events(10, seed=1)
    export.state.advance_clock(60)
    export.run(resources=["consent_events"])
    assert_table_matches(export, "consent_events")


def test_deleted_warehouse_is_rebuilt_from_the_start(make_export):
    """Local state says 'done up to here' but the data is gone: start over instead of loading only new rows."""
    export = make_export(events=500)
    export.run(resources=SOURCE_RESOURCES)
    Path(export.duckdb_path).unlink()
    export.state.advance_clock(3600)
    export.state.mutate(insert_events=15, update_events=5, seed=2)
    export.state.advance_clock(60)
    export.run(resources=SOURCE_RESOURCES)
    assert_warehouse_matches(export)


def test_lost_pipeline_folder_is_restored_from_the_warehouse(make_export):
    """A fresh machine or wiped ~/.dlt: dlt restores the cursors stored with the data, so no full re-read."""
    import shutil

    export = make_export(events=1500)
    export.run(resources=SOURCE_RESOURCES)
    shutil.rmtree(export.tmp / "pipelines")
    export.state.advance_clock(3600)
    export.state.mutate(insert_events=15, update_events=5, seed=3)
    export.state.advance_clock(60)
    result = export.run(resources=SOURCE_RESOURCES)
    assert_warehouse_matches(export)
    assert result.resources["consent_events"].items < 1500, "the cursor was not restored: everything was read again"


def test_failed_load_job_stays_pending_and_is_retried_until_it_loads(make_export, monkeypatch):
    """A load job failing terminally (disk full, a destination error) must not lose its rows, even
    when the next run's lookback would no longer cover them."""
    from dlt.common.destination.exceptions import DestinationTerminalException
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    from concord_pipelines.errors import PipelineError

    export = make_export(events=500)
    export.run(resources=SOURCE_RESOURCES)
    export.state.advance_clock(3600)
    inserted = export.state.insert_events(20, seed=1)
    export.state.advance_clock(60)
    real_run = DuckDbCopyJob.run

    def failing(self: DuckDbCopyJob) -> None:
        if "consent_events" in self._file_path:
            raise DestinationTerminalException("no space left on device (simulated)")
        real_run(self)

    monkeypatch.setattr(DuckDbCopyJob, "run", failing)
    for _ in range(2):  # still failing on the next run: the package is retried, not skipped
        with pytest.raises(PipelineError) as raised:
            export.run(resources=SOURCE_RESOURCES)
        assert "during load" in str(raised.value) and "pending load package" in str(raised.value)
        assert pending_packages(export)
        assert not set(inserted) & {r["id"] for r in export.rows("consent_events")}
    monkeypatch.undo()
    export.state.advance_clock(6 * 3600)
    # no lookback: the 20 events are behind the advanced cursor, only the pending package has them
    export.run(resources=SOURCE_RESOURCES, lookback_seconds=0)
    assert_warehouse_matches(export)
    assert not pending_packages(export)
