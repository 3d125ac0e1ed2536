"""`concord-pipeline cdr-metrics`: flags, --config with several holders, summaries, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from concord_pipelines.cli import main
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderState

from .conftest import START


def _out(tmp_path: Path) -> list[str]:
    return ["--duckdb-path", str(tmp_path / "out.duckdb"), "--pipelines-dir", str(tmp_path / "dlt")]


def test_config_file_with_two_holders_one_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from concord_pipelines.sandbox.cdr_holder import HolderClock

    good = HolderState(name="bank", clock=HolderClock(START), tokens={"tok-123"})
    modern = HolderState(name="modern", supported_versions=(6,))
    with CdrHolderServer(good) as a, CdrHolderServer(modern) as b:
        config = tmp_path / "holders.toml"
        config.write_text(
            f'x_v = 5\nx_min_v = 2\nperiod = "ALL"\n'
            f'[[holders]]\nname = "bank"\nbase_url = "{a.url}"\ntimezone = "Australia/Sydney"\ntoken = "tok-123"\n'
            f'[[holders]]\nname = "modern"\nbase_url = "{b.url}"\ntimezone = "Europe/London"\n'
        )
        code = main(["cdr-metrics", "--config", str(config), *_out(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 3
    assert err.strip().splitlines()[-1] == "error: holder modern supports versions 6..6; asked for 2..5"
    lines = out.splitlines()
    assert lines[0].split() == [
        "holder",
        "version",
        "observations",
        "new",
        "updated",
        "snapshots",
        "seconds",
        "status",
    ]
    bank = next(line.split() for line in lines if line.startswith("bank"))
    assert bank[1] == "v5" and bank[-1] == "ok" and bank[2] == bank[3]  # all new on the first run
    assert next(line for line in lines if line.startswith("modern")).split()[-1] == "failed"
    assert "tok-123" not in out + err
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as db:
        holders = db.sql("SELECT DISTINCT data_holder FROM cdr_metrics.metric_observations").fetchall()
    assert holders == [("bank",)]


def test_single_holder_flags_and_json_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with CdrHolderServer(HolderState(name="x", supported_versions=(2, 3))) as srv:
        args = ["cdr-metrics", "--holder", "solo", "--base-url", srv.url, "--timezone", "America/New_York"]
        assert main([*args, "--x-v", "3", "--x-min-v", "none", "--period", "historic", *_out(tmp_path)]) == 0
        config = tmp_path / "h.json"
        config.write_text(json.dumps([{"name": "solo", "base_url": srv.url, "timezone": "America/New_York"}]))
        assert main(["cdr-metrics", "--config", str(config), *_out(tmp_path)]) == 0
        served = [(s["version"], s["period"]) for s in srv.state.served]
    assert served == [(3, "HISTORIC"), (3, "ALL")]
    out = capsys.readouterr().out
    second = [line.split() for line in out.splitlines() if line.startswith("solo")][1]
    assert int(second[3]) > 0 and int(second[4].replace(",", "")) > 0  # today's rows new, history updated


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--holder", "a"], "a single holder needs both --holder NAME and --base-url URL"),
        (["--holder", "a", "--base-url", "ftp://x"], "holder a: base_url must be an http(s) URL"),
        (
            ["--holder", "a", "--base-url", "http://x", "--timezone", "Sydney"],
            "holder a: unknown timezone 'Sydney'",
        ),
        (["--holder", "a", "--base-url", "http://x", "--x-v", "0"], "x-v must be a positive integer, got 0"),
        (
            ["--holder", "a", "--base-url", "http://x", "--cert", "/nope.pem", "--key", "/nope.key"],
            "cert file not found",
        ),
        (
            ["--holder", "a", "--base-url", "http://x", "--token-endpoint", "http://x/token"],
            "token_endpoint needs client_id and private_key_path",
        ),
        (
            ["--holder", "a", "--base-url", "http://x", "--destination", "nosuchdb"],
            "unknown dlt destination 'nosuchdb'",
        ),
        (["--config", "/no/such.toml"], "cannot read config file /no/such.toml"),
        (
            ["--holder", "a", "--base-url", "http://x", "--timeout", "0"],
            "holder a: timeout must be a positive number of seconds, got 0.0",
        ),
        (
            ["--holder", "a", "--base-url", "http://x", "--max-attempts", "0"],
            "holder a: max_attempts must be a whole number >= 1, got 0",
        ),
        (
            ["--holder", "a", "--base-url", "http://x", "--concurrency", "0"],
            "concurrency must be a whole number from 1 to 64, got 0",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [*argv, "--pipelines-dir", str(tmp_path / "dlt")]
    if "--destination" not in argv:
        argv += ["--duckdb-path", str(tmp_path / "x.duckdb")]
    assert main(["cdr-metrics", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_unknown_key_in_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "h.toml"
    config.write_text('[[sources.cdr_metrics.holders]]\nname = "a"\nbase_url = "http://x"\ntimzone = "UTC"\n')
    assert main(["cdr-metrics", "--config", str(config), *_out(tmp_path)]) == 2
    assert "holder a: unknown key(s) timzone" in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cdr-metrics", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--holder",
        "--base-url",
        "--timezone",
        "--token",
        "--duckdb-path",
        "--config",
        "--x-min-v",
        "[[holders]]",
    ):
        assert flag in out


def test_sandbox_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cdr-metrics", "--sandbox", "--holder", "demo", "--period", "current", *_out(tmp_path)]) == 0
    demo = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("demo"))
    assert demo[1] == "v5" and demo[-1] == "ok"
