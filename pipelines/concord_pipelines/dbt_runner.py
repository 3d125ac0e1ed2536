"""Run the bundled dbt project (pipelines/concord_pipelines/dbt/concord) against the warehouse a load just wrote.

    from concord_pipelines.dbt_runner import DbtTarget, run_dbt
    result = run_dbt(DbtTarget.duckdb("concord.duckdb", schema="concord_data"))       # dbt build
    result = run_dbt(target, command="source freshness")                              # freshness only
    print(result.summary_line())                                                     # dbt build: 96 passed, ...

dbt runs in a child process (the same Python environment, `from dbt.cli.main import cli`): the export's
process never imports dbt, so its import time and memory stay as they were, and dbt's global state and
logging cannot leak into a long-lived caller (Airflow workers). Credentials reach dbt as environment variables
of that process only (profiles.yml reads them with env_var), never as arguments or files.
`python -m concord_pipelines.dbt_runner --duckdb-path concord.duckdb [build|test|source freshness|docs generate]`
runs it by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concord_pipelines.errors import ConfigError, PipelineError

PROJECT_DIR = Path(__file__).resolve().parent / "dbt" / "concord"
DBT_TIMEOUT_S = 30 * 60
CONCORD_TABLES_SOURCE = "concord"
BUILT_DESTINATIONS = ("duckdb", "postgres")  # the profiles.yml outputs; other warehouses use the package


class DbtTestsFailed(PipelineError):
    """dbt built, but a data test failed (or a model errored) and the user asked for a non-zero exit."""

    exit_code = 5


@dataclass(frozen=True)
class DbtTarget:
    """Where dbt builds: the profile output and its settings, passed to dbt as environment variables."""

    name: str  # profiles.yml output: duckdb | postgres
    schema: str
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a password: never printed

    @classmethod
    def duckdb(cls, path: str, schema: str) -> DbtTarget:
        return cls("duckdb", schema, {"CONCORD_DBT_DUCKDB_PATH": str(path)})

    @classmethod
    def postgres(cls, schema: str, host: str, port: int | None, user: str, password: str | None,
                 database: str, sslmode: str | None = None) -> DbtTarget:
        env = {"CONCORD_DBT_PG_HOST": host, "CONCORD_DBT_PG_PORT": str(port or 5432), "CONCORD_DBT_PG_USER": user,
               "CONCORD_DBT_PG_PASSWORD": password or "", "CONCORD_DBT_PG_DATABASE": database}
        if sslmode:
            env["CONCORD_DBT_PG_SSLMODE"] = sslmode
        return cls("postgres", schema, env)


@dataclass
class DbtResult:
    """What one dbt invocation did, counted from its run_results.json."""

    command: str
    returncode: int
    passed: int = 0
    failed: int = 0  # data or unit tests that found rows / differed
    errored: int = 0  # models or tests that could not run (SQL errors)
    warned: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)  # names of the failed or errored nodes
    message: str = ""  # dbt's last error line when it failed before running anything
    output: str = field(default="", repr=False)  # the end of dbt's own output, for diagnosing a failure

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.failed and not self.errored

    def summary_line(self) -> str:
        counts = f"{self.passed} passed, {self.failed} failed, {self.errored} errors, {self.warned} warnings, " \
                 f"{self.skipped} skipped"
        line = f"dbt {self.command}: {counts}"
        if self.failures:
            shown = ", ".join(self.failures[:5]) + (f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else "")
            line += f" (failed: {shown})"
        elif self.returncode != 0 and self.message:
            line += f" ({self.message})"
        return line


def run_dbt(target: DbtTarget, command: str = "build", *, exclude: Iterable[str] = (),
            variables: dict[str, Any] | None = None, work_dir: str | None = None,
            timeout: float = DBT_TIMEOUT_S) -> DbtResult:
    """Run `dbt <command>` on the bundled project; never raises for a failing test (see DbtResult.ok)."""
    with tempfile.TemporaryDirectory(prefix="concord-dbt-") as tmp:
        # target/ and logs/ outside the package: it may be installed read-only, and runs must not share them.
        out = Path(work_dir) if work_dir else Path(tmp)
        args = [*command.split(), "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
                "--target", target.name, "--target-path", str(out / "target"), "--log-path", str(out / "logs"),
                "--no-version-check", "--no-use-colors", "--vars", json.dumps({**(variables or {})})]
        excluded = sorted(set(exclude))
        if excluded and command.split()[0] in ("build", "run", "test", "compile", "source"):
            args += ["--exclude", *excluded]
        env = {**os.environ, **target.env, "CONCORD_DBT_SCHEMA": target.schema,
               "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_PARTIAL_PARSE": "false"}
        try:
            proc = subprocess.run([sys.executable, "-c", "from dbt.cli.main import cli; cli()", *args],
                                  env=env, capture_output=True, text=True, timeout=timeout, cwd=str(out))
        except subprocess.TimeoutExpired:
            return DbtResult(command, returncode=124, message=f"dbt {command} took longer than {timeout:.0f} s")
        result = _read_results(command, proc.returncode, out / "target")
        result.output = (proc.stdout + proc.stderr)[-20000:]
        if proc.returncode != 0 and not result.failures:
            result.message = _last_error(proc.stdout + proc.stderr)
        return result


def _read_results(command: str, returncode: int, target_dir: Path) -> DbtResult:
    name = "sources.json" if command.startswith("source") else "run_results.json"
    result = DbtResult(command, returncode)
    path = target_dir / name
    if not path.exists():
        return result
    for node in json.loads(path.read_text()).get("results", []):
        status = str(node.get("status", "")).lower()
        unique_id = str(node.get("unique_id", ""))
        short = _node_name(unique_id)
        if status in ("pass", "success"):
            result.passed += 1
        elif status == "fail":
            result.failed += 1
            result.failures.append(short)
        elif status in ("error", "runtime error"):
            result.errored += 1
            result.failures.append(short)
        elif status == "warn":
            result.warned += 1
        elif status == "skipped":
            result.skipped += 1
    return result


def _node_name(unique_id: str) -> str:
    """test.concord.unique_x_id.1a2b3c -> unique_x_id; unit_test.concord.model.case -> case;
    source.concord.concord.consent_events -> concord.consent_events; model.concord.x -> x."""
    parts = unique_id.split(".")
    if parts[0] == "source":
        return ".".join(parts[-2:])
    if parts[0] == "test" and len(parts) >= 4:
        return parts[2]
    return parts[-1]


def _last_error(output: str) -> str:
    """dbt's own explanation, without its timestamps and colour, for a run that failed before any node."""
    lines = [line.split("  ", 1)[-1].strip() for line in output.splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line.lower()] or lines
    return interesting[-1][:300] if interesting else "dbt failed without output"


