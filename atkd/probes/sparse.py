"""`atkd sparse-accuracy`: how well a teacher's top-K view (the sparse cache) stands in for its full
distribution, measured on one teacher, one student and real records.

For each K and loss (fkl, rkl, tvd, jsd, each with and without +ATKD) the loss and its gradient in the
student logits are computed against the dense teacher and against the top-K view exactly as the cache
stores it (uint16 indices where the vocabulary allows, float16 log-probabilities; float32 target and tail;
docs/losses.md), on the same student logits and labels. One row per (K, loss, atkd): bytes per position,
the loss's relative error, the gradient's cosine similarity and relative norm error
(||g_sparse - g_dense|| / ||g_dense||), the mean tail mass and how often the target is in the top K.

    atkd sparse-accuracy --teacher results/models/teachers/smollm2/final \\
        --student results/models/student-base/final --data data/instruct-eval/dolly.jsonl --k 8 64 \\
        --name smollm2 --out results/probes/smollm2/sparse.csv
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atkd.fsutil import atomic_write_rows
from atkd.losses import build_loss, sparse_from_logits
from atkd.losses.tails import ESTIMATORS, TailModel, fit_lowrank
from atkd.losses.tails import bytes_per_position as tail_bytes
from atkd.train.data import IGNORE_INDEX, Example, collate, load_examples

log = logging.getLogger(__name__)

LOSSES = ("fkl", "rkl", "tvd", "jsd")
FIELDS = [
    "teacher", "positions", "vocab", "k", "bytes_per_position", "dense_bytes_per_position", "loss", "atkd",
    "dense_loss", "sparse_loss", "loss_rel_error", "grad_cosine", "grad_rel_norm_error", "tail_mass_mean",
    "target_in_topk", "estimator", "extra", "eps", "draws", "grad_cosine_of_mean", "loss_rel_error_of_mean",
]  # fmt: skip
ATKD = {"k": 0.5, "lam": 0.2}  # the paper's defaults


def bytes_per_position(k: int, vocab: int, estimator: Estimator | None = None) -> int:
    """What the sparse cache stores per position in mode `estimator` (atkd.losses.tails)."""
    est = estimator or Estimator(k)
    return tail_bytes(k, vocab, est.kind, est.extra)


@dataclass(frozen=True)
class Estimator:
    """One cache mode to measure: top `k` plus the tail estimator `kind` with its `extra` width (lowrank
    rank r, or sampled tokens M) and `eps` (sampled). Written `K/kind[:extra[:eps]]`, e.g. `64/bucket`,
    `32/lowrank:64`, `16/sampled:64:0.01`."""

    k: int
    kind: str = "bucket"
    extra: int = 0
    eps: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Estimator:
        try:
            k, _, rest = text.partition("/")
            kind, *more = (rest or "bucket").split(":")
            est = cls(int(k), kind, int(more[0]) if more else 0, float(more[1]) if len(more) > 1 else 0.0)
        except ValueError:
            raise ValueError(f"cache mode {text!r}: write K/kind[:extra[:eps]], e.g. 32/lowrank:64") from None
        if est.kind not in ESTIMATORS:
            raise ValueError(
                f"cache mode {text!r}: unknown estimator {kind!r}; valid: {', '.join(ESTIMATORS)}"
            )
        if est.kind in ("lowrank", "sampled") and est.extra < 1:
            raise ValueError(f"cache mode {text!r}: {est.kind} needs its width (rank or samples) >= 1")
        return est

    @property
    def label(self) -> str:
        tail = f":{self.extra}" if self.kind in ("lowrank", "sampled") else ""
        return f"{self.k}/{self.kind}{tail}" + (f":{self.eps:g}" if self.kind == "sampled" else "")


@torch.no_grad()
def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].double()


def pooled_logits(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    examples: Sequence[Example],
    pad_id: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student logits, teacher logits, labels) at every target position of the examples, as one
    sequence: [1, N, V], [1, N, V], [1, N] (float64: the comparison measures the cache's error, not
    float32's). Only target positions are kept: with a 49k vocabulary, every float64 copy of the padded
    batch would cost GBs (the loss ranks +ATKD's tokens over the valid ones either way)."""
    s_rows, t_rows, y_rows = [], [], []
    for lo in range(0, len(examples), batch_size):
        batch = collate(list(examples[lo : lo + batch_size]), pad_id)
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE_INDEX
        s_rows.append(_logits(student, batch)[mask])
        t_rows.append(_logits(teacher, batch)[mask])
        y_rows.append(labels[mask])
    vocab = min(r.shape[-1] for r in s_rows)  # a teacher padded wider than the student: extra rows cut
    s = torch.cat([r[..., :vocab] for r in s_rows]).unsqueeze(0)
    t = torch.cat([r[..., :vocab] for r in t_rows]).unsqueeze(0)
    return s, t, torch.cat(y_rows).unsqueeze(0)


def _value_and_grad(
    loss: Any, s: torch.Tensor, teacher: Any, labels: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """The loss and its gradient in the student logits, flattened (one graph alive at a time: memory)."""
    a = s.clone().requires_grad_(True)
    value = loss(a, teacher, labels)
    value.backward()
    return value.item(), a.grad.double().flatten()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, 0))


