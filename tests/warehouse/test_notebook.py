"""notebooks/concord_analysis.ipynb: executed headless (nbclient, a kernel of this venv) against a fresh
export of the sandbox; it must run without errors and draw at least three charts. The committed file
must carry no outputs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.warehouse.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "concord_analysis.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], "clear the outputs before committing (Kernel > Restart & Clear Output)"
            assert cell.execution_count is None


@pytest.mark.slow
def test_notebook_runs_headless_and_draws_charts(duckdb_export: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "concord.duckdb"  # the default file name, holding the default dataset
    shutil.copy(duckdb_export, db)
    monkeypatch.setenv("CONCORD_DUCKDB_PATH", str(db))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    started = time.monotonic()
    # kernel "python3" is ipykernel's native kernel: the Python running this test, so this venv.
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    print(f"\nnotebook executed in {time.monotonic() - started:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"expected at least 3 charts, got {len(images)}"
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert ", 0 failed, 0 errors" in text  # the export had no marts (dbt off): the notebook built them
