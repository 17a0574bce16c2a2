"""`atkd generate`: a model's answers to every prompt of an instruction file, as a new instruction file.

This is the `teacher` sampling source (SeqKD, and mixtures of teacher and ground-truth batches): the
teacher answers the training prompts once, and every run that needs those sequences reads the file.
The output has one record per input record, in the same order, with `output` replaced by the model's
answer, `complete` saying whether the answer ended with EOS (an answer cut at `max_new_tokens` is trained
without EOS, see `atkd.train.data.encode_record`) and `reference` keeping the original answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from atkd.data.jsonl import read_jsonl
from atkd.data.template import format_example
from atkd.fsutil import atomic_write_text
from atkd.models.ladder import load_model, resolve_device
from atkd.models.tokenizer import load_tokenizer
from atkd.train.sampling import generate

log = logging.getLogger(__name__)


def generate_file(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    limit: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Answer every prompt of `data` (JSONL instruction records) with `model`; write `out` atomically.

    Prompts are batched in order of length (less padding); each batch's sampling is seeded from `seed`
    and the batch number, so the file is a function of the arguments alone."""
    records = list(read_jsonl(data, {"instruction": str, "output": str}, optional={"input": str}))
    if limit is not None:
        records = records[:limit]
    if not records:
        raise ValueError(f"{data}: no records")
    tokenizer = load_tokenizer(model)
    device = resolve_device(device)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        lm = load_model(model, device).eval().requires_grad_(False)
        prompts = [
            tokenizer(format_example(r, tokenizer)[0], add_special_tokens=False)["input_ids"] for r in records
        ]
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        answers: list[list[int]] = [[] for _ in prompts]
        start = time.perf_counter()
        bar = tqdm(total=len(prompts), disable=not progress, desc="generate", dynamic_ncols=True)
        for b, lo in enumerate(range(0, len(order), batch_size)):
            chunk = order[lo : lo + batch_size]
            outs = generate(
                lm,
                [prompts[i] for i in chunk],
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed * 1_000_003 + b,
                batch_size=len(chunk),
                device=device,
            )
            for i, ids in zip(chunk, outs, strict=True):
                answers[i] = ids
            bar.update(len(chunk))
        bar.close()
    finally:
        torch.set_num_threads(previous)
    lines = []
    for rec, ids in zip(records, answers, strict=True):
        complete = bool(ids) and ids[-1] == tokenizer.eos_token_id
        text = tokenizer.decode(ids[:-1] if complete else ids, skip_special_tokens=True).strip()
        new: dict[str, Any] = {**rec, "output": text, "complete": complete, "reference": rec["output"]}
        lines.append(json.dumps(new, ensure_ascii=False) + "\n")
    atomic_write_text(out, "".join(lines))
    n_done = sum(json.loads(line)["complete"] for line in lines)
    log.info(
        "%s: %d answers (%d ended with EOS) in %.0f s", out, len(lines), n_done, time.perf_counter() - start
    )
    return Path(out)


def _run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    generate_file(
        args.model,
        args.data,
        args.out,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
        threads=args.threads,
        progress=not args.no_progress,
    )
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd generate --model DIR --data FILE.jsonl --out FILE.jsonl`."""
    p = subparsers.add_parser(
        "generate",
        help="answer every prompt of an instruction file with a model (teacher-generated sequences)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", required=True, help="model directory or Hub id (tokenizer alongside)")
    p.add_argument("--data", required=True, help="instruction records (.jsonl)")
    p.add_argument("--out", required=True, help="output .jsonl (written atomically)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="answer length cap in tokens")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=64, help="prompts per generate call")
    p.add_argument("--limit", type=int, default=None, help="first N records only")
    p.add_argument("--device", default="auto", help="auto (a GPU where visible), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_cli)
