"""The one training loop: teacher SFT, student base pre-training and student KD.

    atkd train --config run.yaml [--set lr=1e-3 --set max_steps=200]

What one optimizer step does (read `train` top to bottom):
  1. take the next `batch_size` examples of a seeded, per-epoch shuffled stream (the data position is a
     single integer, so resuming is exact), split them into micro-batches of `micro_batch_size`; with
     `batching: bucketed` (the default) each step's examples have similar lengths (atkd.train.data
     `epoch_order`), so batches padded to their longest sequence waste little compute;
  2. count the valid target tokens of the WHOLE step, then for each micro-batch: student forward,
     teacher logits if the loss needs them (teacher forward, frozen and no grad, or rows of a
     precomputed `teacher_cache`), loss = sum over tokens / global count, backward (atkd.train.step); the
     accumulated gradient therefore equals that of one big batch (for +ATKD, each micro-batch ranks its
     own tokens into hard/easy, so keep micro_batch_size = batch_size for the paper's batch-level split);
  3. clip, AdamW, linear-warmup + cosine schedule (atkd.train.optim); log JSON lines; checkpoint
     atomically (atkd.train.checkpoint).

Determinism: same config + seed on the same machine -> same weights, with or without interruptions.
Model init, data order and RNG states all derive from `seed`; checkpoints hold model, optimizer,
scheduler, RNG states and data position; a killed run resumes from its latest checkpoint.

Output directory layout:
    final/               HF checkpoint (safetensors) + tokenizer: the trained model
    train_summary.json   written last: the run is complete iff it exists
    metrics.jsonl        one JSON object per log line (and per validation)
    train_config.json    the resolved configuration
    checkpoints/step-00000100/  resumable state (removed when the run completes, unless keep_final_checkpoint)
    hf/step-00000100/    intermediate HF checkpoints (model + tokenizer) requested with `save_hf_at`
    hf/epoch-1/          the same, requested by epoch with `save_hf_at_epochs` (an early-stopped teacher)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm

from atkd.fsutil import atomic_write_json
from atkd.models.ladder import count_params
from atkd.train import teacher_cache
from atkd.train.checkpoint import finished_run, remove_checkpoints, resume, save_hf, save_resumable
from atkd.train.config import _LEGACY_DEFAULTS, TrainConfig, load_config_file, weight_affecting
from atkd.train.data import batch_indices, collate, pack
from atkd.train.distributed import Processes
from atkd.train.metrics import MetricsLog, Window, valid_record
from atkd.train.optim import make_optimizer, make_scheduler, optimizer_step
from atkd.train.run import Run, setup_run
from atkd.train.sampling import generation_seed, student_batch, use_source
from atkd.train.step import count_targets, evaluate_loss, forward_backward

log = logging.getLogger("atkd.train")

# `train` and the CLI, plus names other modules import from here (their homes: .config, .step).
__all__ = ["train", "register_cli", "TrainConfig", "forward_backward", "evaluate_loss"]
__all__ += ["weight_affecting", "_LEGACY_DEFAULTS"]


def train(config: TrainConfig | Mapping[str, Any], *, on_step: Callable[[int], None] | None = None) -> Path:
    """Run (or resume, or skip if already complete) one training run; return the final HF model dir.

    `on_step(step)` is called after every optimizer step, once its logs and checkpoint are written
    (tests raise from it to simulate a crash).
    """
    cfg = TrainConfig.from_any(config)
    out = Path(cfg.output_dir)
    if (done := finished_run(out, cfg)) is not None:
        log.info("%s: already complete, nothing to do", out)
        return done
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes()  # one, or several under torchrun / accelerate launch (atkd.train.distributed)
    run = setup_run(cfg, procs)  # tokenizer, student, loss, teacher, data
    model, bs = run.model, cfg.batch_size
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, run.steps)
    # Pick up where an interrupted attempt left off (its latest checkpoint), if any.
    method = run.loss_fn if cfg.stateful is not None else None  # its state is checkpointed too
    progress = resume(out, cfg, model, optimizer, scheduler, procs, run.sharded, method)
    if procs.main:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    if bs % procs.size or bs // procs.size < 1:
        raise ValueError(f"batch_size {bs} must be divisible by the {procs.size} processes")
    run.micro_batch = min(run.micro_batch, bs // procs.size)  # per forward pass within this process's share

    n_params = count_params(model)
    log.info(
        "training %s (%d params) on %s: %d steps of %d examples in %d micro-batches; %d examples; "
        "loss %s; teacher %s",
        cfg.arch or cfg.model, n_params, run.device, run.steps, bs, cfg.grad_accum, len(run.train_set),
        run.loss_fn.config.name, cfg.teacher,
    )  # fmt: skip
    window = Window()
    last: dict[str, float] = {}
    bar = tqdm(
        total=run.steps,
        initial=progress.step,
        disable=not (cfg.progress and procs.main),
        dynamic_ncols=True,
        mininterval=1.0,
        desc=out.name,
        file=sys.stderr,
    )
    with MetricsLog(out / "metrics.jsonl" if procs.main else None) as metrics:
        while progress.step < run.steps:
            t0 = time.perf_counter()
            stats = _gradient(run, progress.step)
            lr = optimizer_step(model, optimizer, scheduler, cfg.max_grad_norm)
            if cfg.stateful is not None:  # its state after this step is what the checkpoint saves
                run.loss_fn.after_step(progress.step + 1, stats)
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            dt = time.perf_counter() - t0

            progress.step += 1
            step = progress.step
            progress.tokens += stats["tokens"]
            progress.target_tokens += stats["target_tokens"]
            progress.elapsed += dt
            window.add(stats, dt)
            bar.update(1)
            if step % cfg.log_every == 0 or step == run.steps:
                last = window.flush()
                metrics.emit(
                    {
                        "step": step,
                        "epoch": round(run.epoch(step), 4),
                        **last,
                        "lr": lr,
                        "tokens": progress.tokens,
                        "target_tokens": progress.target_tokens,
                        "elapsed": round(progress.elapsed, 3),
                    }
                )
                bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last['tokens_per_s']:,.0f}")
            # One process writes; with sharding every process takes part in gathering what it writes.
            if not (procs.main or run.sharded):
                continue
            if run.valid_set is not None and _due(step, run.eval_every, run.steps):
                _validate(run, step, metrics)
            if step in run.hf_saves:
                save_hf(model, out / "hf" / run.hf_saves[step], run.tokenizer, procs, run.sharded)
            if _due(step, cfg.checkpoint_every, run.steps):
                save_resumable(out, cfg, progress, model, optimizer, scheduler, procs, run.sharded, method)
            if on_step is not None and procs.main:
                on_step(step)
        bar.close()
        valid_loss = None
        if run.valid_set is not None and (procs.main or run.sharded):
            valid_loss = _validate(run, progress.step, metrics)

    final = save_hf(model, out / "final", run.tokenizer, procs, run.sharded)
    if not procs.main:
        procs.close()
        return final
    summary = {
        "final_model": str(final),
        "steps": progress.step,
        "epochs": run.epoch(progress.step),
        "examples": len(run.train_set),
        "tokens": progress.tokens,
        "target_tokens": progress.target_tokens,
        "train_seconds": round(progress.elapsed, 3),
        "tokens_per_s": round(progress.tokens / max(progress.elapsed, 1e-9), 1),
        "train_loss": last.get("loss"),  # mean over the last logging window
        "train_ce": last.get("ce"),  # KD runs: the student's CE on the targets, same window
        "valid_loss": valid_loss,
        "params": n_params,
        "teacher": cfg.teacher or (run.cache.meta["teacher"] if run.cache is not None else None),
        "device": str(run.device),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "config": cfg.to_dict(),
    }
    atomic_write_json(out / "train_summary.json", summary)  # written last: marks the run complete
    if not cfg.keep_final_checkpoint:
        remove_checkpoints(out)
    log.info("done: %s (train loss %.4f, valid loss %s)", final, last.get("loss", float("nan")), valid_loss)
    procs.close()
    return final


def _gradient(run: Run, step: int) -> dict[str, float]:
    """Accumulate the gradient of optimizer step `step` (0-based), summed over the processes; return its
    stats (loss, tokens, target tokens and maybe the student's CE and whether it read the sampling
    source), also summed over the processes."""
    cfg, procs, pad = run.cfg, run.procs, run.tokenizer.pad_token_id
    idx = procs.share(
        batch_indices(len(run.train_set), cfg.seed, step * cfg.batch_size, cfg.batch_size, run.lengths)
    )
    sampled = use_source(run.sampling, cfg.seed, step)
    if sampled and run.teacher_set is not None:
        examples = [run.teacher_set[i] for i in idx]
    elif sampled:  # on-policy: the current student answers this step's prompts
        examples = student_batch(
            run.model,
            [run.train_set[i] for i in idx],
            run.sampling,
            eos_token_id=run.tokenizer.eos_token_id,
            pad_token_id=pad,
            max_length=cfg.max_length,
            seed=generation_seed(cfg.seed, step) + procs.rank,
            device=run.device,
        )
    else:
        examples = [run.train_set[i] for i in idx]
    micro = []
    for j in range(0, len(examples), run.micro_batch):
        part, rows = examples[j : j + run.micro_batch], idx[j : j + run.micro_batch]
        if cfg.batching == "packed":  # the same examples, side by side in fewer rows
            batch, order = pack(part, pad)
            rows = [rows[k] for k in order]
        else:
            batch = collate(part, pad)
        if run.cache is not None and not sampled:
            cache = run.cache
            batch["teacher_logits"] = cache.rows(rows) if run.targets_only else cache.aligned(rows, batch)
        micro.append(batch)
    # every process divides by the step's GLOBAL target count; summing the gradients over the
    # processes then gives exactly the gradient of the whole global batch
    n_targets = int(procs.sum(sum(count_targets(b) for b in micro), run.device))
    stats = forward_backward(
        run.model, micro, run.loss_fn, run.teacher, run.device, run.bf16, cfg.fused_head, n_targets,
        grad_scale=procs.size if run.sharded else 1.0,  # FSDP averages over processes: undo that
        targets_only=run.targets_only,
    )  # fmt: skip
    if not run.sharded:  # FSDP has already summed (reduce-scattered) the gradients
        procs.sum_gradients(run.model)
    for key in ("loss", "ce", "tokens"):
        if key in stats:
            stats[key] = procs.sum(stats[key], run.device)
    if run.sampling.mixes:
        stats["sampled"] = float(sampled)
    return stats


def _validate(run: Run, step: int, metrics: MetricsLog) -> float:
    """Mean CE per target token on the validation set, logged with the time it took."""
    t0 = time.perf_counter()
    loss = evaluate_loss(
        run.model, run.valid_set, run.tokenizer.pad_token_id, run.micro_batch, run.device, run.bf16
    )
    metrics.emit(valid_record(step, run.epoch(step), loss, time.perf_counter() - t0))
    return loss


def _due(step: int, every: int | None, steps: int) -> bool:
    """Whether a periodic validation or checkpoint falls after `step` (never the last: the end covers it)."""
    return bool(every) and step % every == 0 and step < steps


# --------------------------------------------------------------------------------------------------
# CLI.


def _cmd_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    transformers.utils.logging.disable_progress_bar()  # HF's per-load/save bars only clutter job logs
    final = train(load_config_file(args.config, args.set))
    print(final)
    return 0


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)"


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd train` and `atkd teacher-cache`."""
    p = subparsers.add_parser(
        "train",
        help="train a model (teacher SFT, student pre-training, KD)",
        description=__doc__.splitlines()[0],
        epilog="config fields (defaults):\n"
        + "\n".join(f"  {f.name} = {_default(f)!r}" for f in dataclasses.fields(TrainConfig)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML or JSON file with TrainConfig fields")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field (value parsed as YAML); repeatable",
    )
    p.set_defaults(func=_cmd_train)
    teacher_cache.register_cli(subparsers)
