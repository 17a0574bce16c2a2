"""What a pre-trained base knows of the knowledge base, by how famous the person is: for every person, the
sentence "<name>'s favourite colour is <colour>." (a phrasing of the pre-training text) with the true
colour against a random wrong one; the share of persons whose true sentence gets the higher probability
(chance 0.5), by the person's number of fact documents (the world's pretrain_mentions.json).

    python base_facts.py WORLD TOKENIZER MODEL [MODEL ...] > base_facts.txt
"""

from __future__ import annotations

import json
import random
import sys

import torch

from atkd.models.ladder import load_model, load_tokenizer

BUCKETS = ((1, 5), (6, 12), (13, 30), (31, 10_000))


@torch.no_grad()
def sentence_logprobs(model: torch.nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    """Summed log-probability of each text's tokens after its first, in batches of 128."""
    out = []
    for start in range(0, len(texts), 128):
        encoded = [tokenizer(t)["input_ids"] for t in texts[start : start + 128]]
        width = max(map(len, encoded))
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id or 0)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e)
            mask[i, : len(e)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        picked = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
        out.append(picked.sum(-1))
    return torch.cat(out)


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
    print(f"{len(people)} persons; fact documents per person: " + ", ".join(f"{a}-{b}" for a, b in BUCKETS))
    for path in models:
        model = load_model(path).eval()
        better = sentence_logprobs(model, tokenizer, true) > sentence_logprobs(model, tokenizer, wrong)
        cells = []
        for a, b in BUCKETS:
            idx = [i for i, (name, _, _) in enumerate(people) if a <= mentions.get(name, 0) <= b]
            cells.append(f"{better[idx].float().mean():.2f} (n={len(idx)})")
        print(f"{path}: all {better.float().mean():.2f}; " + ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
