"""Data holders as they really are (issue 17), each through the real CLI against sandbox holders.

Every case runs `concord-pipeline cdr-metrics --config FILE` (via `main`) with the odd holder next to
conformant ones: the odd one loads exactly (same rows as a conformant twin, dates included) or fails
with one clear line naming it, and the others load either way.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from concord_pipelines.cli import main
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderClock, HolderState
from concord_pipelines.serve import free_port

# 14:30 in Sydney (UTC+11), 11:30 in Perth (UTC+8) on Monday 2026-11-23: past 13:00 local, where a
# wall time misread as UTC moves Sydney's dates one day late.
AFTERNOON = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)
OBSERVATION = "metric, dimension, grain, period_date, hour_key, value, is_partial"


@contextlib.contextmanager
def serving(**states: HolderState) -> Iterator[dict[str, CdrHolderServer]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(CdrHolderServer(state)) for name, state in states.items()}


def run_cli(
    tmp_path: Path,
    servers: dict[str, CdrHolderServer],
    capsys: pytest.CaptureFixture[str],
    *args: str,
    keys: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, str, list[str]]:
    """Run the CLI on a JSON holders file (plus per-holder `keys`); returns exit code, stdout, error/warning lines."""
    entries = [
        {"name": name, "base_url": srv.url, "timezone": srv.state.timezone, **(keys or {}).get(name, {})}
        for name, srv in servers.items()
    ]
    config = tmp_path / "holders.json"
    config.write_text(json.dumps({"holders": entries}))
    out_args = ["--duckdb-path", str(tmp_path / "out.duckdb"), "--pipelines-dir", str(tmp_path / "dlt")]
    code = main(["cdr-metrics", "--config", str(config), *out_args, *args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.startswith(("error: ", "warning: "))]


def rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as db:
        db.execute("SET TimeZone = 'UTC'")
        return [tuple(r) for r in db.sql(sql).fetchall()]


def observations(tmp_path: Path, name: str) -> set[tuple[Any, ...]]:
    return set(
        rows(
            tmp_path,
            f"SELECT {OBSERVATION} FROM cdr_metrics.metric_observations WHERE data_holder = '{name}'",
        )
    )


def loaded(tmp_path: Path) -> list[str]:
    return [r[0] for r in rows(tmp_path, "SELECT DISTINCT data_holder FROM cdr_metrics.snapshots ORDER BY 1")]


def twin(
    seed: int = 42, tz: str = "Australia/Sydney", at: datetime = AFTERNOON, **behaviour: Any
) -> HolderState:
    return HolderState(seed=seed, timezone=tz, clock=HolderClock(at), **behaviour)


def test_offset_less_request_time_is_read_in_the_holder_zone_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    states = {
        "syd": twin(),
        "syd_local": twin(request_time_style="naive"),
        "perth": twin(tz="Australia/Perth"),
        "perth_local": twin(tz="Australia/Perth", request_time_style="naive"),
    }
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys)
        sent = states["syd_local"].served[-1]["payload"]["data"]["requestTime"]
    assert sent == "2026-11-23T14:30:00"
    assert code == 0, err
    assert err == [
        "warning: holder syd_local: requestTime '2026-11-23T14:30:00' has no UTC offset; read as Australia/Sydney "
        "local time (local date 2026-11-23); set the holder's timezone if that is wrong",
        "warning: holder perth_local: requestTime '2026-11-23T11:30:00' has no UTC offset; read as Australia/Perth "
        "local time (local date 2026-11-23); set the holder's timezone if that is wrong",
    ]
    for zone in ("syd", "perth"):
        got = observations(tmp_path, f"{zone}_local")
        assert got == observations(tmp_path, zone) and got
        days = {r[3] for r in got if r[2] == "day"}
        assert max(days) == date(2026, 11, 23) and min(days) == date(2026, 11, 16)
    snaps = rows(
        tmp_path, "SELECT data_holder, epoch(request_time), local_date FROM cdr_metrics.snapshots ORDER BY 1"
    )
    assert {(h, t, d) for h, t, d in snaps} == {
        (h, AFTERNOON.timestamp(), date(2026, 11, 23)) for h in ("perth", "perth_local", "syd", "syd_local")
    }


def test_lowercase_t_z_and_long_fractions_are_rfc3339(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 23:59:59.5 UTC on the 22nd is already 10:59 on the 23rd in Sydney
    at = datetime(2026, 11, 22, 23, 59, 59, 500000, tzinfo=UTC)
    states = {"upper": twin(at=at), "lower": twin(at=at, request_time_style="lowercase")}
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys)
        sent = states["lower"].served[-1]["payload"]["data"]["requestTime"]
    assert sent == "2026-11-22t23:59:59.500000123z"
    assert code == 0 and err == []
    assert observations(tmp_path, "lower") == observations(tmp_path, "upper")
    assert max(r[3] for r in observations(tmp_path, "lower")) == date(2026, 11, 23)
    snap = rows(
        tmp_path, "SELECT epoch_us(request_time) FROM cdr_metrics.snapshots WHERE data_holder = 'lower'"
    )
    assert snap == [(int(at.timestamp() * 1_000_000),)]


def test_retry_after_as_an_http_date_is_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The holder throttles for 2.5 s and says so with an HTTP date: one wait, then it loads."""
    states = {"busy": twin(throttle_s=2.5, retry_after_style="date"), "bank": twin(seed=1)}
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys)
    assert code == 0 and err == []
    first, second = states["busy"].arrivals  # 429 then 200: no retry before the date
    assert second - first >= 2.4
    assert loaded(tmp_path) == ["bank", "busy"]
    assert observations(tmp_path, "busy")


