"""`python -m tests.reliability.crash_driver run ...`: the real CLI, with phase markers for crash tests.

Test-only patches (the product has no crash hooks): when CRASH_MARKERS names a folder, a file is
written there as each phase begins, and CRASH_PAUSE=<phase> waits there (until <markers>/release
exists, or CRASH_PAUSE_SECONDS) so the test can SIGKILL the process at a known moment. Phases:
  normalize  extract finished (package and new state on disk), nothing normalized or loaded
  load_job   one load job has copied its file into DuckDB but is not marked complete yet
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def _marker(phase: str) -> None:
    folder = os.environ.get("CRASH_MARKERS")
    if not folder:
        return
    Path(folder, phase).touch()
    if os.environ.get("CRASH_PAUSE") != phase:
        return
    # until the test kills us, or releases us by creating <markers>/release, or the pause runs out
    deadline = time.monotonic() + float(os.environ.get("CRASH_PAUSE_SECONDS", "60"))
    while time.monotonic() < deadline and not Path(folder, "release").exists():
        time.sleep(0.05)


def install() -> None:
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    from dlt.pipeline.pipeline import Pipeline

    real_normalize = Pipeline.normalize
    real_run = DuckDbCopyJob.run

    def normalize(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        _marker("normalize")
        return real_normalize(self, *args, **kwargs)

    def run(self: DuckDbCopyJob) -> None:
        real_run(self)
        _marker("load_job")

    Pipeline.normalize = normalize  # type: ignore[method-assign]
    DuckDbCopyJob.run = run  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from concord_pipelines.cli import main

    sys.exit(main(sys.argv[1:]))
