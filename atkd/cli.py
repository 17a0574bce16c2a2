"""The one command-line entry point, `atkd <command> ...`, that every workflow rule calls.

Each stage module exposes `register_cli(subparsers)`, which adds its sub-command(s) and sets
`func` on the parser to a callable taking the parsed `argparse.Namespace`. Stages stay importable
and runnable on their own; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands, in the order they appear in `atkd --help`.
COMMAND_MODULES: list[str] = [
    "atkd.data.world",
    "atkd.data.real",
    "atkd.models.cli",
    "atkd.models.info",
    "atkd.train.loop",
    "atkd.train.generate",
    "atkd.eval.harness",
    "atkd.eval.llm_judge",
    "atkd.probes",
    "atkd.report",
]


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every stage's sub-commands."""
    parser = argparse.ArgumentParser(prog="atkd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
