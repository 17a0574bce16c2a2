"""Benchmark: the loss library against the plain reference, forward + backward, time and peak memory.

For each loss (with and without +ATKD), vocabulary and token count, both implementations run side by
side in one process on the same inputs; each row of the CSV is one (implementation, config) with the
median time over repeats and the peak memory the loss added above its inputs:

- CUDA: `torch.cuda.max_memory_allocated` after a reset;
- CPU: the process's peak resident set (Linux VmHWM, reset through /proc/self/clear_refs), which
  counts what the allocator really touched.

Configurations whose estimated footprint exceeds `--max-gb` are written as `skipped` rows rather than
silently left out (the library alone still runs where only the reference is over budget). Run
`python benchmarks/losses.py --help` for the grid options; the summary of ratios (reference / library)
is printed at the end and written next to the CSV.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the reference implementation lives with the tests

from helpers import reference_losses as ref  # noqa: E402

from atkd.losses import build_loss  # noqa: E402

LOSSES = ["fkl", "rkl", "tvd", "jsd", "skl", "srkl", "dkd", "ce"]
FIELDS = [
    "device",
    "dtype",
    "loss",
    "atkd",
    "vocab",
    "tokens",
    "impl",
    "status",
    "time_ms",
    "time_min_ms",
    "peak_mb",
    "threads",
]
# Full-size [tokens x vocab] temporaries the reference keeps alive, roughly (for the skip estimate).
REF_TENSORS = 14
LIB_TENSORS = 5  # inputs, gradient buffer, one chunk


_LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None


def _trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)  # hand freed heap memory back, so RSS shows only live data


def _rss_peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1)) / 1024


def measure_once(fn, device: torch.device) -> tuple[float, float]:
    """Wall time (ms) of one fn() and its peak memory above the memory in use before it (MB)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        _trim()
        before = _rss_mb("VmRSS")
        _rss_peak_reset()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = _rss_mb("VmHWM") - before
    return (time.perf_counter() - start) * 1000, peak


def measure_alternating(fns: list, device: torch.device, repeats: int, warmup: int = 1) -> list[tuple]:
    """For each closure: (median ms, best ms, peak MB), the closures run in turn `repeats` times (after
    `warmup` rounds), so that a shared machine's slow spells fall on all of them alike."""
    for _ in range(warmup):  # allocator, kernels
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    peaks: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            ms, mb = measure_once(fn, device)
            times[i].append(ms)
            peaks[i].append(mb)
    return [(statistics.median(t), min(t), max(p)) for t, p in zip(times, peaks, strict=True)]


