"""`python -m pipelines.sandbox [options]` = `concord-pipeline sandbox [options]`."""

import argparse
import sys

from pipelines.sandbox.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sandbox")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
