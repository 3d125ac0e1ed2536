"""Settings shared by every test, and how the suite is split between pytest-xdist workers."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

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

@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group per unit that must not be split between workers (pyproject: `-n 2 --dist loadgroup`).

    - the Airflow tests: one Airflow venv and home, built once, and their runs must not overlap;
    - the tests on the throwaway PostgreSQL server (`postgres_server`, `postgres_export`): one server and
      one export into it instead of one per worker (the fixture is per worker and safe anyway: its own
      port and data folder);
    - otherwise one group per test module, so a module- or session-scoped fixture (a shared export, a
      dbt build, a sandbox) is built once, not once on each worker.
    A group a test names itself (`pytest.mark.xdist_group`) is kept. `-n 0` runs everything in one
    process, where the marker does nothing.

    The groups are then ordered longest first (Airflow, PostgreSQL, modules with slow tests, then by number
    of tests; `--no-loadscope-reorder` keeps this order), so that a long group does not start last and
    leave one worker idle while the other finishes it.
    """
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker:
            group = str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
        else:
            if item.get_closest_marker("airflow"):
                group = "airflow"
            elif "postgres_server" in getattr(item, "fixturenames", ()):
                group = "postgres"
            else:
                group = item.nodeid.split("::", 1)[0]
            item.add_marker(pytest.mark.xdist_group(group))
        groups.setdefault(group, []).append(item)

    def longest_first(name: str) -> tuple[int, int, int]:
        members = groups[name]
        slow = sum(1 for item in members if item.get_closest_marker("slow"))
        if any(item.get_closest_marker("airflow") for item in members):
            kind = 0
        elif name == "postgres":
            kind = 1
        else:
            kind = 2 if slow else 3
        return kind, -slow, -len(members)

    items[:] = [item for name in sorted(groups, key=longest_first) for item in groups[name]]


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker, refuse to run if the groups did not reach the scheduler: xdist passes them as a
    `@group` suffix of the node id, which pytest 9.2 silently dropped (pytest-dev/pytest-xdist#1386).
    Split groups would build the module fixtures, the Airflow venv and the PostgreSQL export on both workers."""
    grouping = os.environ.get("PYTEST_XDIST_WORKER") and session.config.getvalue("loadgroup")
    if grouping and session.items and not any("@" in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist's --dist loadgroup is not grouping on this pytest "
                                "(pytest-dev/pytest-xdist#1386): pin pytest below 9.2 or run with -n 0")
