"""`atkd model-table`: the tidy list of the study's models (model, role, params, path).

Parameter counts are read from the checkpoint's safetensors headers, so even a multi-billion
parameter model is counted without loading its weights.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

from safetensors import safe_open

from atkd.fsutil import atomic_write_text


def count_checkpoint_params(path: str | Path) -> int:
    """Number of parameters stored in a Hugging Face checkpoint directory (all *.safetensors shards)."""
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors files (is this a checkpoint directory?)")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def model_table(entries: list[tuple[str, str, str]], out: Path) -> list[dict]:
    """Write `out` with one row per (name, role, checkpoint path) and return the rows."""
    rows = [{"model": n, "role": r, "params": count_checkpoint_params(p), "path": p} for n, r, p in entries]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["model", "role", "params", "path"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return rows


def _entry(text: str) -> tuple[str, str, str]:
    parts = text.split("=", 2)
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected NAME=ROLE=CHECKPOINT_DIR, got {text!r}")
    return parts[0], parts[1], parts[2]


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd model-table`."""
    line = "tidy table of models and their parameter counts"
    p = subparsers.add_parser(
        "model-table", help=line, description=line + " (models.csv), read from checkpoints."
    )
    p.add_argument(
        "entries", nargs="+", type=_entry, metavar="NAME=ROLE=CHECKPOINT_DIR", help="one model per entry"
    )
    p.add_argument("--out", type=Path, required=True, help="CSV to write")

    def run(args: argparse.Namespace) -> int:
        for row in model_table(args.entries, args.out):
            print(f"{row['model']:<16} {row['role']:<8} {row['params']:>12,}")
        return 0

    p.set_defaults(func=run)
