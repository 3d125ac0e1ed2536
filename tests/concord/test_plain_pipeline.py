"""The source as a dlt user runs it: `dlt.pipeline(...).run(concord_source())` in their own code, no CLI.

One run of the source must leave the warehouse equal to the API up to the server's time, however big
the first load (slices are read inside the run), with no thread left behind and nothing to warn about.
"""

from __future__ import annotations

import logging
import threading
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from concord_pipelines import concord_source
from tests.concord.conftest import Export, as_utc, assert_warehouse_matches


def plain_run(export: Export, tmp_path: Path, **arguments: Any) -> dlt.Pipeline:
    pipeline = dlt.pipeline("plain", destination=dlt.destinations.duckdb(export.duckdb_path), dataset_name="concord_data",
                            pipelines_dir=str(tmp_path / "plain"))
    source = concord_source(organization_id=export.sandbox.org_id, api_key=export.sandbox.api_key,
                            base_url=export.sandbox.base_url, lag_seconds=0, **arguments)
    pipeline.run(source)
    return pipeline


def resource_state(pipeline: dlt.Pipeline, name: str) -> dict[str, Any]:
    return pipeline.state["sources"]["concord"]["resources"][name]


def test_one_run_loads_a_first_load_bigger_than_a_slice_whole(make_export, tmp_path: Path, caplog, capfd) -> None:
    export = make_export(events=2000)
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        pipeline = plain_run(export, tmp_path, slice_rows=300)
    assert_warehouse_matches(export)
    events = resource_state(pipeline, "consent_events")
    assert events["unfinished"] is False and events["last_run"]["items"] >= 2000  # per-run numbers in dlt state
    assert events["last_run"]["requests"] > 2000 // 1000  # the slices' counting requests are there too
    leaked = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"
    assert not [str(w.message) for w in caught], [str(w.message) for w in caught]
    # The sandbox's clock is fixed in the past, so the client rightly notes that this host's is ahead.
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "clock is" not in r.getMessage()]
    assert not logged, logged
    dlt_warnings = [line for line in capfd.readouterr().err.splitlines() if "WARNING" in line]  # dlt logs to stderr
    assert not dlt_warnings, dlt_warnings[:3]


def test_the_next_run_reads_only_what_changed_and_converges(make_export, tmp_path: Path) -> None:
    export = make_export(events=1200)
    plain_run(export, tmp_path, slice_rows=300)
    export.state.insert_events(150, seed=3)
    export.state.update_events(40, seed=4)
    export.state.advance_clock(120)
    pipeline = plain_run(export, tmp_path, slice_rows=300)
    assert_warehouse_matches(export)
    assert resource_state(pipeline, "consent_events")["last_run"]["items"] < 1200  # incremental, not a re-read


@pytest.mark.parametrize("slices_per_run", [1, 2])
def test_slices_per_run_stops_early_and_says_so_in_state(make_export, tmp_path: Path, slices_per_run: int) -> None:
    export = make_export(events=2000)
    pipeline = plain_run(export, tmp_path, slice_rows=300, slices_per_run=slices_per_run)
    assert resource_state(pipeline, "consent_events")["unfinished"] is True
    runs = 1
    while resource_state(pipeline, "consent_events")["unfinished"]:
        pipeline = plain_run(export, tmp_path, slice_rows=300, slices_per_run=slices_per_run)
        runs += 1
        assert runs < 20
    assert runs >= 2000 // 300 // slices_per_run
    assert_warehouse_matches(export)


def test_allow_external_schedulers_takes_the_schedulers_interval(make_export, tmp_path: Path, monkeypatch) -> None:
    """dlt's scheduler interval (Airflow's data interval inside a task; DLT_INTERVAL_START/END here) is honoured
    only when asked for, exactly as dlt's own `incremental(allow_external_schedulers=True)`."""
    export = make_export(events=1200)
    start, end = export.now() - timedelta(days=6), export.now() - timedelta(days=5)
    monkeypatch.setenv("DLT_INTERVAL_START", start.isoformat())
    monkeypatch.setenv("DLT_INTERVAL_END", end.isoformat())
    pipeline = plain_run(export, tmp_path, allow_external_schedulers=True)
    ids = {row["id"] for row in export.rows("consent_events")}
    assert ids == {e["id"] for e in export.state.truth("consent-events") if start <= as_utc(e["dateUpdated"]) < end}
    assert ids and "cursor" not in resource_state(pipeline, "consent_events")  # a repair leaves the cursor alone
    pipeline = plain_run(export, tmp_path)  # without the flag the environment's interval is ignored
    assert_warehouse_matches(export)
    assert resource_state(pipeline, "consent_events")["cursor"]
