"""The throughput benchmark runs end to end with a small N and prints every row (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "loopback": [
        "ours: initial load",
        "ours: rerun, no change",
        "ours (dev env): initial load",
        "raw sequential script",
        "dlt rest_api, parquet",
        "dlt rest_api, defaults",
        "ours: incremental, +50 new",
    ],
    "50 ms": [
        "ours: initial load",
        "ours: initial, concurrency 1",
        "raw sequential script",
        "dlt rest_api, parquet",
        "dlt rest_api, defaults",
    ],
}


@pytest.mark.slow
def test_benchmark_completes_and_prints_every_row(tmp_path):
    out = tmp_path / "results.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "throughput.py"),
        "--events", "5000", "--slow-peer-events", "2000", "--latency-ms", "50",
        "--json", str(out), "--workdir", str(tmp_path / "work"),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout.split("goals:")[0].split("-" * 20)[-1]
    lines = [line for line in table.splitlines() if "|" in line]
    printed = [(line.split("|")[0].strip(), line.split("|")[1][:31].strip()) for line in lines]
    expected = [(section, name) for section, names in ROWS.items() for name in names]
    assert printed == expected, done.stdout
    assert "goals:" in done.stdout
    report = json.loads(out.read_text())
    assert all(r["ok"] and r["events"] > 0 and r["wall"] > 0 and r["rss_mb"] > 0 for r in report["results"])
    first = next(r for r in report["results"] if r["name"] == "ours: initial load")
    assert first["events"] == 5000
    assert report["goals"], "no goal was evaluated"
    # ours ran as the README installs it: a separate environment without the dev group
    assert report["ours_python"].startswith("production install")
    site_packages = tmp_path / "work" / "production-venv" / "lib"
    assert list(site_packages.glob("python*/site-packages/dlt")) and not list(site_packages.glob("python*/site-packages/pandas"))
