"""`python -m pipelines.models [--destination duckdb] [--duckdb-path concord.duckdb] [--dataset concord]`

Creates (or replaces) the versioned Concord views in the destination and prints what it did.
PostgreSQL and other destinations take credentials from dlt's config (DESTINATION__<NAME>__CREDENTIALS).
"""

from __future__ import annotations

import argparse
import sys

from pipelines.models import DEFAULT_DATASET, apply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.models", description=__doc__.splitlines()[0])
    parser.add_argument("--destination", default="duckdb")
    parser.add_argument("--duckdb-path", default=None)
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    args = parser.parse_args(argv)
    result = apply(destination=args.destination, duckdb_path=args.duckdb_path, dataset=args.dataset)
    for name in result["created"]:
        print(f"created view {args.dataset}.{name}")
    for name in result["skipped"]:
        print(f"skipped view {args.dataset}.{name} (its tables are not loaded yet)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
