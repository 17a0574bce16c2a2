"""The world's pre-training text with line breaks: a copy of `pretrain.txt` (and `pretrain_valid.txt`) as a
JSON-lines corpus in which a seeded half of the multi-sentence prose documents put each sentence on its
own line. Question-answer lines ("Q: ... A: ...") and one-sentence documents are left as they are.

Why: the world's text has one document per line and no line break inside any document, so a student base
pre-trained on it has never seen a newline token, while every prompt of the instruction template ends in
one ("### Response:\\n"). This corpus tests whether a base that has seen line breaks predicts the first
response token (and so the teacher-easy tokens) as a pre-trained LM would.

    python make_corpus.py WORLD_DIR OUT_DIR [--share 0.5] [--seed 0]

The rule is now `atkd.data.pretrain.break_lines` (the world's `pretrain_line_breaks` option); this script
calls it and writes the corpus byte for byte as the first version of this script did for the run here.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from atkd.data.pretrain import break_lines


def convert(src: Path, dst: Path, rng: random.Random, share: float) -> tuple[int, int]:
    docs = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = break_lines(docs, rng, share)
    dst.write_text("".join(json.dumps({"text": d}) + "\n" for d in out), encoding="utf-8")
    return len(docs), sum("\n" in d for d in out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("world", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    for name in ("pretrain", "pretrain_valid"):
        n, broken = convert(a.world / f"{name}.txt", a.out / f"{name}.jsonl", rng, a.share)
        print(f"{name}: {n} documents, {broken} with line breaks")


if __name__ == "__main__":
    main()
