"""Wall time of the partitioned backfill at 1, 2 and 4 partitions at once, against a slow API.

    python -m uv run python benchmarks/backfill.py [--events 60000] [--latency-ms 100] [--partitions 8]
        [--parallel 1,2,4] [--concurrency 1] [--pg-url postgresql://...]

What `concord_backfill` maps over its workers is `partitions.export_partition`; this runs that same function
in 1, 2 and 4 worker processes (a process pool standing in for Airflow's LocalExecutor slots: no
scheduler, so the figures are the work itself, not Airflow's task start-up) into PostgreSQL, each setting
into its own dataset. The sandbox answers every request after `--latency-ms`, and each partition reads
with `--concurrency` requests in flight (default 1, so the API's latency, not the 2-core worker, is the
bottleneck, as for an API that serves one client slowly). Without --pg-url a throwaway PostgreSQL server is
started as the tests do. Each setting is checked: every row the API counts is in the warehouse, once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "pipelines"), str(ROOT)]

from concord_pipelines.airflow import concord_tasks as ct  # noqa: E402
from concord_pipelines.airflow import partitions  # noqa: E402
from concord_pipelines.sandbox import SandboxConfig, SandboxProcess  # noqa: E402

NOW = datetime(2026, 11, 20, tzinfo=UTC)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.warehouse.conftest import postgres_server  # the tests' throwaway server

    with contextlib.contextmanager(postgres_server.__wrapped__)() as server:
        yield server.url


def settings(dataset: str, concurrency: int, work: Path) -> ct.DagSettings:
    os.environ.update(CONCORD_DESTINATION="postgres", CONCORD_DATASET=dataset, CONCORD_CONCURRENCY=str(concurrency),
                      CONCORD_PIPELINES_DIR=str(work / dataset))
    return ct.load_settings(None)


def _one(args: tuple[partitions.Partition, ct.DagSettings, ct.ApiCredentials]) -> dict:
    return partitions.export_partition(*args, warehouse=None)


def run(parallel: int, parts: list[partitions.Partition], s: ct.DagSettings, api: ct.ApiCredentials) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(_one, [(p, s, api) for p in parts]))
    return time.perf_counter() - started


def rows_in(url: str, dataset: str) -> int:
    import psycopg2

    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        total = 0
        for table in partitions.WINDOWED:
            cur.execute(f'SELECT count(*), count(DISTINCT {"id" if table != "compliance_request_events" else "(compliance_request_id, event, date_created)"}) FROM "{dataset}"."{table}"')
            count, distinct = cur.fetchone()
            assert count == distinct, f"{dataset}.{table}: duplicate rows"
            total += count
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--parallel", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL"))
    args = parser.parse_args()
    config = SandboxConfig(seed=7, events=args.events, days=30, now=NOW.isoformat(), profiles=f"latency:{args.latency_ms}")
    with SandboxProcess(config) as sb, postgres(args.pg_url) as url, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(DESTINATION__POSTGRES__CREDENTIALS=url, RUNTIME__DLTHUB_TELEMETRY="false",
                          CONCORD_LAG_SECONDS="0")
        api = ct.ApiCredentials(sb.org_id, sb.api_key, sb.base_url)
        started = time.perf_counter()
        parts = partitions.plan(api, NOW - timedelta(days=30), NOW, args.partitions)
        print(f"{args.events:,} events over 30 days, {args.latency_ms} ms per request, {len(parts)} partitions "
              f"of {[p.rows for p in parts]} rows (planned in {time.perf_counter() - started:.1f} s), "
              f"{args.concurrency} request(s) in flight per partition")
        base = None
        for parallel in [int(n) for n in args.parallel.split(",")]:
            s = settings(f"bench_p{parallel}", args.concurrency, Path(tmp))
            wall = run(parallel, parts, s, api)
            loaded = rows_in(url, s.dataset)
            partitions.drop_staging(s, None, len(parts))
            base = base or wall
            print(f"parallel {parallel}: {wall:6.1f} s  speed-up {base / wall:4.2f}x  rows {loaded:,}", flush=True)
            assert loaded == sum(p.rows or 0 for p in parts), f"loaded {loaded} rows, the API counts {sum(p.rows or 0 for p in parts)}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
