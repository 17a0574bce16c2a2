"""A run's parts, built from its config and checked against each other before the first step: runtime
(threads, deterministic kernels, seeds, device), tokenizer, student, loss, teacher and/or teacher cache,
data sets, and the run's shape (steps, validation points, intermediate HF checkpoints)."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from atkd.losses import KDLoss, build_loss
from atkd.models.tokenizer import load_tokenizer
from atkd.train.checkpoint import hf_saves
from atkd.train.config import TrainConfig
from atkd.train.data import Example, load_examples
from atkd.train.distributed import Processes, shard
from atkd.train.models import load_student, load_teacher
from atkd.train.sampling import SamplingConfig, check_aligned, parse_sampling
from atkd.train.stateful import build_stateful
from atkd.train.step import check_fused_head, check_packing
from atkd.train.teacher_cache import TeacherCache


@dataclass
class Run:
    """What every step of a run reads: the models, the loss, the data and the run's shape."""

    cfg: TrainConfig
    procs: Processes
    device: torch.device
    tokenizer: Any
    model: torch.nn.Module  # the student, in train mode
    loss_fn: Callable[..., torch.Tensor]
    teacher: torch.nn.Module | None  # frozen
    cache: TeacherCache | None  # teacher logits on train_data
    sampling: SamplingConfig
    sharded: bool  # FSDP over the processes
    train_set: list[Example]
    teacher_set: list[Example] | None  # sampling source `teacher`: its answers to train_data
    valid_set: list[Example] | None
    lengths: tuple[int, ...] | None  # what bucketed batching groups by (None: random batches)
    steps: int
    eval_every: int | None
    hf_saves: dict[int, str]  # {step: directory under hf/}
    micro_batch: int  # examples per forward pass
    targets_only: bool  # logits of target positions only (`step._TargetsHead`; see `targets_only`)

    @property
    def bf16(self) -> bool:
        """bf16 autocast: asked for, and on CUDA."""
        return self.cfg.bf16 and self.device.type == "cuda"

    def epoch(self, step: int) -> float:
        """Epochs of training data seen after `step` steps."""
        return step * self.cfg.batch_size / len(self.train_set)


def setup_run(cfg: TrainConfig, procs: Processes) -> Run:
    """Set up the process (`runtime`), then load and check everything the steps need."""
    device = procs.device(runtime(cfg))
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    model = load_student(cfg, tokenizer).to(device).train()
    loss_fn = build_loss(cfg.loss)
    train_set = load_examples(cfg.train_data, tokenizer, cfg.max_length)
    teacher, cache = load_teacher(cfg, loss_fn.config.needs_teacher, model, tokenizer, device, train_set)
    # after the cache's check, which is against the whole file
    start, stop = cfg.train_offset, None if cfg.train_limit is None else cfg.train_offset + cfg.train_limit
    if (start and start >= len(train_set)) or (stop is not None and stop > len(train_set)):
        asked = [f"train_offset {start}"] if start else []
        asked += [] if cfg.train_limit is None else [f"train_limit {cfg.train_limit}"]
        raise ValueError(f"{' + '.join(asked)}: {cfg.train_data} has {len(train_set)} examples")
    train_set = train_set[start:stop]
    if cache is not None:
        cache.skip(start)
    models = [m for m in (model, teacher) if m is not None]
    if cfg.fused_head:
        for m in models:
            check_fused_head(m, device)
    if cfg.batching == "packed":
        if loss_fn.config.atkd is not None and loss_fn.config.atkd.split == "sequence":
            raise ValueError(
                "batching: packed puts several examples in one row, so +ATKD's split: sequence would rank "
                "tokens per packed row, not per example; use batching: random or bucketed, or split: batch"
            )
        for m in models:
            check_packing(m, device)
    sampling = parse_sampling(cfg.sampling)
    sharded = cfg.shard and procs.size > 1
    if sharded:
        if cfg.fused_head or (sampling.mixes and sampling.source == "student"):
            raise ValueError("shard: not with fused_head or on-policy sampling (yet); use one or the other")
        for m in models:
            shard(m, procs, device)
    teacher_set = None
    if sampling.source == "teacher":
        teacher_set = load_examples(cfg.teacher_data, tokenizer, cfg.max_length)[start:stop]
        check_aligned(train_set, teacher_set, cfg.teacher_data)
    valid_set = load_examples(cfg.valid_data, tokenizer, cfg.max_length) if cfg.valid_data else None
    if valid_set is not None and cfg.valid_limit:
        valid_set = valid_set[: cfg.valid_limit]
    steps = cfg.total_steps(len(train_set))
    if cfg.stateful is not None:  # e.g. TAID: the method wraps the loss and keeps state across steps
        loss_fn = build_stateful(cfg.stateful, loss_fn, steps)
    saves = hf_saves(cfg, len(train_set))
    if late := sorted(step for step in saves if step > steps):
        raise ValueError(
            f"an intermediate checkpoint at step {late[0]} is requested, but the run has {steps} steps"
        )
    return Run(
        cfg=cfg,
        procs=procs,
        device=device,
        tokenizer=tokenizer,
        model=model,
        loss_fn=loss_fn,
        teacher=teacher,
        cache=cache,
        sampling=sampling,
        sharded=sharded,
        train_set=train_set,
        teacher_set=teacher_set,
        valid_set=valid_set,
        lengths=_bucket_lengths(cfg, train_set, teacher_set, sampling),
        steps=steps,
        eval_every=cfg.eval_every or (math.ceil(steps / cfg.eval_points) if cfg.eval_points else None),
        hf_saves=saves,
        micro_batch=cfg.micro_batch_size or cfg.batch_size,
        targets_only=targets_only(cfg, loss_fn, models, device, sharded),
    )


def targets_only(
    cfg: TrainConfig,
    loss_fn: Callable[..., torch.Tensor],
    models: list[torch.nn.Module],
    device: torch.device,
    sharded: bool,
) -> bool:
    """Whether steps compute logits at the target positions only (`cfg.targets_only`, the default). The
    loss is the same (every loss sums over target tokens), and a batch of instructions spends about two
    thirds of its positions on prompts and padding. Not for a stateful method (it may read the logits'
    layout), a +ATKD split per sequence (it needs the rows), `fused_head` (no logits at all), FSDP, or a
    model whose logits are not its output embedding of the final hidden states."""
    if not cfg.targets_only or cfg.fused_head or cfg.stateful is not None or sharded:
        return False
    if not isinstance(loss_fn, KDLoss):
        return False
    if loss_fn.config.atkd is not None and loss_fn.config.atkd.split != "batch":
        return False
    try:
        for m in models:
            check_fused_head(m, device)
    except ValueError:
        return False
    return True


def runtime(cfg: TrainConfig) -> torch.device:
    """Threads, deterministic kernels (the cuBLAS variable must precede CUDA's first use), seeds; return
    the requested device."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} requested but CUDA is not available")
    return device


def _bucket_lengths(
    cfg: TrainConfig, train_set: list[Example], teacher_set: list[Example] | None, sampling: SamplingConfig
) -> tuple[int, ...] | None:
    """Sequence lengths that bucketed batching groups by (None: random batches): those of the teacher's
    file when every step reads it (SeqKD), else the ground truth's (on-policy answers are not known in
    advance; their prompts are the ground truth's)."""
    if cfg.batching != "bucketed":  # random and packed batches are a plain shuffle
        return None
    source = teacher_set if teacher_set is not None and sampling.lam == 1 else train_set
    return tuple(len(e.input_ids) for e in source)
