"""`concord-pipeline run` and `concord-pipeline demo`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pipelines.concord import settings
from pipelines.concord.runner import RunOptions, RunResult, run_export
from pipelines.duckdb_compat import qualified_dataset
from pipelines.report import format_table

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
FROM {dataset}.consent_events
GROUP BY 1 ORDER BY events DESC LIMIT 5"""


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="export the Concord API into DuckDB or any dlt destination", description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(run)
    run.set_defaults(handler=run_command)

    demo = subparsers.add_parser(
        "demo",
        help="start a local sandbox API, export it into ./concord.duckdb and show what loaded",
        description="Start the Concord sandbox on 127.0.0.1 in the background, run the real export into a "
        "local DuckDB file, print the summary and an example SQL query, then stop the sandbox.",
    )
    demo.add_argument("--duckdb-path", default="concord.duckdb", help="DuckDB file to write (default: ./concord.duckdb)")
    demo.add_argument("--events", type=int, default=20_000, help="consent events in the sandbox (default 20000)")
    demo.add_argument("--days", type=int, default=30, help="days of history in the sandbox (default 30)")
    demo.add_argument("--seed", type=int, default=42, help="sandbox data seed (default 42)")
    demo.add_argument("--dataset", default=settings.DEFAULT_DATASET, help="dataset (schema) name (default concord)")
    demo.set_defaults(handler=demo_command)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", dest="organization_id", help="organization id (UUID); or SOURCES__CONCORD__ORGANIZATION_ID")
    parser.add_argument("--base-url", help=f"API base URL (default {settings.DEFAULT_BASE_URL})")
    parser.add_argument("--resources", help=RESOURCES_HELP)
    parser.add_argument("--project", dest="project_ids", action="append", help="limit to this project id (repeatable; default: all projects)")
    parser.add_argument("--destination", help="any dlt destination name: duckdb (default), postgres, bigquery, snowflake, motherduck, filesystem, ...")
    parser.add_argument("--duckdb-path", help="DuckDB file for --destination duckdb (default ./concord.duckdb)")
    parser.add_argument("--dataset", help="dataset / schema name (default concord)")
    parser.add_argument("--start-date", help="where a first run begins, ISO 8601 (default 2015-01-01; usage metrics: last 90 days)")
    parser.add_argument("--full-refresh", action="store_true", help="ignore cursors, re-read everything and merge (nothing is dropped)")
    parser.add_argument("--pipeline-name", help="dlt pipeline name: state and lock are per name (default concord)")
    parser.add_argument("--pipelines-dir", help="where dlt keeps pipeline state (default ~/.dlt/pipelines)")
    parser.add_argument("--lookback-seconds", type=int, help=f"re-read this much before the cursor (default {settings.DEFAULT_LOOKBACK_SECONDS})")
    parser.add_argument("--lag-seconds", type=int, help=f"leave out the newest N seconds, still in flight (default {settings.DEFAULT_LAG_SECONDS})")
    parser.add_argument("--concurrency", type=int, help=f"concurrent page requests (default {settings.DEFAULT_CONCURRENCY})")
    parser.add_argument("--pii", choices=["keep", "hash", "drop"], help="direct identifiers: keep (default), hash (HMAC-SHA256, needs pii_salt) or drop")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
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
    result = run_export(options_from_args(args))
    print(result.summary())
    if result.fail_on_dbt_test:
        from pipelines.dbt_runner import check

        check(result.dbt, fail_on_test=True)  # after the summary: the load's numbers are still shown
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from pipelines.sandbox import SandboxConfig, SandboxServer

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
    import duckdb

    assert result.duckdb_path is not None
    sql = DEMO_SQL.format(dataset=qualified_dataset(result.duckdb_path, result.dataset))
    with duckdb.connect(result.duckdb_path, read_only=True) as con:
        cursor = con.execute(sql)
        headers = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    print(f"\nexample query (duckdb {Path(result.duckdb_path).name}):\n{sql}\n")
    print(format_table(headers, rows))
