"""Placeholder: replaced by the real subcommand."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    pass
