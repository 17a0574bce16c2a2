"""Benchmark: random, bucketed and packed batches (`batching:` of atkd.train), and the thread/job layout.

Part 1, batching: optimizer steps as `atkd train` takes them (collate to the batch's longest sequence,
or pack the batch's examples into rows; forward + backward, gradient clipping, AdamW) on the real
training data of a world, for SFT of each `--archs` model and for KD of the first arch from a live
teacher (the last arch). Each repeat runs random, bucketed and packed batches (the order rotating per
repeat) from the same initial weights and the same stream positions (`batch_indices`), so machine noise
hits all alike; packed steps hold exactly the examples of random ones, and tokens per second normalise
for the different examples bucketing puts at those positions. Columns: all tokens (padding
included), real tokens (non-pad), target tokens (the loss's), the padding share of the timed batches and
their rates. The padding share of a whole epoch of each order is written as rows of its own.

Part 2, layout: the bucketed SFT steps of each arch as 1 process x 1 thread, 1 process x N threads and N
concurrent 1-thread processes (N = `--cores`), each running for `--seconds` once all have loaded (they
start together); the total real tokens per second of the layout.

    atkd world --out /tmp/w --seed 0 --n-train 18000 --n-valid 500 --n-eval 100 --n-entities 300 \\
        --n-pretrain 10000 --n-fewshot 25
    atkd tokenizer --train /tmp/w/train.jsonl /tmp/w/pretrain.txt --vocab-size 1024 --out /tmp/w/tokenizer
    python benchmarks/batching.py --world /tmp/w --quick      # about 5 minutes on 2 shared cores

Writes `<out>.csv` (part 1), `<out>-layout.csv` (part 2) and `<out>.md` (ratios), out = `--out`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from atkd.losses import build_loss
from atkd.models.ladder import build_model
from atkd.models.tokenizer import load_tokenizer
from atkd.train.data import Example, batch_indices, collate, load_examples, pack, padding_share
from atkd.train.loop import forward_backward

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    "kind", "arch", "teacher", "batching", "repeat", "threads", "steps", "batch_size", "examples",
    "all_tokens", "real_tokens", "target_tokens", "pad_share", "seconds", "all_tok_s", "real_tok_s",
    "target_tok_s", "load_avg",
]  # fmt: skip
LAYOUT_FIELDS = [
    "arch", "layout", "repeat", "processes", "threads_per_process", "seconds", "real_tokens",
    "real_tok_s_total", "real_tok_s_each", "load_avg",
]  # fmt: skip


def load_world(world: Path, max_length: int) -> tuple[list[Example], int, int]:
    """Training examples of a world as `atkd train` reads them, the vocabulary size and the pad id."""
    tok = load_tokenizer(world / "tokenizer")
    return load_examples(world / "train.jsonl", tok, max_length), len(tok), tok.pad_token_id


def run_steps(
    examples: list[Example],
    lengths: tuple[int, ...] | None,
    arch: str,
    vocab: int,
    pad: int,
    *,
    steps: int | None,
    seconds: float | None = None,
    start: int = 0,
    batch_size: int = 32,
    teacher: str | None = None,
    packed: bool = False,
) -> dict[str, float]:
    """Time optimizer steps on the stream from position `start` (one untimed warm-up step first); stop
    after `steps` steps or `seconds`. Returns token counts and the elapsed time of the timed steps."""
    model = build_model(arch, vocab, seed=0).train()
    t_model = build_model(teacher, vocab, seed=1).eval().requires_grad_(False) if teacher else None
    loss_fn = build_loss("fkl" if teacher else "ce")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    out = dict(steps=0, all_tokens=0, real_tokens=0, target_tokens=0, seconds=0.0)
    batches = []
    pos, t0 = start, None
    while True:
        idx = batch_indices(len(examples), 0, pos, batch_size, lengths)
        pos += batch_size
        part = [examples[i] for i in idx]
        batch = pack(part, pad)[0] if packed else collate(part, pad)
        stats = forward_backward(model, [batch], loss_fn, t_model)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if t0 is None:  # the warm-up step
            t0 = time.perf_counter()
            continue
        out["steps"] += 1
        out["all_tokens"] += batch["input_ids"].numel()
        out["real_tokens"] += stats["tokens"]
        out["target_tokens"] += stats["target_tokens"]
        batches.append(idx)
        elapsed = time.perf_counter() - t0
        if (steps is not None and out["steps"] >= steps) or (seconds is not None and elapsed >= seconds):
            break
    out["seconds"] = time.perf_counter() - t0
    out["pad_share"] = 1 - out["real_tokens"] / out["all_tokens"]
    return out


def rates(row: dict) -> dict:
    s = max(row["seconds"], 1e-9)
    return dict(
        all_tok_s=round(row["all_tokens"] / s, 1),
        real_tok_s=round(row["real_tokens"] / s, 1),
        target_tok_s=round(row["target_tokens"] / s, 1),
    )


def load_avg() -> str:
    return f"{os.getloadavg()[0]:.2f}"


# --------------------------------------------------------------------------------------------- part 1


def bench_batching(examples, vocab, pad, args) -> list[dict]:
    lengths = tuple(len(e.input_ids) for e in examples)
    n, bs = len(examples), args.batch_size
    rows = []
    for name, order in (("random", None), ("bucketed", lengths), ("packed", None)):  # an epoch, untimed
        batches = [batch_indices(n, 0, p, bs, order) for p in range(0, n - bs + 1, bs)]
        assert len({i for b in batches for i in b}) == len(batches) * bs  # no example twice
        if name == "packed":
            packs = [pack([examples[i] for i in b], 0)[0] for b in batches]
            real = sum(int(b["token_mask"].sum()) for b in packs)
            share = 1 - real / sum(b["input_ids"].numel() for b in packs)
        else:
            share = padding_share(batches, lengths)
        rows.append(dict(kind="epoch", batching=name, batch_size=bs, examples=n, pad_share=f"{share:.4f}"))
        print(f"epoch padding share, {name}: {share:.4f}", flush=True)
    jobs = [("sft", arch, None, args.steps[i]) for i, arch in enumerate(args.archs)]
    if len(args.archs) > 1:
        jobs.append(("kd-live", args.archs[0], args.archs[-1], args.steps[-1]))
    for repeat in range(args.repeats):
        for kind, arch, teacher, steps in jobs:
            start = (repeat * (steps + 1) * bs) % n  # other batches each repeat, the same for both orders
            kinds = [("random", None), ("bucketed", lengths), ("packed", None)]
            for name, order in kinds[repeat % 3 :] + kinds[: repeat % 3]:
                kw = dict(steps=steps, start=start, batch_size=bs, teacher=teacher, packed=name == "packed")
                r = run_steps(examples, order, arch, vocab, pad, **kw)
                row = dict(
                    kind=kind, arch=arch, teacher=teacher or "", batching=name, repeat=repeat,
                    threads=torch.get_num_threads(), batch_size=bs, examples=r["steps"] * bs,
                    **{k: r[k] for k in ("steps", "all_tokens", "real_tokens", "target_tokens")},
                    pad_share=f"{r['pad_share']:.4f}", seconds=f"{r['seconds']:.3f}", **rates(r),
                    load_avg=load_avg(),
                )  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


# --------------------------------------------------------------------------------------------- part 2


def worker(args) -> int:
    """One process of a layout: load, say `ready`, wait for `go` on stdin, run, print the result."""
    torch.set_num_threads(args.threads)
    examples, vocab, pad = pickle.loads(Path(args.worker).read_bytes())
    lengths = tuple(len(e.input_ids) for e in examples)
    build_model(args.archs[0], vocab, seed=0)  # import and first-build costs before the start
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    r = run_steps(
        examples, lengths, args.archs[0], vocab, pad, steps=None, seconds=args.seconds,
        start=args.start, batch_size=args.batch_size,
    )  # fmt: skip
    print(json.dumps(r), flush=True)
    return 0


def run_layout(data: Path, arch: str, processes: int, threads: int, args) -> list[dict]:
    """Start `processes` workers of `threads` threads; once all are loaded, start them together."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = []
    try:
        for k in range(processes):
            cmd = [
                sys.executable, __file__, "--worker", str(data), "--archs", arch, "--threads", str(threads),
                "--seconds", str(args.seconds), "--start", str(k * 4096),
                "--batch-size", str(args.batch_size),
            ]  # fmt: skip
            procs.append(
                subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            )
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a layout worker failed to start (exit {p.wait()})")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.stdout.readline()) for p in procs]
        for p in procs:
            p.wait(timeout=60)
        return results
    finally:
        for p in procs:  # never leave a worker behind
            if p.poll() is None:
                p.kill()
                p.wait()


