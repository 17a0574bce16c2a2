"""The Q&A pre-training text of this side run (what was run, as a script): the world's pretrain.txt plus
15,000 one-line "Q: <instruction> <input> A: <output>" documents, drawn from a 36,000-record world of the
same seed (same knowledge base) and kept only where the prompt is in none of the default world's train,
valid and evaluation files. Usage: python make_pretrain_qa.py WORLD_18K WORLD_36K OUT.txt
(the worlds from `atkd world --seed 0 --n-train 18000|36000 --n-valid 500 --n-eval 400 --n-entities 300
--n-pretrain 50000 --n-fewshot 25`)."""

import glob
import json
import random
import sys

from atkd.data.world import prompt_key

small, large, out = sys.argv[1:4]
seen = set()
for path in (f"{small}/train.jsonl", f"{small}/valid.jsonl", *glob.glob(f"{small}/suites/*.jsonl")):
    for line in open(path):
        record = json.loads(line)
        if "instruction" in record:
            seen.add(prompt_key(record))
docs = []
for line in open(f"{large}/train.jsonl"):
    r = json.loads(line)
    if prompt_key(r) not in seen:
        q = r["instruction"] + ((" " + r["input"]) if r.get("input") else "")
        docs.append(f"Q: {q} A: {r['output']}".replace("\n", " "))
random.Random(0).shuffle(docs)
mix = open(f"{small}/pretrain.txt").read().splitlines() + docs[:15000]
random.Random(1).shuffle(mix)
open(out, "w").write("\n".join(mix) + "\n")
print(f"{len(docs)} unseen Q&A documents, 15000 kept; {len(mix)} documents in {out}")
