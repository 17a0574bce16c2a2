"""Split an instruction set (JSON lines) into a training part and a held-out test part, reproducibly.

config/smollm2-cpu.yaml distils on part of DollyEval and evaluates on the rest (with all of SelfInst and
Vicuna), so that nothing a student is evaluated on was trained on. The committed files are this
script's output; tests/test_real_data.py checks that they still are.

    python scripts/split_instruct.py data/instruct-eval/dolly.jsonl --test 100 --seed 0 \
        --out data/smollm2-cpu/dolly
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from atkd.data.jsonl import dumps_jsonl, read_jsonl
from atkd.fsutil import atomic_write_text


def split(path: str | Path, test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, test) records with `instruction`, `input`, `output` only: a seeded shuffle, the last `test`
    records held out, each part in file order."""
    fields = ("instruction", "input", "output")
    records = [{f: r.get(f) or "" for f in fields} for r in read_jsonl(path, optional={"input": str})]
    if not 0 < test < len(records):
        raise ValueError(f"{path}: --test {test} must be between 1 and {len(records) - 1}")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[-test:])
    train = [r for i, r in enumerate(records) if i not in held]
    return train, [r for i, r in enumerate(records) if i in held]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="instruction records (.jsonl)")
    ap.add_argument("--test", type=int, required=True, help="records held out for evaluation")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed")
    ap.add_argument("--out", required=True, help="prefix: writes PREFIX-train.jsonl and PREFIX-test.jsonl")
    args = ap.parse_args(argv)
    train, test = split(args.source, args.test, args.seed)
    for name, rows in (("train", train), ("test", test)):
        path = Path(f"{args.out}-{name}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps_jsonl(rows))
        print(f"{path}: {len(rows)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
