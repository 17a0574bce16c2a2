"""Benchmark: the fused output-layer path (`fused_linear_kd_loss`) against the unfused one (full student and
teacher logits, then the loss), forward + backward through the hidden states and the output embedding.

Both paths run side by side in one process on the same inputs (student hidden states and head, teacher
hidden states and head); each CSV row is one (path, config) with the median time and the peak memory
above the inputs (CUDA: max_memory_allocated; CPU: peak resident set, see `benchmarks/losses.py`). The
loss values and gradients of the two paths are compared on every config (max abs difference columns).
The ratios (unfused / fused) are printed and written next to the CSV.

    python benchmarks/fused_head.py --vocab 50257 128256 --tokens 8192
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from losses import measure  # noqa: E402

from atkd.fsutil import atomic_write_rows
from atkd.losses import build_loss, fused_linear_kd_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["device", "dtype", "loss", "vocab", "tokens", "hidden", "path", "time_ms", "peak_mb", "loss_value"]


def make_inputs(tokens: int, vocab: int, d: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.randn(1, tokens, d, generator=g).to(dtype=dtype, device=device)
    w = (torch.randn(vocab, d, generator=g) / d**0.5).to(dtype=dtype, device=device)
    th = torch.randn(1, tokens, d, generator=g).to(dtype=dtype, device=device)
    tw = (torch.randn(vocab, d, generator=g) * 2 / d**0.5).to(dtype=dtype, device=device)
    y = torch.randint(0, vocab, (1, tokens), generator=g)
    y[torch.rand(1, tokens, generator=g) < 0.1] = -100
    return h, w, th, tw, y.to(device)


def step_fn(path: str, spec: dict, h, w, th, tw, y, out: dict):
    """A closure doing forward + backward of one path; leaves the loss and the gradients in `out`."""
    loss_fn = build_loss(spec)

    def step():
        hh, ww = h.detach().requires_grad_(True), w.detach().requires_grad_(True)
        if path == "unfused":
            with torch.no_grad():
                t_logits = th @ tw.T
            value = loss_fn(hh @ ww.T, t_logits, y)
            del t_logits
        else:
            value = fused_linear_kd_loss(spec, hh, ww, y, teacher_hidden=th, teacher_weight=tw)
        value.backward()
        out.update(loss=float(value.detach()), grad_h=hh.grad, grad_w=ww.grad)

    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[50257, 128256])
    ap.add_argument("--tokens", type=int, nargs="+", default=[8192])
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of student and teacher")
    ap.add_argument("--loss", default="fkl+atkd", choices=["fkl", "fkl+atkd", "rkl", "ce"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "fused_head.csv")
    args = ap.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    name, _, atkd = args.loss.partition("+")
    spec = {"name": name, "atkd": {"k": 0.5, "lam": 0.2} if atkd else None}
    rows, lines = [], []
    for vocab in args.vocab:
        for tokens in args.tokens:
            inputs = make_inputs(tokens, vocab, args.hidden, dtype, device)
            results = {}
            for path in ("fused", "unfused"):  # fused first: the unfused peak cannot inflate it
                results[path] = {}
                ms, mb = measure(
                    step_fn(path, spec, *inputs, results[path]), device, args.repeats, args.warmup
                )
                row = dict(
                    device=device.type,
                    dtype=args.dtype,
                    loss=args.loss,
                    vocab=vocab,
                    tokens=tokens,
                    hidden=args.hidden,
                    path=path,
                    time_ms=f"{ms:.0f}",
                    peak_mb=f"{mb:.0f}",
                    loss_value=f"{results[path]['loss']:.8g}",
                )
                rows.append(row)
                print(",".join(str(row[k]) for k in FIELDS), flush=True)
            f, u = results["fused"], results["unfused"]
            diff_h = float((f["grad_h"] - u["grad_h"]).abs().max())
            diff_w = float((f["grad_w"] - u["grad_w"]).abs().max())
            fu = [r for r in rows[-2:]]
            mem = float(fu[1]["peak_mb"]) / max(float(fu[0]["peak_mb"]), 1.0)
            speed = float(fu[1]["time_ms"]) / max(float(fu[0]["time_ms"]), 1.0)
            lines.append(
                f"| {vocab} | {tokens} | {fu[1]['peak_mb']} | {fu[0]['peak_mb']} | {mem:.1f}x | "
                f"{fu[1]['time_ms']} | {fu[0]['time_ms']} | {speed:.2f}x | "
                f"{abs(f['loss'] - u['loss']):.1e} | {diff_h:.1e} | {diff_w:.1e} |"
            )
            del inputs, results, f, u
            gc.collect()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_rows(args.out, rows, FIELDS)
    summary = "\n".join(
        [
            f"Fused vs unfused output layer, {args.loss}, {args.dtype}, {device.type}, hidden {args.hidden}, "
            f"{torch.get_num_threads()} threads (peak memory above the inputs; ratio = unfused / fused)",
            "",
            "| vocab | tokens | unfused MB | fused MB | memory ratio | unfused ms | fused ms | time ratio "
            "| loss diff | max grad_h diff | max grad_W diff |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *lines,
            "",
        ]
    )
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(summary)
    os.replace(tmp, args.out.with_suffix(".md"))
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
