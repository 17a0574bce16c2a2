"""Which answer a model prefers on the noisy training records: the wrong reference it was trained on, or
the true answer (the same record in the world without noise). Summed log-probability of the response
tokens (+ EOS) under the prompt template, the tokens a training loss sees.

    python prefers.py NOISY_TRAIN CLEAN_TRAIN TOKENIZER START N MODEL [MODEL ...] > prefers.txt

N: the first N noisy records of NOISY_TRAIN from row START on (and, as a control, the first N clean
checkable ones from there). A model that
learnt the truth from pre-training or from the other records prefers the true answer; one that memorised
its training records prefers the wrong one.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import torch

from atkd.models.ladder import load_model, load_tokenizer
from atkd.train.data import IGNORE_INDEX, Example, collate, encode_record


@torch.no_grad()
def summed_logprobs(model: torch.nn.Module, pad_id: int, examples: list[Example]) -> torch.Tensor:
    """Summed log-probability of each example's label tokens (after the shift), in batches of 64."""
    out = []
    for start in range(0, len(examples), 64):
        batch = collate(examples[start : start + 64], pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        out.append((picked * mask).sum(-1))
    return torch.cat(out)


def logprobs(model: torch.nn.Module, tokenizer, records: list[dict]) -> torch.Tensor:
    """Summed log-probability of each record's response tokens (+ EOS) under the prompt template."""
    examples = [encode_record(r, tokenizer, 256) for r in records]
    return summed_logprobs(model, tokenizer.pad_token_id, examples)


def main(noisy_path: str, clean_path: str, tokenizer_dir: str, start: int, n: int, models: list[str]) -> None:
    noisy = [json.loads(line) for line in open(noisy_path, encoding="utf-8")]
    clean = [json.loads(line) for line in open(clean_path, encoding="utf-8")]
    picked = [i for i, r in enumerate(noisy) if i >= start and r.get("noisy")][:n]
    control = [
        i for i, r in enumerate(noisy) if i >= start and not r.get("noisy") and r["judge"]["kind"] != "dist"
    ]
    control = control[:n]
    tokenizer = load_tokenizer(tokenizer_dir)
    print(
        f"{len(picked)} noisy records of {noisy_path} from row {start}; "
        f"control: {len(control)} clean checkable ones"
    )
    for path in models:
        model = load_model(path).eval()
        wrong = logprobs(model, tokenizer, [noisy[i] for i in picked])
        true = logprobs(model, tokenizer, [clean[i] for i in picked])
        ctrl = logprobs(model, tokenizer, [noisy[i] for i in control])
        prefers_true = (true > wrong).float().mean().item()
        by_family = defaultdict(list)
        for k, i in enumerate(picked):
            by_family[noisy[i]["family"]].append(float(true[k] > wrong[k]))
        print(
            f"{path}: prefers the true answer on {prefers_true:.3f} of noisy records; mean log p "
            f"true {true.mean():.3f}, wrong (the reference) {wrong.mean():.3f}; "
            f"clean records {ctrl.mean():.3f}"
        )
        print(
            "    per family: " + " ".join(f"{f}={sum(v) / len(v):.2f}" for f, v in sorted(by_family.items()))
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:])