def bench_layout(examples, vocab, pad, args) -> list[dict]:
    layouts = [("1x1", 1, 1), (f"1x{args.cores}", 1, args.cores), (f"{args.cores}x1", args.cores, 1)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "examples.pkl"
        data.write_bytes(pickle.dumps((examples, vocab, pad)))
        for repeat in range(args.layout_repeats):
            for arch in args.archs:
                for name, procs, threads in layouts if repeat % 2 == 0 else layouts[::-1]:
                    results = run_layout(data, arch, procs, threads, args)
                    tokens = sum(r["real_tokens"] for r in results)
                    each = [r["real_tokens"] / r["seconds"] for r in results]
                    row = dict(
                        arch=arch, layout=name, repeat=repeat, processes=procs, threads_per_process=threads,
                        seconds=f"{max(r['seconds'] for r in results):.3f}", real_tokens=tokens,
                        real_tok_s_total=round(sum(each), 1),
                        real_tok_s_each=" ".join(f"{x:.0f}" for x in each),
                        load_avg=load_avg(),
                    )  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


# -------------------------------------------------------------------------------------------- summary


def median(rows: list[dict], key: str, batching: str) -> float:
    return statistics.median(float(r[key]) for r in rows if r["batching"] == batching)


def ratio_lines(rows: list[dict], other: str = "bucketed") -> list[str]:
    """Per (kind, arch): median and per-repeat ratios `other` / random of the token rates."""
    lines = []
    timed = [r for r in rows if r["kind"] != "epoch"]
    for kind, arch, teacher in dict.fromkeys((r["kind"], r["arch"], r["teacher"]) for r in timed):
        mine = [r for r in timed if (r["kind"], r["arch"], r["teacher"]) == (kind, arch, teacher)]
        by = {(r["batching"], r["repeat"]): r for r in mine}
        reps = sorted({r["repeat"] for r in mine})
        cells = []
        for key in ("real_tok_s", "target_tok_s", "all_tok_s"):
            rs = [by[other, k][key] / by["random", k][key] for k in reps]
            cells.append(f"{statistics.median(rs):.2f}x ({', '.join(f'{x:.2f}' for x in rs)})")
        names = ("random", other)
        pad = {b: median(mine, "pad_share", b) for b in names}
        med = {b: median(mine, "real_tok_s", b) for b in names}
        what = f"{kind} {arch}" + (f" <- {teacher}" if teacher else "")
        lines.append(
            f"| {what} | {pad['random']:.1%} | {pad[other]:.1%} | {med['random']:.0f} "
            f"| {med[other]:.0f} | {' | '.join(cells)} |"
        )
    return lines


def layout_lines(rows: list[dict]) -> list[str]:
    lines = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        base = statistics.median(r["real_tok_s_total"] for r in mine if r["layout"] == "1x1")
        for layout in dict.fromkeys(r["layout"] for r in mine):
            tot = [r["real_tok_s_total"] for r in mine if r["layout"] == layout]
            med = statistics.median(tot)
            each = ", ".join(f"{x:.0f}" for x in tot)
            lines.append(f"| {arch} | {layout} | {med:.0f} | {med / base:.2f}x | {each} |")
    return lines


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=fields)
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path("/tmp/w"), help="`atkd world` + tokenizer output")
    ap.add_argument("--archs", nargs="+", default=["neox-48x2", "neox-160x5"], help="student first")
    ap.add_argument("--steps", type=int, nargs="+", help="timed steps per arch (and the KD run: the last)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of part 1 (workflow: `threads`)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="part 2: N of the layouts")
    ap.add_argument("--seconds", type=float, default=20.0, help="part 2: run time of each layout")
    ap.add_argument("--layout-repeats", type=int, default=3)
    ap.add_argument("--skip-layout", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer steps, repeats and seconds (a few minutes)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "batching")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.repeats, args.seconds, args.layout_repeats = 3, 6.0, 2
    if args.steps is None:
        args.steps = [30, 8] if args.quick else [100, 25]
    if len(args.steps) != len(args.archs):
        ap.error("--steps takes one number per arch")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    examples, vocab, pad = load_world(args.world, args.max_length)
    print(f"{len(examples)} examples from {args.world}, vocab {vocab}", flush=True)
    rows = bench_batching(examples, vocab, pad, args)
    write_csv(args.out.with_suffix(".csv"), FIELDS, rows)
    layout = [] if args.skip_layout else bench_layout(examples, vocab, pad, args)
    if layout:
        write_csv(args.out.parent / f"{args.out.name}-layout.csv", LAYOUT_FIELDS, layout)
    epoch = {r["batching"]: float(r["pad_share"]) for r in rows if r["kind"] == "epoch"}
    md = [
        f"Random vs bucketed and packed batches on {args.world} ({len(examples)} examples, "
        f"max_length {args.max_length}, batch_size {args.batch_size}), {args.threads} thread(s), "
        f"{args.repeats} repeats, "
        f"{time.perf_counter() - t0:.0f} s in all. Padding share of a whole epoch: random "
        f"{epoch['random']:.1%}, bucketed {epoch['bucketed']:.1%}, packed {epoch['packed']:.1%}.",
    ]
    for other in ("bucketed", "packed"):
        md += [
            "",
            f"Ratios are {other} / random, median (per repeat); tok/s are real (non-pad) tokens per second.",
            "",
            f"| run | pad random | pad {other} | tok/s random | tok/s {other} | real tok/s ratio "
            "| target tok/s ratio | all tok/s ratio |",
            "|---|---|---|---|---|---|---|---|",
            *ratio_lines(rows, other),
        ]
    if layout:
        md += [
            "",
            f"Layouts (bucketed SFT steps, {args.seconds:g} s each, {args.layout_repeats} repeats): "
            "processes x threads, total real tokens per second, median (each repeat), ratio to 1x1.",
            "",
            "| arch | layout | total tok/s | vs 1x1 | repeats |",
            "|---|---|---|---|---|",
            *layout_lines(layout),
        ]
    text = "\n".join(md) + "\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