def test_retry_after_beyond_the_budget_fails_that_holder_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    states = {
        "busy": twin(throttle_s=60, retry_after_style="seconds"),
        "bank": twin(seed=1),
    }
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys, keys={"busy": {"retry_budget": 5}})
    assert code == 3
    assert len(err) == 1 and re.fullmatch(
        r"error: holder busy: HTTP 429 asking to retry in (59|60)s \(Retry-After\), beyond its retry_budget of 5s; "
        r"raise retry_budget or run later",
        err[0],
    ), err
    assert len(states["busy"].arrivals) == 1  # it was not hammered
    assert loaded(tmp_path) == ["bank"]


def test_5xx_and_connection_errors_are_retried_like_429(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    states = {"flaky": twin(failures=2), "down": twin(failures=9), "gone": twin(), "bank": twin(seed=1)}
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    keys = {"down": {"max_attempts": 2}, "gone": {"max_attempts": 2, "base_url": nobody}}
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys, keys=keys)
    assert code == 3
    assert len(err) == 2 and err[0] == (
        'error: holder down answered HTTP 503 (after 2 attempts): application/json: {"errors":[]}'
    )
    assert re.fullmatch(
        rf"error: holder gone: cannot reach {nobody}/cds-au/v1/admin/metrics: .*Connection refused.* "
        r"\(2 attempts, timeout 30s, retry_budget 120s\); check base_url and that the holder is up",
        err[1],
    ), err
    assert len(states["flaky"].arrivals) == 3 and len(states["down"].arrivals) == 2
    assert loaded(tmp_path) == ["bank", "flaky"]


def test_extension_and_text_fields_are_skipped_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {
        "xyz-branchNote": "all branches open",  # CDS extensibility: <HID>-name
        "xyz-uptimeDays": {"currentDay": 7, "previousDays": [6]},  # an extension, even though numeric
        "statusText": {"currentDay": "green", "previousDays": ["amber"]},
        "newMetricCount": {"currentDay": 7, "previousDays": [6, 5]},  # unknown but numeric: an extra metric
    }

    def nested(version: int, payload: dict[str, Any]) -> dict[str, Any]:
        # inside a map the schema types as integers by HTTP status: must not fail validation either
        payload["data"]["errors"]["unauthenticated"]["currentDay"]["xyz-note"] = "gateway restarts"
        return payload

    states = {"plain": twin(), "extended": twin(extra_fields=extra, payload_hook=nested)}
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys)
    assert code == 0
    assert err == [
        "warning: holder extended: skipped fields the standard does not define: "
        "$.data.errors.unauthenticated.currentDay.xyz-note (holder extension), "
        "$.data.xyz-branchNote (holder extension), $.data.xyz-uptimeDays (holder extension), "
        "$.data.statusText (not numeric)"
    ]
    got, plain = observations(tmp_path, "extended"), observations(tmp_path, "plain")
    extras = {r for r in got if r[0] == "new_metric_count"}
    assert {(r[3], r[5], r[6]) for r in extras} == {
        (date(2026, 11, 23), 7.0, True),
        (date(2026, 11, 22), 6.0, False),
        (date(2026, 11, 21), 5.0, False),
    }
    assert got - extras == plain