def missing_table_excludes(existing: set[str], declared: Iterable[str]) -> list[str]:
    """dbt selectors leaving out everything built on a table that is not loaded (yet): a run of a few
    resources, or a first run, still builds and tests what it can."""
    return [f"source:{CONCORD_TABLES_SOURCE}.{table}+" for table in declared if table not in existing]


def existing_tables(pipeline: Any) -> set[str] | None:
    """Tables in the pipeline's dataset, through dlt's own SQL client; None when it cannot tell."""
    try:
        with pipeline.sql_client() as client:
            schema = pipeline.dataset_name.replace("'", "''")
            rows = client.execute_sql(
                f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'")
            return {str(r[0]) for r in rows or []}
    except Exception:
        return None


def postgres_target(schema: str, url: str | None = None) -> DbtTarget:
    """A PostgreSQL target from a URL, else from dlt's config (DESTINATION__POSTGRES__CREDENTIALS, secrets.toml)."""
    import dlt
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials

    creds = PostgresCredentials()
    value: Any = url
    if value is None:
        try:
            value = dlt.secrets.get("destination.postgres.credentials")
        except Exception:
            value = None
    if not value:
        raise ConfigError("no PostgreSQL credentials for dbt: set DESTINATION__POSTGRES__CREDENTIALS "
                          "(or the concord_warehouse connection in Airflow)")
    if isinstance(value, str):
        creds.parse_native_representation(value)
    else:
        creds.update(dict(value))
    query = creds.query if isinstance(creds.query, dict) else {}
    return DbtTarget.postgres(schema, host=str(creds.host), port=creds.port, user=str(creds.username),
                              password=creds.password, database=str(creds.database), sslmode=query.get("sslmode"))


def tables_in(destination: str, dataset: str, duckdb_path: str | None, pipelines_dir: str) -> set[str] | None:
    """Tables in `dataset` of a destination no pipeline object is at hand for (Airflow's build task)."""
    import dlt

    dest: Any = dlt.destinations.duckdb(credentials=duckdb_path) if destination == "duckdb" else destination
    pipeline = dlt.pipeline(pipeline_name="concord_dbt_probe", destination=dest, dataset_name=dataset,
                            pipelines_dir=pipelines_dir)
    return existing_tables(pipeline)


def target_for(destination: str | None, pipeline: Any, dataset: str, duckdb_path: str | None) -> DbtTarget | None:
    """The dbt target for a dlt destination, or None where the connector does not build (see README)."""
    if destination == "duckdb" and duckdb_path:
        return DbtTarget.duckdb(duckdb_path, dataset)
    if destination == "postgres":
        creds = pipeline.destination_client().config.credentials
        query = getattr(creds, "query", None) or {}
        return DbtTarget.postgres(dataset, host=str(creds.host), port=creds.port, user=str(creds.username),
                                  password=creds.password, database=str(creds.database),
                                  sslmode=query.get("sslmode") if isinstance(query, dict) else None)
    return None


def build_after_load(pipeline: Any, destination: str | None, dataset: str, duckdb_path: str | None,
                     existing: set[str] | None) -> DbtResult | None:
    """The connector's post-load build: Concord models only, skipping those whose tables are not loaded."""
    from concord_pipelines.concord import settings

    target = target_for(destination, pipeline, dataset, duckdb_path)
    if target is None:
        return None
    excludes = missing_table_excludes(existing, settings.ALL_TABLE_SPECS) if existing is not None else []
    return run_dbt(target, "build", exclude=excludes, variables={"cdr_enabled": False})


def check(result: DbtResult | None, fail_on_test: bool) -> None:
    """Raise DbtTestsFailed when asked to and dbt did not pass; the load itself is already committed."""
    if result is None or result.ok or not fail_on_test:
        return
    raise DbtTestsFailed(
        f"{result.summary_line()}; the data is loaded and stays loaded: fix the rows or the test, then rerun "
        "(or drop --fail-on-dbt-test to only report it)"
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m concord_pipelines.dbt_runner",
                                     description="run the bundled dbt project against a DuckDB file")
    parser.add_argument("command", nargs="*", default=["build"], help="dbt command (default build)")
    parser.add_argument("--duckdb-path", default="concord.duckdb")
    parser.add_argument("--dataset", help="dataset (schema) of the tables (default concord_data, with --cdr cdr_metrics)")
    parser.add_argument("--cdr", action="store_true", help="build the CDR models instead of the Concord ones")
    args = parser.parse_args(argv)
    if not Path(args.duckdb_path).exists():
        print(f"error: no DuckDB file at {args.duckdb_path}: run the export first or pass --duckdb-path", file=sys.stderr)
        return ConfigError.exit_code
    dataset = args.dataset or ("cdr_metrics" if args.cdr else "concord_data")
    variables = {"concord_enabled": False, "cdr_schema": dataset} if args.cdr else {"cdr_enabled": False}
    result = run_dbt(DbtTarget.duckdb(args.duckdb_path, dataset), " ".join(args.command), variables=variables)
    print(result.summary_line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
