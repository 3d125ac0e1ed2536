"""The first hour with the tool, through `main()` and the real CLI: demo, sql, progress, two organizations,
unreadable local state, a busy sandbox port, dlt's logs on a failed load, the README's commands."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
import threading

import duckdb
import pytest

from concord_pipelines.cli import main
from concord_pipelines.sandbox import SandboxConfig, SandboxServer
from tests.concord.conftest import SANDBOX_NOW, Export
from tests.reliability.conftest import REPO, cli_args, cli_env, run_cli, warehouse_snapshot


def _one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("exporting the Concord API")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_demo_writes_its_own_file_and_says_what_to_do_next(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "concord.duckdb").write_bytes(b"the user's warehouse")
    assert main(["demo", "--events", "300", "--days", "3"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "concord.duckdb").read_bytes() == b"the user's warehouse", "the demo touched ./concord.duckdb"
    assert (tmp_path / "concord-demo.duckdb").is_file()
    next_steps = next(line for line in out.splitlines() if line.startswith("next steps:"))
    assert "concord-pipeline sql" in next_steps and "concord-pipeline run --org" in next_steps
    # the suggested command works from the install: no DuckDB CLI needed
    assert main(["sql", "--duckdb-path", "concord-demo.duckdb", "--dataset", "concord_demo",
                 "SELECT count(*) AS events FROM consent_events"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].strip() == "events" and table[2].strip() == "300", table


def test_sql_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sql", "SELECT 1"]) == 2
    assert "no DuckDB file at concord.duckdb" in _one_error(capsys.readouterr().err)
    with duckdb.connect(str(tmp_path / "concord.duckdb")) as con:
        # the default file (catalog `concord`) holding the default dataset (schema `concord_data`)
        con.execute("CREATE SCHEMA concord.concord_data; CREATE TABLE concord.concord_data.t AS SELECT 1 AS x")
    assert main(["sql", "SELEC x FROM t"]) == 2
    assert "the query failed" in _one_error(capsys.readouterr().err)
    assert main(["sql", "--dataset", "nope", "SELECT 1"]) == 2
    assert "--dataset" in _one_error(capsys.readouterr().err)
    assert main(["sql", "SELECT x FROM t"]) == 0  # bare names: the dataset is the current schema


def test_two_organizations_in_one_dataset_keep_their_own_usage_days(tmp_path, monkeypatch, capsys):
    """Usage rows used to be keyed by (date, project_id) only: the second organization overwrote the first."""
    monkeypatch.chdir(tmp_path)
    counts: dict[str, int] = {}
    for seed in (11, 12):
        with SandboxServer(SandboxConfig(seed=seed, events=200, days=5, now=SANDBOX_NOW)) as sandbox:
            monkeypatch.setenv("SOURCES__CONCORD__API_KEY", sandbox.api_key)
            args = ["run", "--org", sandbox.org_id, "--base-url", sandbox.base_url, "--resources", "usage_metrics",
                    "--duckdb-path", str(tmp_path / "shared.duckdb"), "--pipeline-name", f"org_{seed}",
                    "--pipelines-dir", str(tmp_path / "pipelines"), "--lag-seconds", "0", "--quiet"]
            assert main(args) == 0, capsys.readouterr().err
            with duckdb.connect(str(tmp_path / "shared.duckdb"), read_only=True) as con:
                counts[sandbox.org_id] = con.execute(
                    "SELECT count(*) FROM concord_data.usage_daily WHERE organization_id = ?", [sandbox.org_id]).fetchone()[0]
    with duckdb.connect(str(tmp_path / "shared.duckdb"), read_only=True) as con:
        after = dict(con.execute("SELECT organization_id, count(*) FROM concord_data.usage_daily GROUP BY 1").fetchall())
        key = con.execute("SELECT count(*) FROM concord_data.usage_browser_daily WHERE organization_id IS NULL").fetchone()[0]
    assert len(after) == 2 and after == counts and min(counts.values()) > 0, (after, counts)
    assert key == 0


@pytest.fixture
def export(make_export) -> Export:
    export = make_export(events=300)
    export.run(resources=["projects", "consent_events"])
    return export


@pytest.mark.parametrize("damage", ["garbage state", "empty state", "garbage schema", "empty schema"])
def test_unreadable_local_state_is_one_line_naming_the_folder(export, workdir, damage):
    working = export.tmp / "pipelines" / export.pipeline_name
    target = working / ("state.json" if "state" in damage else "schemas/concord.schema.json")
    target.write_text('{"version": 3, "truncat' if damage.startswith("garbage") else "")
    damaged, before = target.read_bytes(), warehouse_snapshot(export)
    result = run_cli(cli_args(export, "--resources", "projects,consent_events"), cli_env(export), workdir)
    assert result.returncode == 2, result.stderr
    line = _one_error(result.stderr)
    assert str(working) in line and "move that folder away" in line, line
    assert target.read_bytes() == damaged and warehouse_snapshot(export) == before
    shutil.move(working, export.tmp / "moved-away")  # the fix the line names works
    again = run_cli(cli_args(export, "--resources", "projects,consent_events"), cli_env(export), workdir)
    assert again.returncode == 0, again.stderr


def test_busy_sandbox_port_is_one_line(export):
    port = export.sandbox.base_url.split(":")[2].split("/")[0]
    for command in (["-m", "concord_pipelines.sandbox"], ["-m", "concord_pipelines.cli", "sandbox"]):
        result = subprocess.run([sys.executable, *command, "--port", port, "--events", "10"], env=cli_env(),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "already in use" in _one_error(result.stderr) and "--port" in result.stderr


def test_failed_load_is_one_line_without_dlt_tracebacks(export, monkeypatch, capfd):
    """dlt logs a failed load job at ERROR with its traceback; without --debug only our line is shown."""
    from dlt.common.destination.exceptions import DestinationTerminalException
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    def failing(self: DuckDbCopyJob) -> None:
        raise DestinationTerminalException("no space left on device (simulated)")

    monkeypatch.setattr(DuckDbCopyJob, "run", failing)
    monkeypatch.setenv("SOURCES__CONCORD__API_KEY", export.sandbox.api_key)
    capfd.readouterr()
    assert main(cli_args(export, "--resources", "projects,consent_events", "--full-refresh")) == 2
    line = _one_error(capfd.readouterr().err)
    assert "during load" in line and "no space left on device" in line, line


def test_progress_is_plain_lines_without_a_terminal(export, workdir):
    args = [a for a in cli_args(export, "--resources", "consent_events", "--full-refresh") if a != "--quiet"]
    result = run_cli(args, cli_env(export), workdir)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  consent_events: 300 of ~300 rows \(100%\), [\d,]+ rows/s$", result.stderr, re.M), result.stderr
    assert "\x1b[" not in result.stderr, "terminal escapes in a log"


def test_progress_is_a_live_display_on_a_terminal(export, workdir):
    args = [a for a in cli_args(export, "--resources", "consent_events", "--full-refresh") if a != "--quiet"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "concord_pipelines.cli", *args], env={**cli_env(export), "TERM": "xterm"},
                            cwd=workdir, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(leader, chunks), daemon=True)
    reader.start()
    proc.communicate(timeout=300)
    reader.join(timeout=10)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    assert "\x1b[" in screen and "━" in screen, "no live display on a terminal"
    assert re.search(r"consent_events.*300/300", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)), screen


def _drain(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


def test_readme_commands_work_without_a_global_pip_install():
    """PEP 668 system Pythons refuse `pip install` outside a venv: the README creates one first, and
    .ci/run runs exactly the README's test command."""
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"): readme.index("## Exporting your organization")]
    commands = re.findall(r"```bash\n(.+?)\n```", quick_start)
    assert len(commands) == 2 and all(c.startswith("python3 -m venv .uv && .uv/bin/pip install") for c in commands), commands
    assert "python3-venv" in quick_start.split("```bash")[0], "Debian's python3-venv is not mentioned before the commands"
    assert "pip install uv" not in quick_start.replace(".venv/bin/pip install", ""), "a global pip install remains"
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1], (ci, commands[1])
