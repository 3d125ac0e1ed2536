"""`concord-pipeline` command line: one subcommand per job, each registered by its own module."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from concord_pipelines import __version__
from concord_pipelines.errors import Interrupted, PipelineError
from concord_pipelines.logs import one_line_failures, quiet_arrow_hint_warnings

# After SIGINT/SIGTERM the run unwinds (closing DuckDB, releasing locks); a worker thread stuck in a
# stalled request must not keep the process alive past this, nor a second Ctrl-C be needed.
INTERRUPT_GRACE_SECONDS = 5.0

DESCRIPTION = """\
Export the Concord Privacy API (consent events, tracker scans, projects, consent types,
compliance requests, usage metrics) and the CDR Get Metrics admin endpoint into DuckDB or any
dlt destination, incrementally by date.

Settings come from flags, then dlt's env vars (SOURCES__CONCORD__API_KEY, ...), then
.dlt/secrets.toml and .dlt/config.toml in the working directory.
"""

EPILOG = """\
examples:
  concord-pipeline demo                      # sandbox + export into ./concord-demo.duckdb
  concord-pipeline run --org ORG_ID          # real export (API key from env or .dlt/secrets.toml)
  concord-pipeline sql "SELECT count(*) FROM consent_events"   # query ./concord.duckdb
  concord-pipeline sandbox --port 8765       # serve the local Concord sandbox until Ctrl-C
  concord-pipeline cdr-metrics --holder bank --base-url https://... --timezone Australia/Sydney
"""


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    # Imported lazily so `--help` stays fast and a broken optional piece cannot break the others.
    from concord_pipelines.cdr_metrics.cli import register as register_cdr
    from concord_pipelines.concord.cli import register as register_concord
    from concord_pipelines.sandbox.cli import register as register_sandbox

    return [register_concord, register_sandbox, register_cdr]


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one `error:` line (exit 2) like every other failure, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    if not args.debug:
        one_line_failures()
    with signals_as_interrupts() as received:
        try:
            return int(args.handler(args) or 0)
        except PipelineError as err:
            if args.debug:
                traceback.print_exc()
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        except (Interrupted, KeyboardInterrupt) as err:
            interrupted = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
            if received:  # a real signal: leave now, without joining threads stuck in a stalled request
                exit_now(interrupted)
            print(f"error: {interrupted}", file=sys.stderr)
            return interrupted.exit_code


@contextmanager
def signals_as_interrupts() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread; yields the signals received so far.

    The first signal unwinds the run (exit 130 or 143) and arms a watchdog that exits after
    INTERRUPT_GRACE_SECONDS whatever the run is blocked on; a second signal exits at once.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be installed from the main thread (e.g. in-process callers)
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        interrupted = Interrupted(signum)
        if len(received) > 1:
            exit_now(interrupted)
        watchdog = threading.Timer(INTERRUPT_GRACE_SECONDS, exit_now, args=(interrupted,))
        watchdog.daemon = True
        watchdog.start()
        raise interrupted

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_now(interrupted: Interrupted) -> NoReturn:
    """Print the one line and end the process without waiting for worker threads (the lock is the OS's)."""
    try:
        sys.stdout.flush()
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h\n")  # the live progress display hides the cursor until it stops
        print(f"error: {interrupted}", file=sys.stderr, flush=True)
    finally:
        os._exit(interrupted.exit_code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
