"""Execute concord_analysis.ipynb without Jupyter's front ends and save it with its outputs.

    uv run --group dev python notebooks/run_headless.py [--output executed.ipynb]

Uses nbclient and ipykernel from the dev group (no `jupyter nbconvert`, which the dev group does not
ship). The DuckDB file and dataset come from CONCORD_DUCKDB_PATH / CONCORD_DATASET as in the notebook.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "concord_analysis.ipynb"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(HERE / "concord_analysis.executed.ipynb"), help="where to write the executed notebook")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = parser.parse_args(argv)
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
    try:
        client.execute()
    except CellExecutionError as err:
        # the cell's own error is the useful part (e.g. the DuckDB file not found): one line
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # the kernel colours its tracebacks
        last = [line for line in plain.splitlines() if line.strip()][-1]
        print(f"error: the notebook failed: {last}", file=sys.stderr)
        return 2
    finally:
        nbformat.write(notebook, args.output)
    print(f"executed {NOTEBOOK.name} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
