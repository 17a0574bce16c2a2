"""`atkd landscape`: the loss landscape of a trained model along filter-normalised random directions
(Li et al. 2018), in 1-D and 2-D.

A direction d has the shape of the parameters; every "filter" (a row of a weight matrix, the whole of a
vector parameter) is rescaled to the norm of the same filter of the trained weights, so the plot is
comparable across models of one architecture. Biases and LayerNorm parameters are left at zero in d, as
in the paper. The loss is the mean cross-entropy per response token on `data`. Outputs:

    landscape.csv  tidy rows: alpha, beta, loss (beta = 0 for the 1-D line)
    summary.csv    model-free numbers: loss at the centre, and `sharpness` = mean over the 1-D line of
                   (loss - centre loss), a single flatness number (lower = flatter)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atkd.fsutil import atomic_write_csv
from atkd.models.ladder import load_model
from atkd.models.tokenizer import load_tokenizer
from atkd.train.data import load_examples
from atkd.train.loop import evaluate_loss

log = logging.getLogger(__name__)


def random_direction(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A filter-normalised Gaussian direction (zero on biases and other 1-D parameters)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        if p.dim() < 2:
            out[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=g, dtype=p.dtype)
        rows_d = d.reshape(d.shape[0], -1)
        rows_p = p.detach().reshape(p.shape[0], -1)
        scale = rows_p.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        out[name] = (rows_d * scale).reshape(p.shape)
    return out


@torch.no_grad()
def landscape(
    model_dir: str | Path,
    data: str | Path,
    *,
    steps: int = 11,
    span: float = 1.0,
    two_d: bool = True,
    seed: int = 0,
    limit: int | None = 100,
    batch_size: int = 16,
    max_length: int = 512,
) -> pd.DataFrame:
    """Loss on the 1-D line alpha*d1 (and the 2-D grid alpha*d1 + beta*d2), alpha, beta in [-span, span]."""
    if steps < 3 or steps % 2 == 0:
        raise ValueError(
            f"steps must be an odd number >= 3 (so the trained weights are on the grid), got {steps}"
        )
    tok = load_tokenizer(model_dir)
    examples = load_examples(data, tok, max_length)[:limit]
    model = load_model(model_dir).eval()
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    d1, d2 = random_direction(model, seed), random_direction(model, seed + 1)
    grid = np.linspace(-span, span, steps)
    points = [(a, 0.0) for a in grid]
    if two_d:
        points += [(a, b) for a in grid for b in grid if b != 0.0]
    rows = []
    try:
        for a, b in points:
            for n, p in model.named_parameters():
                p.copy_(theta[n] + a * d1[n] + b * d2[n])
            rows.append(
                {
                    "alpha": float(a),
                    "beta": float(b),
                    "loss": evaluate_loss(model, examples, tok.pad_token_id, batch_size),
                }
            )
    finally:
        for n, p in model.named_parameters():
            p.copy_(theta[n])
    return pd.DataFrame(rows).sort_values(["beta", "alpha"], ignore_index=True)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Centre loss and sharpness (mean rise of the loss over the 1-D line)."""
    line = df[df["beta"] == 0.0]
    centre = float(line.loc[line["alpha"].abs().idxmin(), "loss"])
    return pd.DataFrame(
        [
            {"metric": "loss_centre", "value": centre},
            {"metric": "sharpness", "value": float((line["loss"] - centre).mean())},
        ]
    )


def _run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    df = landscape(
        args.model,
        args.data,
        steps=args.steps,
        span=args.span,
        two_d=not args.one_d,
        seed=args.seed,
        limit=args.limit,
        max_length=args.max_length,
    )
    meta = dict(item.split("=", 1) for item in args.meta)
    out = Path(args.out)
    atomic_write_csv(out / "landscape.csv", df.assign(**meta)[[*meta, "alpha", "beta", "loss"]])
    atomic_write_csv(out / "summary.csv", summarise(df).assign(**meta)[[*meta, "metric", "value"]])
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd landscape --model DIR --data FILE --out DIR`."""
    p = subparsers.add_parser(
        "landscape",
        help="loss along filter-normalised random directions (1-D and 2-D)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", required=True, help="checkpoint directory (tokenizer alongside)")
    p.add_argument("--data", required=True, help="instruction records (.jsonl)")
    p.add_argument("--out", required=True, help="output directory (landscape CSVs)")
    p.add_argument("--steps", type=int, default=11, help="grid points per axis (odd)")
    p.add_argument("--span", type=float, default=1.0, help="alpha, beta in [-span, span]")
    p.add_argument("--one-d", action="store_true", help="the 1-D line only")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    p.add_argument("--limit", type=int, default=100, help="first N records the loss is averaged over")
    p.add_argument("--max-length", type=int, default=512, help="tokens per record (truncated beyond)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--meta", nargs="*", default=[], metavar="KEY=VALUE", help="columns prepended to every row"
    )
    p.set_defaults(func=_run_cli)