def compare(
    name: str,
    s: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor,
    ks: Sequence[int] = (),
    *,
    modes: Sequence[Estimator] = (),
    losses: Sequence[str] = LOSSES,
    fit: torch.Tensor | None = None,
    draws: int = 1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The rows of one teacher: every cache mode x loss x (with, without +ATKD) on student logits `s`,
    teacher logits `t` and `labels` (B, T; `pooled_logits` gives one row of the target positions). Modes
    are `ks` (top K with the one-bucket tail) and `modes`; a lowrank tail is fitted on teacher logits
    `fit` (other positions than those compared; `t` itself when None), a sampled tail is drawn `draws`
    times (its row: the mean cosine and error over draws, and those of the mean gradient, the bias)."""
    vocab = t.shape[-1]
    index_dtype = torch.int16 if vocab <= 1 << 15 else torch.int32  # bytes: uint16 on disk up to 65536
    rows = []
    mask = labels != IGNORE_INDEX
    gen = torch.Generator().manual_seed(seed)
    for est in [Estimator(k) for k in ks] + list(modes):
        if not 0 < est.k < vocab:
            raise ValueError(f"k {est.k} must be between 1 and the vocabulary ({vocab}) - 1")
        if est.kind == "lowrank":
            model = fit_lowrank(t if fit is None else fit, est.extra, seed=seed)
        else:
            model = TailModel(est.kind, eps=est.eps)
        n_draws = draws if est.kind == "sampled" else 1
        views = [
            sparse_from_logits(
                t, labels, est.k, index_dtype=index_dtype, value_dtype=torch.float16,
                tail_model=None if est.kind == "bucket" else model, samples=est.extra, generator=gen,
            )
            for _ in range(n_draws)
        ]  # fmt: skip
        in_top = (views[0].indices.long() == labels.clamp_min(0).unsqueeze(-1)).any(-1)[mask]
        tail = views[0].tail[mask].double().exp()
        for loss_name in losses:
            for atkd in (False, True):
                loss = build_loss({"name": loss_name, **({"atkd": ATKD} if atkd else {})})
                d, ga = _value_and_grad(loss, s, t, labels)
                values, grads = zip(*(_value_and_grad(loss, s, view, labels) for view in views), strict=True)
                mean_g, mean_x = torch.stack(grads).mean(0), sum(values) / len(values)
                rel = [abs(x - d) / max(abs(d), 1e-12) for x in values]
                norm_err = [float((g - ga).norm() / ga.norm()) for g in grads]
                rows.append(
                    dict(
                        teacher=name, positions=int(mask.sum()), vocab=vocab, k=est.k,
                        bytes_per_position=bytes_per_position(est.k, vocab, est),
                        dense_bytes_per_position=vocab * 2, loss=loss_name, atkd="on" if atkd else "off",
                        dense_loss=f"{d:.6g}", sparse_loss=f"{mean_x:.6g}",
                        loss_rel_error=f"{sum(rel) / len(rel):.3e}",
                        grad_cosine=f"{sum(_cosine(ga, g) for g in grads) / len(grads):.6f}",
                        grad_rel_norm_error=f"{sum(norm_err) / len(norm_err):.3e}",
                        tail_mass_mean=f"{float(tail.mean()):.4f}",
                        target_in_topk=f"{float(in_top.float().mean()):.4f}",
                        estimator=est.kind, extra=est.extra, eps=est.eps, draws=n_draws,
                        grad_cosine_of_mean=f"{_cosine(ga, mean_g):.6f}",
                        loss_rel_error_of_mean=f"{abs(mean_x - d) / max(abs(d), 1e-12):.3e}",
                    )
                )  # fmt: skip
    return rows


def sparse_accuracy(
    teacher: str | Path,
    student: str | Path,
    data: Sequence[str | Path],
    ks: Sequence[int],
    *,
    name: str,
    limit: int | None = None,
    max_length: int = 512,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """`compare` on the first `limit` records of each file of `data`, prompted as in training (the
    student's tokenizer: atkd.data.template)."""
    from atkd.models import load_model, load_tokenizer

    tok = load_tokenizer(student)
    examples = [ex for f in data for ex in load_examples(f, tok, max_length)[:limit]]
    t_model = load_model(teacher).eval()
    s_model = load_model(student).eval()
    s, t, labels = pooled_logits(s_model, t_model, examples, tok.pad_token_id, batch_size)
    return compare(name, s, t, labels, ks)


def _run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = sparse_accuracy(
        args.teacher,
        args.student,
        args.data,
        args.k,
        name=args.name,
        limit=args.limit,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )
    atomic_write_rows(Path(args.out), rows, FIELDS)
    log.info("%s: %d rows over %s positions -> %s", args.name, len(rows), rows[0]["positions"], args.out)
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd sparse-accuracy --teacher DIR --student DIR --data FILE... --k K... --out CSV`."""
    p = subparsers.add_parser(
        "sparse-accuracy",
        help="loss and gradient of a top-K teacher (the sparse cache) against the dense one",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint directory or Hub id")
    p.add_argument("--student", required=True, help="the student (tokenizer alongside)")
    p.add_argument("--data", required=True, nargs="+", help="instruction records (.jsonl), one or more files")
    p.add_argument("--k", required=True, nargs="+", type=int, help="top-K sizes to measure")
    p.add_argument("--name", required=True, help="the teacher's name in the rows")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--limit", type=int, default=None, help="first N records (of each file)")
    p.add_argument("--batch-size", type=int, default=8, help="records per forward pass")
    p.add_argument("--max-length", type=int, default=512, help="tokens per record (truncated beyond)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_run_cli)
