"""`python -m concord_pipelines.sandbox [options]` = `concord-pipeline sandbox [options]`.

A separate entry point because `concord_pipelines.cli` imports every subcommand (dlt and friends take seconds);
the sandbox child processes used by tests and benchmarks start faster without them.
"""

import argparse
import sys

from concord_pipelines.errors import PipelineError
from concord_pipelines.sandbox.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord_pipelines.sandbox")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args))
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
