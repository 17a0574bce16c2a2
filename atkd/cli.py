"""The one command-line entry point, `atkd <command> ...`, that every workflow rule calls.

Each stage module exposes `register_cli(subparsers)`, which adds its sub-command(s) and sets
`func` on the parser to a callable taking the parsed `argparse.Namespace`. Stages stay importable
and runnable on their own; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands, in the order they appear in `atkd --help`, with the commands each
# registers. A command imports only its own module (torch, transformers and lm-eval are slow to import
# and every workflow job pays for them); tests/test_cli.py checks this map against the modules.
COMMANDS: dict[str, tuple[str, ...]] = {
    "atkd.data.world": ("world", "chance"),
    "atkd.data.real": ("data",),
    "atkd.models.cli": ("tokenizer", "init-model", "export-model", "ladder"),
    "atkd.models.info": ("model-table",),
    "atkd.train.loop": ("train", "teacher-cache"),
    "atkd.train.generate": ("generate",),
    "atkd.eval.harness": ("evaluate",),
    "atkd.eval.llm_judge": ("judge",),
    "atkd.probes": ("probe", "landscape"),
    "atkd.report": ("collect", "curves", "report"),
}


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser with the sub-commands of `modules` (default: every stage)."""
    parser = argparse.ArgumentParser(prog="atkd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMANDS if modules is None else modules:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    owner = next((m for m, names in COMMANDS.items() if argv and argv[0] in names), None)
    args = build_parser(None if owner is None else [owner]).parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
