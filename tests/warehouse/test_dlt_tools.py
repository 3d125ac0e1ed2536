"""dlt's own tools on the pipelines `concord-pipeline run` creates: `dlt.attach(...).dataset()`, `dlt pipeline NAME
info|trace`, with the default DuckDB file (in the working folder) and with --duckdb-path elsewhere; a file named like
its dataset is refused; dlt's telemetry is off unless asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dlt
import pytest

from concord_pipelines.concord import settings

RESOURCES = "consent_events,projects"


@dataclass
class Exported:
    pipelines_dir: Path
    pipeline_name: str
    duckdb_path: Path


def concord(*args: str, cwd: Path, api_key: str) -> subprocess.CompletedProcess[str]:
    """`concord-pipeline ...` as a user runs it, from `cwd`, with no dlt settings but the API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__"))}
    return subprocess.run([sys.executable, "-m", "concord_pipelines.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**env, "SOURCES__CONCORD__API_KEY": api_key})


def dlt_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    return subprocess.run([str(Path(sys.executable).parent / "dlt"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture(scope="module")
def exports(sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """Two CLI runs of the same sandbox: the default file in the working folder, and a custom --duckdb-path."""
    root = tmp_path_factory.mktemp("dlt_tools")
    pipelines = root / "pipelines"
    work = root / "work"
    work.mkdir()
    common = ("--org", sandbox.org_id, "--base-url", sandbox.base_url, "--resources", RESOURCES, "--pipelines-dir",
              str(pipelines), "--lag-seconds", "0", "--quiet", "--no-dbt")
    default = concord("run", *common, cwd=work, api_key=sandbox.api_key)
    assert default.returncode == 0, default.stderr[-2000:]
    custom_path = root / "elsewhere" / "warehouse.duckdb"
    custom_path.parent.mkdir()
    custom = concord("run", *common, "--pipeline-name", "concord_custom", "--duckdb-path", str(custom_path),
                     cwd=work, api_key=sandbox.api_key)
    assert custom.returncode == 0, custom.stderr[-2000:]
    return {"default": Exported(pipelines, settings.DEFAULT_PIPELINE_NAME, work / settings.DEFAULT_DUCKDB_PATH),
            "custom": Exported(pipelines, "concord_custom", custom_path)}


@pytest.mark.slow  # the module's two CLI exports (~40 s on 2 cores) are shared by the slow tests
@pytest.mark.parametrize("which", ["default", "custom"])
def test_attach_and_dataset_read_the_file_the_cli_wrote(exports: dict[str, Exported], which: str, sandbox) -> None:
    """The test runs in another folder than the CLI did: dlt finds the file from the pipeline's state alone."""
    exported = exports[which]
    assert exported.duckdb_path.is_file()
    pipeline = dlt.attach(exported.pipeline_name, pipelines_dir=str(exported.pipelines_dir))
    assert pipeline.dataset_name == settings.DEFAULT_DATASET
    frame = pipeline.dataset()["consent_events"].df()
    truth = {e["id"] for e in sandbox.state.truth("consent-events")}
    assert len(frame) == len(truth) and set(frame["id"]) == truth
    assert len(pipeline.dataset()["projects"].df()) == len(sandbox.state.truth("projects"))
    # and nothing was created where dlt would look without the stored path
    assert not (Path.cwd() / f"{exported.pipeline_name}.duckdb").exists()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["default", "custom"])
def test_dlt_pipeline_info_and_trace_work_after_a_cli_run(exports: dict[str, Exported], which: str,
                                                         tmp_path: Path) -> None:
    exported = exports[which]
    info = dlt_cli("pipeline", "--pipelines-dir", str(exported.pipelines_dir), exported.pipeline_name, "info",
                   cwd=tmp_path)
    assert info.returncode == 0, info.stderr[-2000:]
    assert f"dataset_name: {settings.DEFAULT_DATASET}" in info.stdout and "destination_type: dlt.destinations.duckdb" in info.stdout
    trace = dlt_cli("pipeline", "--pipelines-dir", str(exported.pipelines_dir), exported.pipeline_name, "trace",
                    cwd=tmp_path)
    assert trace.returncode == 0, trace.stderr[-2000:]
    assert "load" in trace.stdout and "consent_events" in trace.stdout, trace.stdout[-2000:]


def test_a_file_named_like_its_dataset_is_refused_in_one_line(sandbox, tmp_path: Path) -> None:
    run = concord("run", "--org", sandbox.org_id, "--base-url", sandbox.base_url, "--duckdb-path",
                  str(tmp_path / "concord.duckdb"), "--dataset", "concord", "--pipelines-dir", str(tmp_path / "p"),
                  cwd=tmp_path, api_key=sandbox.api_key)
    assert run.returncode == 2
    error = run.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the DuckDB file concord.duckdb is named like the dataset 'concord'") and "--dataset" in error
    assert not (tmp_path / "concord.duckdb").exists() and not (tmp_path / "p").exists()


TELEMETRY = ("import concord_pipelines.concord.source; from concord_pipelines.telemetry import telemetry_enabled; "
             "import dlt.common.runtime.anon_tracker as t; print(telemetry_enabled(), t._ANON_TRACKER_ENDPOINT is not None)")


@pytest.mark.parametrize(("env", "toml", "expected"), [
    ({}, None, "False False"),  # importing the source turns it off, with no .dlt/ anywhere
    ({"RUNTIME__DLTHUB_TELEMETRY": "true"}, None, "True True"),  # an env var turns it on
    ({}, "[runtime]\ndlthub_telemetry = true\n", "True True"),  # so does .dlt/config.toml
])
def test_dlt_telemetry_is_off_unless_asked_for(env: dict[str, str], toml: str | None, expected: str,
                                               tmp_path: Path) -> None:
    if toml:
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "config.toml").write_text(toml)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME__")}
    base["DLT_DATA_DIR"] = str(tmp_path / "dlt_home")  # no global ~/.dlt/config.toml either
    proc = subprocess.run([sys.executable, "-c", TELEMETRY], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**base, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == expected