def make_inputs(tokens: int, vocab: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    s = (torch.randn(1, tokens, vocab, generator=g) * 2).to(dtype=dtype, device=device).requires_grad_(True)
    t = (torch.randn(1, tokens, vocab, generator=g) * 4).to(dtype=dtype, device=device)
    y = torch.randint(0, vocab, (1, tokens), generator=g)
    y[torch.rand(1, tokens, generator=g) < 0.1] = -100  # some prompt/padding positions
    return s, t, y.to(device)


IMPLS = ["library", "library-2pass", "reference"]


def run_one(impl: str, loss: str, atkd: bool, s, t, y):
    """Return a closure doing one forward + backward of `impl`: the library; the library's two-pass +ATKD
    path (the split ranked by `rank_by`, here the same teacher: what every +ATKD loss did before the
    one-pass path); or the plain reference."""
    atkd_spec = {"k": 0.5, "lam": 0.2} if atkd else None
    if impl in ("library", "library-2pass"):
        fn = build_loss({"name": loss, "atkd": atkd_spec})
        kw = {"rank_by": t} if impl == "library-2pass" and atkd else {}

        def step():
            out = fn(s, t, y, **kw)
            out.backward()
            s.grad = None

    else:

        def step():
            out = ref.loss(s, t, y, loss, atkd=atkd_spec)
            out.backward()
            s.grad = None

    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[4096, 50257, 128256])
    ap.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--losses", nargs="+", default=LOSSES, choices=LOSSES)
    ap.add_argument("--atkd", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--impl", nargs="+", default=IMPLS, choices=IMPLS)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-gb", type=float, default=16.0, help="skip an implementation that needs more")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "losses.csv")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if args.append and args.out.exists():
        with open(args.out, newline="") as f:
            rows = list(csv.DictReader(f))
    for vocab in args.vocab:
        for tokens in args.tokens:
            ref_gb = REF_TENSORS * tokens * vocab * 4 / 2**30
            lib_gb = LIB_TENSORS * tokens * vocab * 4 / 2**30
            fits = lib_gb <= args.max_gb
            s, t, y = make_inputs(tokens, vocab, dtype, device) if fits else (None, None, None)
            todo, steps = [], []
            for loss in args.losses:
                for atkd in args.atkd:
                    if loss == "ce" and atkd == "on":
                        continue
                    for impl in args.impl:
                        if impl == "library-2pass" and atkd == "off":
                            continue  # the same path as "library"
                        row = dict(
                            device=device.type,
                            dtype=args.dtype,
                            loss=loss,
                            atkd=atkd,
                            vocab=vocab,
                            tokens=tokens,
                            impl=impl,
                            threads=torch.get_num_threads(),
                        )
                        gb = ref_gb if impl == "reference" else lib_gb
                        if gb > args.max_gb:
                            status = f"skipped: needs ~{gb:.0f} GB > --max-gb"
                            row.update(status=status, time_ms="", time_min_ms="", peak_mb="")
                            rows.append(row)
                        else:
                            todo.append(row)
                            steps.append(run_one(impl, loss, atkd == "on", s, t, y))
            for row, (ms, best, mb) in zip(
                todo, measure_alternating(steps, device, args.repeats, args.warmup), strict=True
            ):
                row.update(status="ok", time_ms=f"{ms:.1f}", time_min_ms=f"{best:.1f}", peak_mb=f"{mb:.0f}")
                rows.append(row)
            for row in rows[-len(todo) :] if todo else []:
                print(",".join(str(row[k]) for k in FIELDS), flush=True)
            del s, t, y
            gc.collect()
    tmp = args.out.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, args.out)
    summary = summarise(rows)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(summary)
    os.replace(tmp, args.out.with_suffix(".md"))
    print(summary)
    return 0


def summarise(rows: list[dict]) -> str:
    """Markdown table of reference/library ratios (time and peak memory) per config."""
    by = {}
    for r in rows:
        if r["status"] == "ok":
            by[(r["loss"], r["atkd"], r["vocab"], r["tokens"], r["impl"])] = r
    lines = [
        "| loss | +ATKD | vocab | tokens | library ms | reference ms | speed-up | library MB | reference MB "
        "| memory ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (loss, atkd, vocab, tokens, impl), lib in by.items():
        if impl != "library" or (loss, atkd, vocab, tokens, "reference") not in by:
            continue
        r = by[(loss, atkd, vocab, tokens, "reference")]
        lt, rt = float(lib["time_ms"]), float(r["time_ms"])
        lm, rm = max(float(lib["peak_mb"]), 1.0), max(float(r["peak_mb"]), 1.0)
        lines.append(
            f"| {loss} | {atkd} | {vocab} | {tokens} | {lt:.0f} | {rt:.0f} | {rt / lt:.2f}x "
            f"| {lm:.0f} | {rm:.0f} | {rm / lm:.2f}x |"
        )
    lines += [
        "",
        "+ATKD's cost over the same loss without it (library; one pass, and the two-pass path):",
        "",
        "| loss | vocab | tokens | plain ms | +ATKD ms | time ratio | two-pass ratio | plain MB | +ATKD MB "
        "| memory ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (loss, atkd, vocab, tokens, impl), plain in by.items():
        on = by.get((loss, "on", vocab, tokens, "library"))
        if impl != "library" or atkd != "off" or on is None:
            continue
        two = by.get((loss, "on", vocab, tokens, "library-2pass"))
        pt, ot = float(plain["time_ms"]), float(on["time_ms"])
        pm, om = max(float(plain["peak_mb"]), 1.0), max(float(on["peak_mb"]), 1.0)
        two_ratio = f"{float(two['time_ms']) / pt:.2f}x" if two else ""
        lines.append(
            f"| {loss} | {vocab} | {tokens} | {pt:.0f} | {ot:.0f} | {ot / pt:.2f}x | {two_ratio} "
            f"| {pm:.0f} | {om:.0f} | {om / pm:.2f}x |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
