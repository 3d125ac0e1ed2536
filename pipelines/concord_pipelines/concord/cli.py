"""`concord-pipeline run` and `concord-pipeline demo`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from concord_pipelines.concord import settings
from concord_pipelines.concord.runner import RunOptions, RunResult, duckdb_open_error, run_export
from concord_pipelines.errors import ConfigError
from concord_pipelines.report import format_table

RUN_HELP = """\
Export the Concord Privacy API into a dlt destination (DuckDB by default), incrementally.

Each resource reads the window [cursor - lookback, now - lag) sorted by dateUpdated and merges
rows on their keys, so reruns never duplicate. The cursor advances only when the load succeeded.

Settings not given as flags come from dlt's env vars (SOURCES__CONCORD__API_KEY,
SOURCES__CONCORD__ORGANIZATION_ID, SOURCES__CONCORD__BASE_URL, ...) or from
.dlt/secrets.toml / .dlt/config.toml ([sources.concord]). The API key is never a flag, so it
does not show up in shell history or process lists.
"""

RESOURCES_HELP = "comma-separated resources: " + ", ".join(settings.RESOURCE_TABLES) + " (default: all)"

DEMO_SQL = """\
SELECT session__geography AS geography,
       count(*) AS events,
       round(100.0 * sum(CASE WHEN consent_state = 'accepted' THEN 1 ELSE 0 END) / count(*), 1) AS accepted_pct
FROM consent_events
GROUP BY 1 ORDER BY events DESC LIMIT 5"""

# The demo never writes the file or dataset `run` uses: its sandbox organization must not mix with a real one.
DEMO_DUCKDB_PATH = "concord-demo.duckdb"
DEMO_DATASET = "concord_demo"

SQL_HELP = """\
Run one SQL query against the DuckDB file an export wrote and print the result as a table.

Table names need no schema: the query runs with the dataset as the current schema, e.g.
  concord-pipeline sql "SELECT consent_state, count(*) FROM consent_events GROUP BY 1"
  concord-pipeline sql --duckdb-path concord-demo.duckdb --dataset concord_demo "SHOW TABLES"
