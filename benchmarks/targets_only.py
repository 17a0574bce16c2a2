"""Benchmark: a student's training steps with logits at the target positions only, against all positions.

`targets_only` (atkd.train.run.targets_only, on by default) applies the output head to the final hidden
states of the target positions (response + EOS) and reads the teacher cache's rows as they are, instead of
computing, copying and differentiating logits `[rows, positions, V]` and scattering the cached rows into a
zero tensor of that shape. The loss is the same (tests/test_train.py checks loss and gradient for every
registered loss). This times whole `atkd train` runs of the study's students on a finished default run's
outputs: SFT, KD from the dense cache and KD + ATKD, each `--steps` steps of the default's packed random
batches, with and without `targets_only`, the order alternating per repeat so machine noise hits both.
The time is the run's own `train_seconds` (steps, validation and saving; not the loading).

    snakemake --cores 8 all                       # or any finished run of config/default.yaml
    python benchmarks/targets_only.py --results results --out docs/bench/targets-only-cpu-<date>

Writes `<out>.csv` (one row per run) and `<out>.md` (median seconds and ratio per method).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from atkd.train import TrainConfig, train

FIELDS = [
    "method",
    "targets_only",
    "repeat",
    "steps",
    "train_seconds",
    "cpu_seconds",
    "valid_loss",
    "load_avg",
]
METHODS = {
    "sft": {"loss": {"name": "ce"}},
    "kd": {"loss": {"name": "fkl"}},
    "kd+atkd": {"loss": {"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}}},
}


def run_once(results: Path, teacher: str, method: str, only: bool, steps: int, out: Path) -> dict:
    """One short student run as the default workflow trains it; its row of the CSV."""
    fields = dict(METHODS[method])
    if method != "sft":
        fields["teacher_cache"] = str(results / "caches" / teacher / "gt")
    cfg = TrainConfig(
        output_dir=str(out),
        train_data=str(results / "world" / "train.jsonl"),
        valid_data=str(results / "world" / "valid.jsonl"),
        model=str(results / "models" / "student-base" / "final"),
        max_steps=steps,
        batch_size=32,
        max_length=256,
        lr=0.002,
        batching="packed",
        eval_points=2,
        valid_limit=200,
        threads=1,
        seed=1,
        progress=False,
        targets_only=only,
        **fields,
    )
    cpu0 = time.process_time()
    train(cfg)
    cpu = time.process_time() - cpu0
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    return {
        "method": method,
        "targets_only": only,
        "steps": steps,
        "train_seconds": round(summary["train_seconds"], 3),
        "cpu_seconds": round(cpu, 3),
        "valid_loss": round(summary["valid_loss"], 6),
        "load_avg": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"), help="a finished default run")
    ap.add_argument("--teacher", default="neox-160x5", help="whose dense cache KD reads")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--out", type=Path, default=Path("results/bench/targets-only"))
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for method in args.methods:
                order = (True, False) if repeat % 2 else (False, True)
                for only in order:
                    out = Path(tmp) / f"{method}-{only}-{repeat}"
                    row = {
                        **run_once(args.results, args.teacher, method, only, args.steps, out),
                        "repeat": repeat,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    with open(f"{args.out}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"# targets_only: {args.steps} steps of 32 packed examples, {args.repeats} repeats, 1 thread",
        "",
        "| method | all positions (s) | targets only (s) | speed-up | valid loss all / targets only |",
        "|---|---|---|---|---|",
    ]
    for method in args.methods:
        t = {
            o: statistics.median(
                r["train_seconds"] for r in rows if r["method"] == method and r["targets_only"] == o
            )
            for o in (False, True)
        }
        v = {
            o: next(r["valid_loss"] for r in rows if r["method"] == method and r["targets_only"] == o)
            for o in (False, True)
        }
        lines.append(
            f"| {method} | {t[False]:.1f} | {t[True]:.1f} | {t[False] / t[True]:.2f}x "
            f"| {v[False]:.4f} / {v[True]:.4f} |"
        )
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
