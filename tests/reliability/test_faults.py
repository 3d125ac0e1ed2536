"""Every fault the sandbox can inject, end to end: the warehouse equals the source afterwards.

Recoverable faults (probabilities, next:N) must be retried away; faults that outlast the retry
budget ("always") must fail the run with one clear line, load nothing, keep data and state as
the last good run left them, and the next run (fault off) must converge.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from concord_pipelines.concord.runner import RunResult
from concord_pipelines.errors import PipelineError
from concord_pipelines.sandbox import SandboxConfig, SandboxServer
from tests.concord.conftest import SANDBOX_NOW, Export, assert_table_matches, assert_warehouse_matches
from tests.reliability.conftest import SOURCE_RESOURCES, Snapshot, pending_packages

# spec -> run overrides; every spec fires several times per run, while 7 failures in a row on one
# request (0.2^7, the default budget) stay too unlikely to make the test flaky
RECOVERABLE = {
    "latency": ("latency=15", {}),
    "429+retry-after": ("429=0.2,retry_after=0.02", {}),
    "500": ("500=0.2", {}),
    "502": ("502=0.2", {}),
    "503": ("503=0.2", {}),
    "504": ("504=0.2", {}),
    "drop": ("drop=0.2", {}),
    "stall": ("stall=next:3,stall_seconds=2", {"timeout": 0.5}),
    "truncate": ("truncate=0.2", {}),
    "nonjson": ("html=0.2", {}),
    "cap": ("cap=137", {}),
    "inserts-during-paging": ("cap=400,inserts=3@next:3", {}),
    "changes-during-paging": ("cap=400,updates=4@next:3", {}),
}

# faults that never stop: the retry budget runs out and the run must fail cleanly
UNRECOVERABLE = {
    "429": ("429=always,retry_after=0.01", {}, "429"),
    "500": ("500=always", {}, "500"),
    "502": ("502=always", {}, "502"),
    "503": ("503=always", {}, "503"),
    "504": ("504=always", {}, "504"),
    "drop": ("drop=always", {}, "gave up"),
    "stall": ("stall=always,stall_seconds=2", {"timeout": 0.3, "max_retries": 1}, "timed out"),
    "truncate": ("truncate=always", {}, "not JSON"),
    "nonjson": ("html=always", {}, "not JSON"),
}


def _retried(result: RunResult) -> int:
    return sum(s.retries for s in result.resources.values())


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Export]:
    """One sandbox and warehouse for the matrix: a first run costs seconds, a failing run almost nothing."""
    server = SandboxServer(SandboxConfig(seed=7, events=1200, days=20, now=SANDBOX_NOW)).start()
    export = Export(server, tmp_path_factory.mktemp("faults"))
    export.run(resources=SOURCE_RESOURCES)
    yield export
    server.stop()


@pytest.fixture
def export(shared: Export) -> Iterator[Export]:
    """The shared export after the source moved on (so every run has something new to load)."""
    shared.state.faults.clear()
    shared.state.advance_clock(3600)
    shared.state.mutate(insert_events=30, update_events=10, late_events=5, import_events=3, finish_scans=True,
                        new_scans=1, advance_compliance=3, insert_compliance=1)
    shared.state.advance_clock(60)
    yield shared
    shared.state.faults.clear()


def _run(export: Export, **overrides: object) -> RunResult:
    return export.run(**{"resources": SOURCE_RESOURCES, **overrides})


@pytest.mark.parametrize("name", list(RECOVERABLE))
def test_recoverable_fault_gives_a_warehouse_equal_to_the_source(export, name):
    spec, overrides = RECOVERABLE[name]
    injected_before = Counter(export.state.faults.snapshot()["injected"])
    export.state.faults.configure(spec, reset=True)
    # full refresh: the fault hits a read of the whole history, not only the incremental window
    result = _run(export, full_refresh=True, **overrides)
    export.state.faults.clear()
    assert_warehouse_matches(export)
    injected = Counter(export.state.faults.snapshot()["injected"]) - injected_before
    assert injected, f"fault {spec} never fired: the test proves nothing"
    if name not in ("latency", "cap", "inserts-during-paging", "changes-during-paging"):
        assert _retried(result) >= 1
    if name.endswith("during-paging"):
        assert sum(s.rereads + s.splits for s in result.resources.values()) >= 1
    assert not pending_packages(export)


@pytest.mark.parametrize("name", list(UNRECOVERABLE))
def test_fault_outlasting_retries_fails_cleanly_and_the_next_run_converges(export, name):
    spec, overrides, expected = UNRECOVERABLE[name]
    before = Snapshot.take(export)
    export.state.faults.configure(spec, reset=True)
    started = time.monotonic()
    with pytest.raises(PipelineError) as raised:
        _run(export, **overrides)
    assert time.monotonic() - started < 30, "the retry budget must be bounded"
    message = str(raised.value)
    assert "\n" not in message and expected.lower() in message.lower(), message
    assert export.sandbox.api_key not in message
    before.assert_unchanged(export)
    assert not pending_packages(export), "a failed extract must not leave a package for the next run to load"

    export.state.faults.clear()
    _run(export)
    assert_warehouse_matches(export)


def test_failure_in_one_resource_loads_nothing_from_the_others(make_export, monkeypatch):
    """Resources extracted before the failure must not be loaded either: one run, one package."""
    from concord_pipelines.concord.client import ConcordClient
    from concord_pipelines.errors import ApiError

    resources = ["projects", "consent_events"]
    export = make_export(events=600)
    export.run(resources=resources)
    export.state.advance_clock(3600)
    export.state.mutate(insert_events=20, update_events=5, seed=9)
    export.state.advance_clock(60)
    before = Snapshot.take(export)
    real_get_json = ConcordClient.get_json

    def metrics_down(self, path, params, stats, **kwargs):  # only the metrics endpoint fails
        if path.endswith("/metrics"):
            raise ApiError("the Concord API answered 500 for /metrics: boom")
        return real_get_json(self, path, params, stats, **kwargs)

    monkeypatch.setattr(ConcordClient, "get_json", metrics_down)
    with pytest.raises(ApiError, match="boom"):
        export.run(resources=[*resources, "usage_metrics"])
    assert export.state.stats, "the sandbox served nothing"
    before.assert_unchanged(export)
    monkeypatch.undo()
    export.run(resources=resources)
    for table in ("projects", "consent_events"):
        assert_table_matches(export, table)


# Updates move rows to the end of the dateUpdated order, shifting the rows after them back across page
# boundaries. (New rows land at the end and shift nothing before them: such a window needs no re-read.)
@pytest.mark.parametrize("spec", ["cap=300,updates=2@next:3", "cap=300,updates=5@next:3"])
def test_drift_during_paging_is_read_again_and_shows_in_the_summary(make_export, spec):
    export = make_export(events=1500, faults=spec)
    result = export.run(resources=["consent_events"])
    events = result.resources["consent_events"]
    assert events.rereads + events.splits >= 1, "the drifting window was accepted without a re-read"
    assert export.state.faults.snapshot()["injected"]
    assert_table_matches(export, "consent_events")
    lines = result.summary().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("resource "))
    row = next(line.split() for line in lines[header:] if line.startswith("consent_events"))
    assert row[lines[header].split().index("re-reads")] == str(events.rereads + events.splits)


def test_window_that_keeps_changing_is_read_again_until_it_settles(make_export):
    """An update after every page shifts rows across boundaries: the window is read again (ordered by id,
    where an update moves nothing) or split, and no row that existed before the run is lost."""
    export = make_export(events=1500, faults="cap=300,updates=1@always")
    original = {e["id"] for e in export.state.truth("consent-events")}
    result = export.run(resources=["consent_events"])
    stats = result.resources["consent_events"]
    assert stats.splits + stats.rereads >= 1
    loaded = {r["id"] for r in export.rows("consent_events")}
    assert original <= loaded, f"{len(original - loaded)} events that existed before the run were lost"
    export.state.faults.clear()
    export.state.advance_clock(60)
    export.run(resources=["consent_events"])
    assert_table_matches(export, "consent_events")
