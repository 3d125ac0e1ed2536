"""--destination filesystem keeps the README's promise of no duplicates: two CLI runs (the second re-reading
everything) leave one row per id in delta tables; a destination that cannot merge is refused in one line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable

from concord_pipelines.concord import settings

RESOURCES = "consent_events,data_systems"  # data systems come once per project: the same id twice in one load


def concord(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    return subprocess.run([sys.executable, "-m", "concord_pipelines.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**base, **env})


def ids(table: Path, column: str = "id") -> Counter[str]:
    return Counter(DeltaTable(str(table)).to_pyarrow_table(columns=[column]).column(column).to_pylist())


@pytest.mark.slow  # two filesystem exports, ~30 s on 2 cores
def test_two_cli_runs_into_filesystem_leave_one_row_per_id(sandbox, tmp_path: Path) -> None:
    bucket = tmp_path / "lake"
    env = {"SOURCES__CONCORD__API_KEY": sandbox.api_key, "DESTINATION__FILESYSTEM__BUCKET_URL": bucket.as_uri()}
    args = ("run", "--destination", "filesystem", "--org", sandbox.org_id, "--base-url", sandbox.base_url,
            "--resources", RESOURCES, "--pipelines-dir", str(tmp_path / "pipelines"), "--lag-seconds", "0", "--quiet")
    first = concord(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = concord(*args, "--full-refresh", env=env, cwd=tmp_path)  # every row again: all of them merge
    assert second.returncode == 0, second.stderr[-2000:]
    dataset = bucket / settings.DEFAULT_DATASET
    assert (dataset / "consent_events" / "_delta_log").is_dir()  # delta, the default table format
    events = ids(dataset / "consent_events")
    truth = {e["id"] for e in sandbox.state.truth("consent-events")}
    assert set(events) == truth and max(events.values()) == 1, events.most_common(3)
    systems = ids(dataset / "data_systems")
    assert systems and max(systems.values()) == 1, systems.most_common(3)
    assert DeltaTable(str(dataset / "consent_events")).version() >= 1  # the second run merged into the table


@pytest.mark.parametrize(("extra", "message"), [
    (("--destination", "athena"), "error: --destination athena cannot merge rows on their keys, so reruns would add "
                                  "duplicates: pass --table-format iceberg"),
    (("--destination", "postgres", "--table-format", "delta"), "error: --table-format delta does not apply to "
                                                               "--destination postgres"),
])
def test_a_destination_that_cannot_merge_is_refused_in_one_line(extra: tuple[str, ...], message: str, sandbox,
                                                                tmp_path: Path) -> None:
    run = concord("run", "--org", sandbox.org_id, "--base-url", sandbox.base_url, "--pipelines-dir",
                  str(tmp_path / "pipelines"), *extra, env={"SOURCES__CONCORD__API_KEY": sandbox.api_key}, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), run.stderr
    assert not (tmp_path / "pipelines").exists()  # refused before any state was written


def test_table_format_from_config_must_be_known(sandbox, tmp_path: Path) -> None:
    run = concord("run", "--destination", "filesystem", "--org", sandbox.org_id, "--base-url", sandbox.base_url,
                  "--pipelines-dir", str(tmp_path / "pipelines"),
                  env={"SOURCES__CONCORD__API_KEY": sandbox.api_key, "SOURCES__CONCORD__TABLE_FORMAT": "parquet",
                       "DESTINATION__FILESYSTEM__BUCKET_URL": (tmp_path / "lake").as_uri()}, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: unknown table format 'parquet'")


@pytest.mark.skipif(importlib.util.find_spec("pyiceberg") is not None, reason="pyiceberg is installed here")
def test_iceberg_without_pyiceberg_names_the_install(sandbox, tmp_path: Path) -> None:
    run = concord("run", "--destination", "filesystem", "--table-format", "iceberg", "--org", sandbox.org_id,
                  "--base-url", sandbox.base_url, "--pipelines-dir", str(tmp_path / "pipelines"),
                  env={"SOURCES__CONCORD__API_KEY": sandbox.api_key,
                       "DESTINATION__FILESYSTEM__BUCKET_URL": (tmp_path / "lake").as_uri()}, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == ("error: --destination filesystem writes iceberg tables, which needs "
                                                   "the pyiceberg package: pip install 'dlt[pyiceberg]==1.31.0'")
