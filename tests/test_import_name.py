"""The installed import name is specific to this project; the generic `pipelines` is not it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_pipelines_does_not_import_this_project_even_from_the_repository_root() -> None:
    run = subprocess.run([sys.executable, "-c", "import pipelines"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "import concord_pipelines instead" in run.stderr, run.stderr[-500:]


def test_the_documented_imports_work_from_anywhere(tmp_path: Path) -> None:
    code = "from concord_pipelines import cdr_metrics_source, concord_source; print(concord_source.name, cdr_metrics_source.name)"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.split() == ["concord", "cdr_metrics"], run.stderr[-1000:]
