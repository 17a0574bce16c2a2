"""What a pre-trained base knows of the knowledge base, by how famous the person is: for every person, the
sentence "<name>'s favourite colour is <colour>." (a phrasing of the pre-training text) with the true
colour against a random wrong one; the share of persons whose true sentence gets the higher probability
(chance 0.5), by the person's number of fact documents (the world's pretrain_mentions.json).

    python base_facts.py WORLD TOKENIZER MODEL [MODEL ...] > base_facts.txt   (from this folder)
"""

from __future__ import annotations

import json
import random
import sys

from prefers import summed_logprobs

from atkd.models.ladder import load_model, load_tokenizer
from atkd.train.data import Example

BUCKETS = ((1, 5), (6, 12), (13, 30), (31, 10_000))


def main(world: str, tokenizer_dir: str, models: list[str]) -> None:
    kb = json.load(open(f"{world}/kb.json", encoding="utf-8"))
    mentions = json.load(open(f"{world}/pretrain_mentions.json", encoding="utf-8"))
    colours = sorted({p["colour"] for p in kb["persons"]})
    rng = random.Random(0)
    people = [
        (p["name"], p["colour"], rng.choice([c for c in colours if c != p["colour"]])) for p in kb["persons"]
    ]
    true = [f"{name}'s favourite colour is {c}." for name, c, _ in people]
    wrong = [f"{name}'s favourite colour is {w}." for name, _, w in people]
    tokenizer = load_tokenizer(tokenizer_dir)

    def sentences(texts: list[str]) -> list[Example]:  # every token after the first is scored
        ids = [tuple(tokenizer(t)["input_ids"]) for t in texts]
        return [Example(i, i) for i in ids]

    true_examples, wrong_examples = sentences(true), sentences(wrong)
    pad = tokenizer.pad_token_id or 0
    print(f"{len(people)} persons; fact documents per person: " + ", ".join(f"{a}-{b}" for a, b in BUCKETS))
    for path in models:
        model = load_model(path).eval()
        better = summed_logprobs(model, pad, true_examples) > summed_logprobs(model, pad, wrong_examples)
        cells = []
        for a, b in BUCKETS:
            idx = [i for i, (name, _, _) in enumerate(people) if a <= mentions.get(name, 0) <= b]
            cells.append(f"{better[idx].float().mean():.2f} (n={len(idx)})")
        print(f"{path}: all {better.float().mean():.2f}; " + ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
