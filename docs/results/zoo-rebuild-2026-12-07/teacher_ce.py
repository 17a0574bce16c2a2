"""A teacher's CE on the reference tokens and its mean entropy over the first N examples of a dense
teacher cache (atkd.train.teacher_cache), in nats per response token.

    python teacher_ce.py CACHE_DIR TRAIN_JSONL TOKENIZER_DIR N
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from atkd.models.ladder import load_tokenizer
from atkd.train.data import load_examples


def main(cache: str, data: str, tokenizer: str, n: int) -> None:
    examples = load_examples(data, load_tokenizer(tokenizer), 256)[:n]
    offsets = np.load(f"{cache}/offsets.npy")
    logits = np.load(f"{cache}/logits.npy", mmap_mode="r")
    ce = entropy = count = 0.0
    for i, example in enumerate(examples):
        rows = torch.from_numpy(np.asarray(logits[offsets[i] : offsets[i + 1]], dtype=np.float32))
        labels = torch.tensor(example.labels[1:])
        labels = labels[labels != -100]
        assert len(labels) == len(rows), (len(labels), len(rows))
        logp = torch.log_softmax(rows, -1)
        ce += -logp[torch.arange(len(labels)), labels].sum().item()
        entropy += -(logp.exp() * logp).sum().item()
        count += len(labels)
    print(f"{cache}: {n} examples, {int(count)} targets: CE {ce / count:.4f}, entropy {entropy / count:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
