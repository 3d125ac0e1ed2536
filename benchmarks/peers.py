"""The peers `throughput.py` compares the connector with; each run is one process (for its own peak RSS).

    SOURCES__CONCORD__API_KEY=... python benchmarks/peers.py raw|rest_api|rest_api_parquet \
        --base-url URL --org ORG --duckdb-path FILE --pipelines-dir DIR [--max-events N]

- `raw`: what a hand-written script does - sequential httpx paging of 1,000, orjson, every item kept
  in memory, one DuckDB insert through pyarrow. No incremental state, no merge, no schema.
- `rest_api`: dlt's declarative `rest_api` source with dlt's defaults (jsonl loader files,
  write disposition append); only the endpoint, auth and offset paging are configured.
- `rest_api_parquet`: the same with parquet loader files (`loader_file_format="parquet"`).

All read consent events the way the connector does (sort=dateUpdated asc, pages of 1,000) and print
one JSON line `{"events": N, "pages": P}` at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

PAGE = 1000
QUERY = {"sort": "dateUpdated", "order": "asc"}


def raw(args: argparse.Namespace, api_key: str) -> dict[str, int]:
    import duckdb
    import httpx
    import orjson
    import pyarrow as pa

    path = f"/organizations/{args.org}/consent-events"
    items: list[dict] = []
    offset = pages = 0
    with httpx.Client(base_url=args.base_url, headers={"x-api-key": api_key}, timeout=60) as client:
        while True:
            response = client.get(path, params={**QUERY, "offset": offset, "limit": PAGE})
            response.raise_for_status()
            body = orjson.loads(response.content)
            pages += 1
            items.extend(body["items"])
            offset += len(body["items"])
            if not body["items"] or offset >= body["total"] or (args.max_events and offset >= args.max_events):
                break
    arrow_items = pa.Table.from_pylist(items)
    del items
    with duckdb.connect(args.duckdb_path) as con:
        con.register("arrow_items", arrow_items)
        con.execute("CREATE OR REPLACE TABLE consent_events AS SELECT * FROM arrow_items")
        events = con.execute("SELECT count(*) FROM consent_events").fetchone()[0]
    return {"events": int(events), "pages": pages}


def rest_api(args: argparse.Namespace, api_key: str, parquet: bool) -> dict[str, int]:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    paginator = {
        "type": "offset",
        "limit": PAGE,
        "offset_param": "offset",
        "limit_param": "limit",
        "total_path": "total",
    }
    if args.max_events:
        paginator["maximum_offset"] = args.max_events
    source = rest_api_source(
        {
            "client": {
                "base_url": args.base_url.rstrip("/") + "/",
                "auth": {"type": "api_key", "name": "x-api-key", "api_key": api_key, "location": "header"},
                "paginator": paginator,
            },
            "resources": [
                {
                    "name": "consent_events",
                    "primary_key": "id",
                    "endpoint": {"path": f"organizations/{args.org}/consent-events", "params": QUERY, "data_selector": "items"},
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="peer_rest_api",
        destination=dlt.destinations.duckdb(credentials=args.duckdb_path),
        dataset_name="concord",
        pipelines_dir=args.pipelines_dir,
    )
    pipeline.run(source, loader_file_format="parquet" if parquet else None)
    with pipeline.sql_client() as client:
        events = client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name('consent_events')}")[0][0]
    pages = -(-int(events) // PAGE)
    return {"events": int(events), "pages": pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=["raw", "rest_api", "rest_api_parquet"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--org", required=True)
    parser.add_argument("--duckdb-path", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--max-events", type=int, default=0, help="stop after about this many events (0: all)")
    args = parser.parse_args(argv)
    api_key = os.environ["SOURCES__CONCORD__API_KEY"]
    result = raw(args, api_key) if args.peer == "raw" else rest_api(args, api_key, parquet=args.peer == "rest_api_parquet")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
