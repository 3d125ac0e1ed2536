"""Over real HTTP against the sandbox holder into a real DuckDB file."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import dlt
import pytest

from concord_pipelines.cdr_metrics import parse
from concord_pipelines.cdr_metrics.runner import run
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderState

from .conftest import holder_config, query

KEY = "data_holder, metric, dimension, grain, period_date, hour_key"


def test_each_version_loads_several_holders_in_one_run(state: HolderState, pipeline: dlt.Pipeline) -> None:
    states = {
        v: HolderState(name=f"v{v}", seed=v, clock=state.clock, supported_versions=(v,)) for v in (2, 3, 4, 5)
    }
    with contextlib.ExitStack() as stack:
        servers = {v: stack.enter_context(CdrHolderServer(st)) for v, st in states.items()}
        result = run([holder_config(srv, f"holder_v{v}") for v, srv in servers.items()], pipeline)
    assert result.ok, result.error_lines()
    for version, st in states.items():
        name = f"holder_v{version}"
        served = st.served[-1]
        assert served["version"] == version
        expected = list(parse.observations(served["payload"], version, name, "Australia/Sydney"))
        got = query(
            pipeline,
            "SELECT count(*), min(payload_version), max(payload_version) FROM metric_observations "
            f"WHERE data_holder = '{name}'",
        )
        assert got == [(len(expected), version, version)]
        want = {
            (r["metric"], r["dimension"], r["grain"], r["period_date"], r["hour_key"]): r["value"]
            for r in expected
        }
        rows = query(
            pipeline,
            "SELECT metric, dimension, grain, period_date, hour_key, value FROM metric_observations "
            f"WHERE data_holder = '{name}'",
        )
        assert {tuple(r[:5]): r[5] for r in rows} == pytest.approx(want)
        data = served["payload"]["data"]
        snap = query(
            pipeline,
            f"SELECT payload_version, customer_count, recipient_count FROM snapshots WHERE data_holder = '{name}'",
        )
        assert snap == [(version, data["customerCount"], data["recipientCount"])]
        assert result.new_rows(name, "metric_observations") == len(expected)
        assert result.outcomes.holders[name].version == version


def _daily_series(payload: dict[str, Any]) -> dict[tuple[str, str], list[tuple[date, float]]]:
    """What the holder served per daily series: (metric, dimension) -> [(date, value)], computed independently."""
    data = payload["data"]
    today = parse.local_date(parse.request_time(payload, "Australia/Sydney"), "Australia/Sydney")
    out: dict[tuple[str, str], list[tuple[date, float]]] = {}
    for tier in ("unauthenticated", "highPriority", "lowPriority", "unattended", "largePayload"):
        node = data["invocations"][tier]
        days = [today] + [today - timedelta(days=i + 1) for i in range(len(node["previousDays"]))]
        out[("invocations", parse.snake(tier))] = list(
            zip(days, [node["currentDay"], *node["previousDays"]], strict=True)
        )
    node = data["performance"]["aggregate"]
    days = [today] + [today - timedelta(days=i + 1) for i in range(len(node["previousDays"]))]
    out[("performance", "aggregate")] = [
        (d, float(v)) for d, v in zip(days, [node["currentDay"], *node["previousDays"]], strict=True)
    ]
    node = data["errors"]["unauthenticated"]
    out[("errors", "unauthenticated.500")] = [(today, node["currentDay"]["500"])] + [
        (today - timedelta(days=i + 1), v["500"]) for i, v in enumerate(node["previousDays"])
    ]
    return out


def _hourly(payload: dict[str, Any], tier: str) -> dict[tuple[date, int], float]:
    node = payload["data"]["performance"][tier]
    today = parse.local_date(parse.request_time(payload, "Australia/Sydney"), "Australia/Sydney")
    out = {(today, h): float(v) for h, v in enumerate(node["currentDay"])}
    for i, day in enumerate(node["previousDays"]):
        out.update({(today - timedelta(days=i + 1), h): float(v) for h, v in enumerate(day)})
    return out


def test_two_consecutive_days_leave_nine_days(
    state: HolderState, holder: CdrHolderServer, pipeline: dlt.Pipeline
) -> None:
    """Done when: today + 7 previous days from run 1, plus the new day from run 2, all equal to what was served."""
    assert run([holder_config(holder)], pipeline).ok
    first = state.served[-1]["payload"]
    state.clock.advance(days=1)
    result = run([holder_config(holder)], pipeline)
    assert result.ok
    second = state.served[-1]["payload"]
    assert result.new_rows("bank", "metric_observations") > 0

    # expected = run 1's values overwritten by run 2's (later runs update the days they show again)
    expected: dict[tuple[str, str], dict[date, float]] = defaultdict(dict)
    for payload in (first, second):
        for series, values in _daily_series(payload).items():
            expected[series].update(dict(values))
    day1 = date(2026, 11, 23)
    for (metric, dimension), values in expected.items():
        got = dict(
            query(
                pipeline,
                f"SELECT period_date, value FROM metric_observations WHERE data_holder = 'bank' AND grain = 'day' "
                f"AND metric = '{metric}' AND dimension = '{dimension}' ORDER BY period_date",
            )
        )
        assert sorted(got) == [day1 + timedelta(days=i) for i in range(-7, 2)], (metric, dimension)
        assert got == pytest.approx(values), (metric, dimension)
    # every daily series has nine days, none has duplicates
    counts = query(
        pipeline,
        "SELECT metric, dimension, count(*), count(DISTINCT period_date) FROM metric_observations "
        "WHERE grain = 'day' GROUP BY 1, 2",
    )
    assert counts and all(n == 9 and d == 9 for _, _, n, d in counts), counts

    for tier in ("highPriority", "unauthenticated"):
        want = _hourly(first, tier) | _hourly(second, tier)
        rows = query(
            pipeline,
            "SELECT period_date, hour, value FROM metric_observations WHERE metric = 'performance' "
            f"AND grain = 'hour' AND dimension = '{parse.snake(tier)}'",
        )
        got = {(d, h): v for d, h, v in rows}
        assert got == pytest.approx(want)
        assert {d for d, _ in got} == {day1 + timedelta(days=i) for i in range(-7, 2)}
        assert len([k for k in got if k[0] == day1 + timedelta(days=1)]) == 9  # 09:30 local: 9 whole hours
        assert len([k for k in got if k[0] == day1]) == 24
    assert query(pipeline, "SELECT count(*) FROM snapshots") == [(2,)]
    partial = query(
        pipeline, "SELECT DISTINCT period_date FROM metric_observations WHERE is_partial AND grain = 'day'"
    )
    assert partial == [(day1 + timedelta(days=1),)]


def test_history_accumulates_without_duplicates(
    state: HolderState, holder: CdrHolderServer, pipeline: dlt.Pipeline
) -> None:
    for _ in range(3):
        assert run([holder_config(holder)], pipeline, period="ALL").ok
        state.clock.advance(days=1, hours=15)  # a run at a different hour, skipping a day
    total, distinct = query(pipeline, f"SELECT count(*), count(DISTINCT ({KEY})) FROM metric_observations")[0]
    assert total == distinct
    days = query(
        pipeline,
        "SELECT count(DISTINCT period_date) FROM metric_observations WHERE metric = 'session_count' AND grain = 'day'",
    )
    run_dates = {
        parse.local_date(parse.request_time(s["payload"], "Australia/Sydney"), "Australia/Sydney")
        for s in state.served
    }
    assert sorted(run_dates) == [
        date(2026, 11, 23),
        date(2026, 11, 25),
        date(2026, 11, 26),
    ]  # 09:30, 00:30, 15:30
    expected = run_dates | {d - timedelta(days=i) for d in run_dates for i in range(1, 8)}
    assert days == [(len(expected),)]
    last = state.served[-1]["payload"]["data"]["sessionCount"]
    latest = query(
        pipeline,
        "SELECT value FROM metric_observations WHERE metric = 'session_count' AND grain = 'day' ORDER BY period_date DESC LIMIT 1",
    )
    assert latest == [(last["currentDay"],)]


def test_schema_invalid_holder_loads_nothing_other_holder_loads(
    pipeline: dlt.Pipeline, state: HolderState
) -> None:
    def corrupt(version: int, payload: dict[str, Any]) -> dict[str, Any]:
        payload["data"]["invocations"]["highPriority"]["previousDays"][3] = "many"
        return payload

    bad_state = HolderState(name="broken", seed=9, clock=state.clock, payload_hook=corrupt)
    with CdrHolderServer(bad_state) as bad, CdrHolderServer(state) as good:
        result = run([holder_config(bad, "broken"), holder_config(good, "bank")], pipeline)
    assert not result.ok
    (failure,) = result.outcomes.failed
    assert failure.holder == "broken"
    assert failure.error == (
        "holder broken: v5 payload breaks its schema at $.data.invocations.highPriority.previousDays[3]: "
        "'many' is not of type 'integer'"
    )
    assert query(pipeline, "SELECT DISTINCT data_holder FROM metric_observations") == [("bank",)]
    assert query(pipeline, "SELECT DISTINCT data_holder FROM snapshots") == [("bank",)]
    assert "broken" in result.summary() and "failed" in result.summary()


def test_duckdb_file_named_like_the_dataset_is_refused(tmp_path) -> None:
    """cdr_metrics.duckdb holding dataset cdr_metrics: DuckDB could not tell catalog from schema."""
    from concord_pipelines.cdr_metrics.runner import make_pipeline
    from concord_pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="named like the dataset 'cdr_metrics'.*--dataset"):
        make_pipeline(duckdb_path=tmp_path / "cdr_metrics.duckdb", pipelines_dir=tmp_path / "dlt", pipeline_name="same_name")
    assert not (tmp_path / "dlt").exists()


def test_dlt_attach_finds_the_duckdb_file_after_a_run(state: HolderState, tmp_path) -> None:
    """dlt keeps no credentials in state: the runner stores the file's path where dlt.attach looks."""
    from concord_pipelines.cdr_metrics.runner import make_pipeline

    pipeline = make_pipeline(duckdb_path=tmp_path / "elsewhere.duckdb", pipelines_dir=tmp_path / "dlt", pipeline_name="cdr_attach")
    with CdrHolderServer(state) as server:
        result = run([holder_config(server)], pipeline)
    assert not result.outcomes.failed
    attached = dlt.attach("cdr_attach", pipelines_dir=str(tmp_path / "dlt"))
    frame = attached.dataset()["metric_observations"].df()
    assert len(frame) == query(pipeline, "SELECT count(*) FROM metric_observations")[0][0] > 0
