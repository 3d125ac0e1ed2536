"""Settings shared by every test."""

import os
import sys
import tempfile
from pathlib import Path

# An export builds the dbt models after its load by default; across the hundreds of exports the tests run,
# that would add minutes on CI's two cores without testing anything new. The dbt tests
# (tests/warehouse/test_models.py, test_postgres.py) turn it back on explicitly.
os.environ.setdefault("SOURCES__CONCORD__DBT", "false")

# This machine (and CI's) sets PYTHONDONTWRITEBYTECODE=1 and the venv holds no .pyc files: every CLI, sandbox
# or dbt child process would compile dlt, pandas, sqlglot... from source again (~2 s of CPU each, for
# hundreds of processes). One bytecode cache outside the tree, shared by this process and its children.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / f"concord-tests-pycache-{os.getuid()}"))
sys.dont_write_bytecode = False
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