The file is opened read-only; nothing is changed.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="export the Concord API into DuckDB or any dlt destination", description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(run)
    add_interval_arguments(run)
    run.set_defaults(handler=run_command)
    register_verify(subparsers)

    demo = subparsers.add_parser(
        "demo",
        help=f"start a local sandbox API, export it into ./{DEMO_DUCKDB_PATH} and show what loaded",
        description="Start the Concord sandbox on 127.0.0.1 in the background, run the real export into its own "
        f"DuckDB file ({DEMO_DUCKDB_PATH}, dataset {DEMO_DATASET}; never the {settings.DEFAULT_DUCKDB_PATH} of `run`), print the "
        "summary and an example SQL query, then stop the sandbox.",
    )
    demo.add_argument("--duckdb-path", default=DEMO_DUCKDB_PATH, help=f"DuckDB file to write (default: ./{DEMO_DUCKDB_PATH})")
    demo.add_argument("--events", type=int, default=20_000, help="consent events in the sandbox (default 20000)")
    demo.add_argument("--days", type=int, default=30, help="days of history in the sandbox (default 30)")
    demo.add_argument("--seed", type=int, default=42, help="sandbox data seed (default 42)")
    demo.add_argument("--dataset", default=DEMO_DATASET, help=f"dataset (schema) name (default {DEMO_DATASET})")
    demo.set_defaults(handler=demo_command)

    sql = subparsers.add_parser(
        "sql", help="query the exported DuckDB file and print a table", description=SQL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.add_argument("query", help="one SQL statement")
    sql.add_argument("--duckdb-path", default=settings.DEFAULT_DUCKDB_PATH,
                     help=f"DuckDB file (default ./{settings.DEFAULT_DUCKDB_PATH})")
    sql.add_argument("--dataset", default=settings.DEFAULT_DATASET,
                     help=f"schema the table names refer to (default {settings.DEFAULT_DATASET})")
    sql.add_argument("--max-rows", type=int, default=1000, help="print at most this many rows (default 1000)")
    sql.set_defaults(handler=sql_command)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", dest="organization_id", help="organization id (UUID); or SOURCES__CONCORD__ORGANIZATION_ID")
    parser.add_argument("--base-url", help=f"API base URL (default {settings.DEFAULT_BASE_URL})")
    parser.add_argument("--resources", help=RESOURCES_HELP)
    parser.add_argument("--project", dest="project_ids", action="append", help="limit to this project id (repeatable; default: all projects)")
    parser.add_argument("--destination", help="any dlt destination name: duckdb (default), postgres, bigquery, snowflake, motherduck, filesystem, ...")
    parser.add_argument("--duckdb-path", help=f"DuckDB file for --destination duckdb (default ./{settings.DEFAULT_DUCKDB_PATH})")
    parser.add_argument("--dataset", help=f"dataset / schema name (default {settings.DEFAULT_DATASET}; in DuckDB it must "
                        "differ from the file's name)")
    parser.add_argument("--table-format", choices=settings.TABLE_FORMATS,
                        help=f"--destination filesystem: the table format, which merges (default {settings.DEFAULT_TABLE_FORMAT}; "
                        "or SOURCES__CONCORD__TABLE_FORMAT)")
    parser.add_argument("--start-date", help="where a first run begins, ISO 8601 (default 2015-01-01; usage metrics: last 90 days)")
    parser.add_argument("--full-refresh", action="store_true", help="ignore cursors, re-read everything and merge (nothing is dropped)")
    parser.add_argument("--pipeline-name", help="dlt pipeline name: state and lock are per name (default concord)")
    parser.add_argument("--pipelines-dir", help="where dlt keeps pipeline state and the run lock (default: dlt's, i.e. $DLT_DATA_DIR/pipelines, ~/.dlt/pipelines, or /var/dlt/pipelines as root)")
    parser.add_argument("--lookback-seconds", type=int, help=f"re-read this much before the cursor (default {settings.DEFAULT_LOOKBACK_SECONDS})")
    parser.add_argument("--lag-seconds", type=int, help=f"leave out the newest N seconds, still in flight (default {settings.DEFAULT_LAG_SECONDS})")
    parser.add_argument("--concurrency", type=int, help=f"concurrent page requests (default {settings.DEFAULT_CONCURRENCY})")
    parser.add_argument("--pii", choices=["keep", "hash", "drop"], help="direct identifiers: keep (default), hash (HMAC-SHA256, needs pii_salt) or drop")
    parser.add_argument("--quiet", action="store_true", help="no progress (a live display on a terminal, plain lines every 10 s otherwise)")
    parser.add_argument("--no-dbt", dest="dbt", action="store_false", default=None,
                        help="do not build the dbt models after the load (or SOURCES__CONCORD__DBT=false)")
    parser.add_argument("--fail-on-dbt-test", action="store_true", default=None,
                        help="exit 5 when a dbt test fails after the load (the data stays loaded; "
                        "or SOURCES__CONCORD__FAIL_ON_DBT_TEST=true)")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    resources = [r for r in args.resources.split(",") if r.strip()] if args.resources else None
    return RunOptions(
        organization_id=args.organization_id,
        base_url=args.base_url,
        resources=resources,
        destination=args.destination,
        duckdb_path=args.duckdb_path,
        dataset=args.dataset,
        table_format=args.table_format,
        start_date=args.start_date,
        full_refresh=args.full_refresh,
        pipeline_name=args.pipeline_name,
        pipelines_dir=args.pipelines_dir,
        project_ids=args.project_ids,
        pii=args.pii,
        lookback_seconds=args.lookback_seconds,
        lag_seconds=args.lag_seconds,
        concurrency=args.concurrency,
        progress=not args.quiet,
        dbt=args.dbt,
        fail_on_dbt_test=args.fail_on_dbt_test,
    )


def run_command(args: argparse.Namespace) -> int:
    print("exporting the Concord API ...", file=sys.stderr, flush=True)
    result = run_export(with_interval(options_from_args(args), args))
    print(result.summary())
    if result.fail_on_dbt_test:
        from concord_pipelines.dbt_runner import check

        check(result.dbt, fail_on_test=True)  # after the summary: the load's numbers are still shown
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from concord_pipelines.sandbox import SandboxConfig, SandboxServer

    config = SandboxConfig(seed=args.seed, events=args.events, days=args.days)
    print(f"starting the Concord sandbox ({args.events:,} consent events over {args.days} days) ...", file=sys.stderr, flush=True)
    with SandboxServer(config) as sandbox, tempfile.TemporaryDirectory(prefix="concord-demo-") as state_dir:
        print(f"sandbox at {sandbox.base_url} (organization {sandbox.org_id})", file=sys.stderr, flush=True)
        result = run_export(
            RunOptions(
                organization_id=sandbox.org_id,
                api_key=sandbox.api_key,
                base_url=sandbox.base_url,
                duckdb_path=args.duckdb_path,
                dataset=args.dataset,
                pipeline_name="concord_demo",
                pipelines_dir=state_dir,
                lag_seconds=0,
            )
        )
    print(result.summary())
    print_example_query(result)
    return 0


def print_example_query(result: RunResult) -> None:
    assert result.duckdb_path is not None
    headers, rows = query(result.duckdb_path, result.dataset, DEMO_SQL)
    print(f"\nexample query ({Path(result.duckdb_path).name}, dataset {result.dataset}):\n{DEMO_SQL}\n")
    print(format_table(headers, rows))
    where = f"--duckdb-path {result.duckdb_path} --dataset {result.dataset}"
    print(
        f'\nnext steps: query it with `concord-pipeline sql {where} "SHOW TABLES"`; export your organization with '
        f"`SOURCES__CONCORD__API_KEY=... concord-pipeline run --org YOUR_ORG_ID` (into ./{settings.DEFAULT_DUCKDB_PATH}, "
        f"dataset {settings.DEFAULT_DATASET})"
    )


def sql_command(args: argparse.Namespace) -> int:
    path = Path(args.duckdb_path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"no DuckDB file at {path}: run `concord-pipeline run` (or `demo`) first, or pass --duckdb-path"
        )
    headers, rows = query(str(path), args.dataset, args.query, args.max_rows + 1)
    print(format_table(headers, rows[: args.max_rows]))
    if len(rows) > args.max_rows:
        print(f"(first {args.max_rows:,} rows; --max-rows shows more)")
    return 0


def query(duckdb_path: str, dataset: str, sql: str, max_rows: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `sql` read-only with `dataset` as the current schema; errors as one ConfigError line."""
    import duckdb

    try:
        con = duckdb.connect(duckdb_path, read_only=True)
    except duckdb.Error as err:
        raise duckdb_open_error(duckdb_path, err) from None
    with con:
        try:
            # catalog-qualified: a file named like its dataset (e.g. an old concord.duckdb with schema concord) still works
            catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
            con.execute(f'USE "{_ident(catalog)}"."{_ident(dataset)}"')
        except duckdb.Error:
            raise ConfigError(f"dataset {dataset!r} is not in {duckdb_path}: pass the --dataset the export used") from None
        try:
            cursor = con.execute(sql)
            headers = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(max_rows) if max_rows is not None else cursor.fetchall()
        except duckdb.Error as err:
            raise ConfigError(f"the query failed: {_first_line(err)}") from None
    return headers, rows


def _ident(name: str) -> str:
    return name.replace('"', '""')


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# -- interval mode and `verify` (kept apart from the run flags above) ------------------------------

VERIFY_HELP = """\
Compare, per UTC day, the API's row count of each date-windowed resource (consent_events,
compliance_requests, compliance_request_events) with the warehouse's rows whose date_updated falls
in that day, up to the resource's cursor; print the days that differ.

--repair re-reads exactly those days (interval mode: merged, cursors untouched), then handles the
rows of those days the API no longer serves: --deletes soft (default) sets _concord_deleted_at,
--deletes hard deletes them (an erased record leaves the warehouse).

Exit codes: 0 every day agrees (after the repair, with --repair); 5 some days differ;
2 configuration, 3 API, 4 another run holds the pipeline or DuckDB file.
"""


def add_interval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", dest="interval_start", metavar="T1",
                        help="interval mode: export exactly [T1, T2) of consent_events, compliance_requests and "
                        "compliance_request_events and merge it, without moving their cursors (a repair or backfill); "
                        "ISO 8601, UTC unless an offset is given; needs --end")
    parser.add_argument("--end", dest="interval_end", metavar="T2", help="end of the interval (exclusive, not in the future)")


def with_interval(options: RunOptions, args: argparse.Namespace) -> RunOptions:
    return replace(options, interval_start=getattr(args, "interval_start", None), interval_end=getattr(args, "interval_end", None))


def register_verify(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser(
        "verify", help="compare the API's daily row counts with the warehouse; --repair fixes the days that differ",
        description=VERIFY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(verify)
    verify.add_argument("--since", metavar="DATE", help="first UTC day to check, ISO 8601 (default: 30 days ago)")
    verify.add_argument("--repair", action="store_true", help="re-read the differing days and mark or delete rows the API no longer serves")
    verify.add_argument("--deletes", choices=["soft", "hard"], default="soft",
                        help="rows the API no longer serves: soft sets _concord_deleted_at (default), hard deletes them")
    verify.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    from concord_pipelines.concord.verify import VerifyOptions, verify

    print("verifying the warehouse against the Concord API ...", file=sys.stderr, flush=True)
    options = replace(options_from_args(args), progress=False)
    result = verify(VerifyOptions(run=options, since=args.since, repair=args.repair, deletes=args.deletes))
    print(result.summary())
    return result.exit_code
