"""A tiny deterministic instruction world and tokenizer for the model and training tests (seconds)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from atkd.data.template import format_example
from atkd.models.tokenizer import save_tokenizer, train_tokenizer

WORDS = "apple river stone cloud maple tiger lemon violet copper harbor".split()


def records(n: int, seed: int = 0) -> list[dict]:
    """Addition, list reversal and a stochastic 'name a fruit' family; varied lengths."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.randrange(3)
        if kind == 0:
            a, b = rng.randrange(100), rng.randrange(100)
            out.append({"instruction": f"Add {a} and {b}.", "output": str(a + b)})
        elif kind == 1:
            ws = rng.sample(WORDS, rng.randrange(2, 6))
            out.append(
                {"instruction": "Reverse the list.", "input": " ".join(ws), "output": " ".join(ws[::-1])}
            )
        else:
            out.append({"instruction": "Name a fruit.", "output": rng.choice(["apple", "apple", "lemon"])})
    return out


def write_world(root: Path, n_train: int = 64, n_valid: int = 16) -> dict[str, Path]:
    """Write train/valid JSONL, a plain-text corpus and a trained tokenizer under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {"train": root / "train.jsonl", "valid": root / "valid.jsonl", "text": root / "pretrain.txt"}
    for split, n, seed in (("train", n_train, 0), ("valid", n_valid, 1)):
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in records(n, seed)), encoding="utf-8")
    rng = random.Random(2)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12))) + "." for _ in range(40)]
    paths["text"].write_text("\n".join(docs) + "\n\n", encoding="utf-8")  # one document per line
    texts = ["".join(format_example(r)) for r in records(400, 3)] + docs
    tok = train_tokenizer(texts, vocab_size=320)
    paths["tokenizer"] = save_tokenizer(tok, root / "tokenizer")
    return paths


def train_config(world: dict, out: Path | str, **changes) -> dict:
    """A seconds-long `atkd.train` config on the tiny world (a 32x2 model, checkpoints every 2 steps)."""
    cfg = dict(
        output_dir=str(out),
        train_data=str(world["train"]),
        arch="neox-32x2",
        tokenizer=str(world["tokenizer"]),
        max_steps=6,
        batch_size=8,
        micro_batch_size=4,
        lr=3e-3,
        warmup_steps=1,
        checkpoint_every=2,
        log_every=1,
        progress=False,
        seed=0,
    )
    cfg.update(changes)
    return cfg


def killed_then_resumed(cfg: dict, at: int) -> Path:
    """Train `cfg`, kill it (KeyboardInterrupt) after step `at`, train it again: the resumed run's final
    model directory."""
    import pytest

    from atkd.train import train

    def crash(step: int) -> None:
        if step == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=crash)
    return train(cfg)
