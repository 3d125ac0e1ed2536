"""`concord-pipeline` command line: one subcommand per job, each registered by its own module."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from pipelines import __version__
from pipelines.errors import PipelineError
from pipelines.logs import quiet_arrow_hint_warnings

DESCRIPTION = """\
Export the Concord Privacy API (consent events, tracker scans, projects, consent types,
compliance requests, usage metrics) and the CDR Get Metrics admin endpoint into DuckDB or any
dlt destination, incrementally by date.

Settings come from flags, then dlt's env vars (SOURCES__CONCORD__API_KEY, ...), then
.dlt/secrets.toml and .dlt/config.toml in the working directory.
"""

EPILOG = """\
examples:
  concord-pipeline demo                      # sandbox + export into ./concord.duckdb
  concord-pipeline run --org ORG_ID          # real export (API key from env or .dlt/secrets.toml)
  concord-pipeline sandbox --port 8765       # serve the local Concord sandbox until Ctrl-C
  concord-pipeline cdr-metrics --holder bank --base-url https://... --timezone Australia/Sydney
"""


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    # Imported lazily so `--help` stays fast and a broken optional piece cannot break the others.
    from pipelines.cdr_metrics.cli import register as register_cdr
    from pipelines.concord.cli import register as register_concord
    from pipelines.sandbox.cli import register as register_sandbox

    return [register_concord, register_sandbox, register_cdr]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concord-pipeline",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_arrow_hint_warnings()
    try:
        return int(args.handler(args) or 0)
    except PipelineError as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; loaded data and state are as the last completed run left them", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
