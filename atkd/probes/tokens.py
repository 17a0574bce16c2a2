"""`atkd probe`: per-token UnC of a teacher and the split of its KD loss into TKD and UnC x DKD.

On a set of instruction records (the world's validation split by default in the workflow), at every
response token (and EOS) with target g, teacher p and student q:

    UnC = 1 - p_g,  TKD = KL(b_p || b_q),  DKD = KL(p^ || q^),  KD = KL(p || q) = TKD + UnC x DKD.

The student is the one KD starts from (the student's base model), so the split is the one the first KD
steps see. Outputs (each written atomically):
    tokens.csv    one row per token: model, seq, pos, unc, unc_student, ce_student, tkd, dkd, kd
    summary.csv   tidy rows: model, metric, value (mean/median UnC, share of KD carried by TKD and by
                  UnC x DKD, the identity's largest residual, token count, and the student's
                  cross-entropy -log q_g on the teacher-easy and teacher-hard halves: tokens ranked by
                  the teacher's UnC, the more uncertain half is hard, as ATKD splits with k = 0.5)

A pre-trained student base already predicts much of what is easy for the teacher: `student_ce_easy`
well below `student_ce_hard` says the base is in the study's regime (not a random network).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atkd.fsutil import atomic_write_csv
from atkd.losses import token_parts
from atkd.models.ladder import load_model, resolve_device
from atkd.models.tokenizer import load_tokenizer
from atkd.train.data import collate, load_examples

log = logging.getLogger(__name__)
TOKEN_COLUMNS = ["model", "seq", "pos", "unc", "unc_student", "ce_student", "tkd", "dkd", "kd"]


@torch.no_grad()
def probe_tokens(
    teacher: str | Path,
    student: str | Path,
    data: str | Path | Sequence[str | Path],
    *,
    name: str,
    limit: int | None = None,
    batch_size: int = 16,
    max_length: int = 512,
    device: str = "auto",
) -> pd.DataFrame:
    """Per-token UnC and KD parts of `teacher` against `student` on the first `limit` records of `data`
    (of each file, if several)."""
    device = resolve_device(device)
    tok = load_tokenizer(student)
    files = [data] if isinstance(data, (str, Path)) else list(data)
    examples = [ex for f in files for ex in load_examples(f, tok, max_length)[:limit]]
    t_model = load_model(teacher, device).eval()
    s_model = load_model(student, device).eval()
    width = s_model.config.vocab_size
    if t_model.config.vocab_size != width and not t_model.config.vocab_size > width >= len(tok):
        raise ValueError(f"teacher {teacher} and student {student} have different vocabularies")
    frames = []
    for lo in range(0, len(examples), batch_size):
        batch = {
            k: v.to(device) for k, v in collate(examples[lo : lo + batch_size], tok.pad_token_id).items()
        }
        args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        t_logits = t_model(**args).logits[:, :-1, :width].float()  # a wider teacher: padding rows cut
        s_logits = s_model(**args).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        parts = token_parts(s_logits, t_logits, labels, "fkl")
        valid = (labels != -100).nonzero()  # row-major, the order of token_parts
        s_logp = torch.log_softmax(s_logits[valid[:, 0], valid[:, 1]].double(), dim=-1)
        ce = -s_logp.gather(-1, labels[valid[:, 0], valid[:, 1]].unsqueeze(-1)).squeeze(-1)
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "seq": (valid[:, 0] + lo).cpu().numpy(),
                    "pos": (valid[:, 1] + 1).cpu().numpy(),  # position of the target token in the sequence
                    "unc": parts["unc"].double().cpu().numpy(),
                    "unc_student": parts["unc_student"].double().cpu().numpy(),
                    "ce_student": ce.cpu().numpy(),
                    "tkd": parts["tkd"].double().cpu().numpy(),
                    "dkd": parts["dkd"].double().cpu().numpy(),
                    "kd": parts["base"].double().cpu().numpy(),
                }
            )
        )
    if not frames:
        raise ValueError(f"{data}: no records to probe")
    return pd.concat(frames, ignore_index=True)[TOKEN_COLUMNS]


def easy_hard_split(unc: np.ndarray, k: float = 0.5) -> np.ndarray:
    """Boolean mask of the teacher-hard tokens: the ceil(k x n) with the largest UnC (ties by position)."""
    n_hard = int(np.ceil(k * len(unc)))
    hard = np.zeros(len(unc), dtype=bool)
    hard[np.argsort(-unc, kind="stable")[:n_hard]] = True
    return hard


def summarise(tokens: pd.DataFrame) -> pd.DataFrame:
    """Tidy summary rows per model: UnC statistics and the shares of the KD loss (sums over tokens)."""
    rows: list[dict[str, Any]] = []
    for model, t in tokens.groupby("model", sort=False):
        kd = float(t["kd"].sum())
        weighted = t["unc"] * t["dkd"]
        values = {
            "tokens": float(len(t)),
            "unc_mean": float(t["unc"].mean()),
            "unc_median": float(t["unc"].median()),
            "unc_below_0.1": float((t["unc"] < 0.1).mean()),
            "kd_mean": float(t["kd"].mean()),
            "share_tkd": float(t["tkd"].sum()) / kd if kd > 0 else float("nan"),
            "share_unc_dkd": float(weighted.sum()) / kd if kd > 0 else float("nan"),
            "dkd_mean": float(t["dkd"].mean()),
            "identity_max_residual": float(np.max(np.abs(t["kd"] - t["tkd"] - weighted))),
        }
        if "ce_student" in t:
            hard = easy_hard_split(t["unc"].to_numpy())
            values["student_ce_easy"] = float(t["ce_student"].to_numpy()[~hard].mean())
            values["student_ce_hard"] = float(t["ce_student"].to_numpy()[hard].mean())
        rows += [{"model": model, "metric": k, "value": v} for k, v in values.items()]
    return pd.DataFrame(rows, columns=["model", "metric", "value"])


def _run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = probe_tokens(
        args.teacher,
        args.student,
        args.data,
        name=args.name,
        limit=args.limit,
        batch_size=args.batch_size,
        max_length=args.max_length,
        device=args.device,
    )
    out = Path(args.out)
    atomic_write_csv(out / "tokens.csv", tokens)
    atomic_write_csv(out / "summary.csv", summarise(tokens))
    log.info("%s: %d tokens -> %s", args.name, len(tokens), out)
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd probe --teacher DIR --student DIR --data FILE --name NAME --out DIR`."""
    p = subparsers.add_parser(
        "probe",
        help="per-token teacher UnC and the TKD / UnC x DKD split of KD",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint directory or Hub id")
    p.add_argument("--student", required=True, help="the student KD starts from (tokenizer alongside)")
    p.add_argument("--data", required=True, nargs="+", help="instruction records (.jsonl), one or more files")
    p.add_argument("--name", required=True, help="the teacher's name in the output rows")
    p.add_argument("--out", required=True, help="output directory (per-token rows and a summary)")
    p.add_argument("--limit", type=int, default=None, help="first N records (of each file)")
    p.add_argument("--batch-size", type=int, default=16, help="records per forward pass")
    p.add_argument("--max-length", type=int, default=512, help="tokens per record (truncated beyond)")
    p.add_argument("--device", default="auto", help="auto (a GPU where visible), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_run_cli)