def test_unsupported_versions_are_read_from_the_error_structure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 406 free text repeats the asked range (4..5); the true range is in meta or headers, or unknown."""
    states = {
        "old_meta": twin(supported_versions=(2, 3), version_report="meta"),
        "old_headers": twin(supported_versions=(2, 3), version_report="headers"),
        "old_silent": twin(supported_versions=(2, 3), version_report="none"),
        "bank": twin(seed=1),
    }
    with serving(**states) as servers:
        code, out, err = run_cli(tmp_path, servers, capsys, "--x-v", "5", "--x-min-v", "4")
    assert code == 3
    assert sorted(err) == [
        "error: holder old_headers supports versions 2..3; asked for 4..5",
        "error: holder old_meta supports versions 2..3; asked for 4..5",
        "error: holder old_silent supports none of the versions asked for (4..5); which it supports is unknown "
        '(it says: "Requested versions 4..5 are not supported")',
    ]
    assert loaded(tmp_path) == ["bank"]
    assert next(line.split() for line in out.splitlines() if line.startswith("bank"))[1] == "v5"


def test_html_page_with_200_is_not_the_metrics_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    states = {"down": twin(maintenance_page=True), "bank": twin(seed=1)}
    with serving(**states) as servers:
        code, _, err = run_cli(tmp_path, servers, capsys)
    assert code == 3
    assert err == [
        'error: holder down: not the metrics API right now (200 text/html "Scheduled maintenance"); '
        "check base_url, or run later if the holder is down for maintenance"
    ]
    assert loaded(tmp_path) == ["bank"]


def test_a_hung_holder_holds_up_only_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Listed first, two hung holders cost their own timeout/budget; the others are fetched meanwhile."""
    states = {
        "stuck": twin(hang_s=30),
        "capped": twin(hang_s=30),
        "bank": twin(seed=1),
        "bank2": twin(seed=2),
    }
    keys = {"stuck": {"timeout": 1, "max_attempts": 2}, "capped": {"timeout": 20, "retry_budget": 1.5}}
    with serving(**states) as servers:
        code, out, err = run_cli(tmp_path, servers, capsys, keys=keys)
        url = {name: f"{srv.url}/cds-au/v1/admin/metrics" for name, srv in servers.items()}
    assert code == 3
    assert sorted(err) == [
        f"error: holder capped: cannot reach {url['capped']}: no answer within 1.5s (1 attempt, timeout 20s, "
        "retry_budget 1.5s); raise timeout if the holder is just slow",
        f"error: holder stuck: cannot reach {url['stuck']}: no answer within 1s (2 attempts, timeout 1s, "
        "retry_budget 120s); raise timeout if the holder is just slow",
    ]
    assert loaded(tmp_path) == ["bank", "bank2"]
    hung_since = states["stuck"].arrivals[0]
    assert all(
        states[n].arrivals[0] - hung_since < 0.9 for n in ("bank", "bank2")
    )  # not after stuck's timeout
    assert len(states["stuck"].arrivals) == 2 and len(states["capped"].arrivals) == 1
    table = [line.split() for line in out.splitlines() if line.split()[:1] in (["stuck"], ["capped"])]
    seconds = {cells[0]: float(cells[-2]) for cells in table}
    assert 2.0 <= seconds["stuck"] < 4.5 and 1.4 <= seconds["capped"] < 2.5


def test_help_documents_the_per_holder_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cdr-metrics", "--help"])
    out = capsys.readouterr().out
    for text in ("timeout =", "max_attempts =", "retry_budget =", "concurrency =", "--timeout", "--concurrency",
                 "--retry-budget", "--max-attempts", "without UTC offset"):  # fmt: skip
        assert text in out, text
