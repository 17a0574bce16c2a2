"""The one training loop: teacher SFT, student base pre-training and student KD.

    atkd train --config run.yaml [--set lr=1e-3 --set max_steps=200]

What one optimizer step does (read `train` top to bottom):
  1. take the next `batch_size` examples of a seeded, per-epoch shuffled stream (the data position is a
     single integer, so resuming is exact), split them into micro-batches of `micro_batch_size`; with
     `batching: bucketed` (the default) each step's examples have similar lengths (atkd.train.data
     `epoch_order`), so batches padded to their longest sequence waste little compute;
  2. count the valid target tokens of the WHOLE step, then for each micro-batch: student forward,
     teacher logits if the loss needs them (teacher forward, frozen and no grad, or rows of a
     precomputed `teacher_cache`), loss = sum over tokens / global count, backward; the accumulated
     gradient therefore equals that of one big batch (for +ATKD, each micro-batch ranks its own tokens
     into hard/easy, so keep micro_batch_size = batch_size for the paper's batch-level split);
  3. clip, AdamW, linear-warmup + cosine schedule; log JSON lines; checkpoint atomically.

Logits are aligned with labels here: `logits[:, :-1]` predicts `input_ids[:, 1:]`; labels are -100 on the
prompt and on padding, so the loss covers response tokens + EOS only (plain text: every token).

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
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
import yaml
from tqdm.auto import tqdm

from atkd.fsutil import atomic_dir, atomic_write_json, atomic_write_text, epoch_dir_name
from atkd.losses import build_loss, fused_linear_kd_loss, parse_spec
from atkd.models.ladder import LADDER, build_model, count_params, load_model, save_model
from atkd.models.tokenizer import load_tokenizer
from atkd.plugins import load_plugins
from atkd.train import teacher_cache
from atkd.train.data import BATCHINGS, IGNORE_INDEX, Example, batch_indices, collate, load_examples
from atkd.train.distributed import Processes, full_state, load_full_state, shard
from atkd.train.sampling import (
    SamplingConfig,
    check_aligned,
    generation_seed,
    parse_sampling,
    student_batch,
    use_source,
)
from atkd.train.teacher_cache import TeacherCache

log = logging.getLogger("atkd.train")
_CE = build_loss("ce")

# Config fields that do not change the trained weights: they may differ between a run and its resume.
COSMETIC_FIELDS = frozenset(
    {
        "output_dir",
        "progress",
        "log_every",
        "eval_every",
        "eval_points",
        "valid_limit",
        "checkpoint_every",
        "keep_checkpoints",
        "keep_final_checkpoint",
        "save_hf_at",
        "save_hf_at_epochs",
        "threads",
        "valid_data",
    }
)

_FLOAT_FIELDS = (
    "epochs",
    "lr",
    "min_lr_ratio",
    "warmup_ratio",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_eps",
    "max_grad_norm",
)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Exactly one of `model` (HF dir or Hub id) and `arch`
    (ladder name, random init from `seed`) says where the weights start."""

    output_dir: str
    train_data: str  # .jsonl instruction records (template, response-only loss) or a plain-text file
    model: str | None = None
    arch: str | None = None
    tokenizer: str | None = None  # defaults to `model`; required with `arch`
    teacher: str | None = None  # HF dir or Hub id; the loss needs a teacher or a teacher_cache
    teacher_cache: str | None = None  # `atkd teacher-cache` output: precomputed teacher logits on train_data
    loss: str | dict = "ce"  # a spec for atkd.losses.build_loss
    plugins: list[str] = field(default_factory=list)  # modules that register losses (atkd.plugins)
    sampling: str | dict | None = None  # atkd.train.sampling spec: source (ground_truth|teacher|student), lam
    teacher_data: str | None = None  # source `teacher`: teacher answers to train_data (`atkd generate`)
    valid_data: str | None = None  # .jsonl; mean CE per response token is logged
    seed: int = 0
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 32  # examples per optimizer step
    micro_batch_size: int | None = None  # examples per forward pass; default batch_size (no accumulation)
    # bucketed: each step's examples have similar lengths (less padding: docs/bench/batching-*.md);
    # random: a plain shuffle. Either way every example once per epoch, in an order fixed by the seed.
    batching: str = "bucketed"
    max_length: int = 512  # tokens per sequence (truncated beyond), block size for plain text
    lr: float = 2e-3
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None  # overrides warmup_ratio
    weight_decay: float = 0.0  # applied to matrices only
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = True  # bf16 autocast, on CUDA only
    deterministic: bool = True
    threads: int | None = None  # torch intra-op threads (default: torch's choice)
    log_every: int = 10
    eval_every: int | None = None  # validate every N steps (and at the end)
    eval_points: int | None = None  # or: this many validations, evenly spaced, the last at the end
    valid_limit: int | None = None  # validate on the first N records of valid_data only (cheaper)
    checkpoint_every: int | None = 100
    keep_checkpoints: int = 1
    keep_final_checkpoint: bool = False
    save_hf_at: list[int] = field(default_factory=list)  # steps at which to save an HF checkpoint
    save_hf_at_epochs: list[float] = field(default_factory=list)  # the same by epoch: hf/epoch-<e>
    progress: bool = True
    # Compute the loss from the final hidden states and the output embedding chunk by chunk
    # (atkd.losses.fused): no [tokens x vocab] logits, for large vocabularies. Same loss up to rounding.
    fused_head: bool = False
    # Shard the student (and a live teacher) over the processes with FSDP, for models that do not fit one
    # device (atkd.train.distributed). Same weights as without; only under a multi-process launcher.
    shard: bool = False

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Field -> default value (fields with a default factory give a fresh value)."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def from_any(cls, config: TrainConfig | Mapping[str, Any]) -> TrainConfig:
        """Build and validate a config from a dataclass or a mapping; unknown keys are an error."""
        if isinstance(config, TrainConfig):
            cfg = dataclasses.replace(config)
        else:
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(config) - names)
            if unknown:
                raise ValueError(
                    f"unknown training config key(s): {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
                )
            missing = [k for k in ("output_dir", "train_data") if k not in config]
            if missing:
                raise ValueError(f"training config is missing required key(s): {', '.join(missing)}")
            cfg = cls(**dict(config))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError naming the offending field (numbers written as strings, e.g. YAML's `2e-3`,
        are converted)."""
        for key in _FLOAT_FIELDS:
            value = getattr(self, key)
            if value is None and key == "max_grad_norm":
                continue
            try:
                if isinstance(value, bool):
                    raise ValueError
                setattr(self, key, float(value))
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be a number, got {value!r}") from None
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if (self.model is None) == (self.arch is None):
            raise ValueError(
                "set exactly one of 'model' (checkpoint path or Hub id) and 'arch' (ladder name)"
            )
        if self.arch is not None:
            if self.arch not in LADDER:
                raise ValueError(f"arch {self.arch!r} is not in the ladder; known: {', '.join(LADDER)}")
            if self.tokenizer is None:
                raise ValueError("'tokenizer' is required when starting from 'arch' (random init)")
        load_plugins(self.plugins)  # before the loss spec is parsed: they may register its name
        sampling = parse_sampling(self.sampling)  # raises with the valid sources/keys
        if self.teacher is not None and self.teacher_cache is not None and not sampling.mixes:
            raise ValueError("set either 'teacher' or 'teacher_cache', not both")
        if (sampling.source == "teacher") != (self.teacher_data is not None):
            raise ValueError("sampling source 'teacher' and 'teacher_data' (the generated file) go together")
        parse_spec(self.loss)  # raises with the valid names/keys
        mb = self.micro_batch_size or self.batch_size
        positive = {
            "batch_size": self.batch_size,
            "micro_batch_size": mb,
            "max_length": self.max_length,
            "log_every": self.log_every,
            "keep_checkpoints": self.keep_checkpoints,
        }
        for key, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.batch_size % mb:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size {mb}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, got {self.batching!r}")
        if self.max_length < 2:
            raise ValueError("max_length must be at least 2")
        if self.max_steps is None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("need lr > 0, 0 <= min_lr_ratio <= 1 and 0 <= warmup_ratio < 1")
        if self.eval_every is not None and self.eval_points is not None:
            raise ValueError("set eval_every (steps) or eval_points (validations per run), not both")
        counts = ("eval_every", "eval_points", "valid_limit", "checkpoint_every", "threads", "warmup_steps")
        for key in counts:
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, int) or value < (0 if key == "warmup_steps" else 1)
            ):
                raise ValueError(f"{key} must be a positive integer or null, got {value!r}")
        if any(not isinstance(s, int) or s < 1 for s in self.save_hf_at):
            raise ValueError(f"save_hf_at must be a list of positive step numbers, got {self.save_hf_at!r}")
        bad = [e for e in self.save_hf_at_epochs if isinstance(e, bool) or not isinstance(e, int | float)]
        if bad or any(e <= 0 for e in self.save_hf_at_epochs):
            raise ValueError(f"save_hf_at_epochs must be positive numbers, got {self.save_hf_at_epochs!r}")

    @property
    def grad_accum(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def total_steps(self, num_examples: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * num_examples / self.batch_size))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hf_saves(self, num_examples: int) -> dict[int, str]:
        """{step: directory name under hf/} of every requested intermediate HF checkpoint."""
        out = {s: f"step-{s:08d}" for s in self.save_hf_at}
        for e in self.save_hf_at_epochs:
            out[max(1, round(e * num_examples / self.batch_size))] = epoch_dir_name(e)
        return out


def weight_affecting(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config dict that determines the trained weights."""
    return {k: v for k, v in cfg.items() if k not in COSMETIC_FIELDS}


# A field a saved config lacks counts as its default, except where the default changed when the field was
# added: runs saved before `batching` existed used random batches.
_LEGACY_DEFAULTS = {"batching": "random"}


def _config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Weight-affecting fields that differ; a field one side lacks (a run saved before the field existed)
    counts as the value it had then (its default, or `_LEGACY_DEFAULTS`)."""
    a, b = weight_affecting(a), weight_affecting(b)
    defaults = TrainConfig.defaults() | _LEGACY_DEFAULTS
    return sorted(k for k in set(a) | set(b) if a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)))


# --------------------------------------------------------------------------------------------------
# Pieces of a step.


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warmup to 1 over `warmup` steps, then cosine down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (embeddings and linear weights), none on biases/norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)


def count_targets(batch: Mapping[str, torch.Tensor]) -> int:
    """Valid target tokens of a collated batch after the shift."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def forward_backward(
    model: torch.nn.Module,
    micro_batches: list[dict[str, torch.Tensor]],
    loss_fn: Callable[..., torch.Tensor],
    teacher: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    fused: bool = False,
    num_targets: int | None = None,
    grad_scale: float = 1.0,
) -> dict[str, float]:
    """Accumulate the gradient of one optimizer step over its micro-batches (no optimizer step).

    Each micro-batch loss is its token sum divided by the step's GLOBAL valid-token count, so the summed
    gradient equals that of one batch holding all micro-batches. Teacher logits come from `teacher` (run
    here, no grad) or, when a micro-batch carries `teacher_logits` (aligned `[B, T-1, V]`, from a teacher
    cache), from the batch. Returns the step's mean token loss, processed (non-pad) tokens and target
    tokens (and, with a teacher, the student's CE on the targets). With `fused`, the loss is computed from
    the hidden states and output embeddings (`fused_linear_kd_loss`), student and live teacher alike, and
    no full logits exist (nor the CE monitor, which would need them).
    """
    if fused:
        return _forward_backward_fused(model, micro_batches, loss_fn, teacher, device, bf16, num_targets)
    if grad_scale != 1.0:
        loss_fn = _scaled(loss_fn, grad_scale)
    device = torch.device(device)
    if num_targets is None:
        num_targets = sum(count_targets(b) for b in micro_batches)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (bf16 and device.type == "cuda") else None
    total_loss, total_ce, tokens = 0.0, 0.0, 0
    for batch in micro_batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch["labels"][:, 1:]
        with amp if amp is not None else _null():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            t_logits = batch.get("teacher_logits")  # precomputed (teacher cache), already aligned
            if t_logits is None and teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits[:, :-1]
            if t_logits is not None:
                t_logits = _student_width(t_logits, logits.shape[-1])
        loss = loss_fn(logits[:, :-1], t_logits, labels, num_tokens=num_targets)
        loss.backward()
        total_loss += float(loss.detach())
        if t_logits is not None:  # also monitor the student's CE on the targets (cheap, no grad)
            with torch.no_grad():
                total_ce += float(_CE(logits[:, :-1].detach(), None, labels, num_tokens=num_targets))
        tokens += int(batch["attention_mask"].sum())
    out = {"loss": total_loss, "tokens": tokens, "target_tokens": num_targets}
    if t_logits is not None:
        out["ce"] = total_ce
    return out


class _scaled:
    """A loss whose gradient is `scale` times the loss's, reporting the unscaled value (FSDP divides the
    gradients by the number of processes; this multiplies them back)."""

    def __init__(self, loss_fn: Callable[..., torch.Tensor], scale: float) -> None:
        self.loss_fn, self.scale = loss_fn, scale

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        value = self.loss_fn(*args, **kwargs)
        return _ScaleGrad.apply(value, self.scale)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, scale):  # type: ignore[override]
        ctx.scale = scale
        return value.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad * ctx.scale, None


def _save_model(model: torch.nn.Module, path: Path, tokenizer: Any, procs: Processes, sharded: bool) -> Path:
    """Save the model as an HF checkpoint from process 0; a sharded model is gathered first (every
    process must call this then)."""
    if not sharded:
        return save_model(model, path, tokenizer) if procs.main else path
    model_sd, _ = full_state(model)
    if procs.main:
        with atomic_dir(path) as tmp:
            model.save_pretrained(tmp, state_dict=model_sd, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    return path


def _student_width(t_logits: torch.Tensor, width: int) -> torch.Tensor:
    """Teacher logits cut to the student's output width. Checked in `_teacher`: a wider teacher differs
    only by padding rows beyond the shared tokenizer (Pythia-6.9B's 50432 vs 50304), never real tokens."""
    if t_logits.shape[-1] == width:
        return t_logits
    if t_logits.shape[-1] < width:
        raise ValueError(
            f"teacher vocabulary ({t_logits.shape[-1]}) is narrower than the student's ({width})"
        )
    return t_logits[..., :width]


def _hidden_and_head(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """Final hidden states (aligned with the labels: positions :-1) and the output embedding module."""
    out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.last_hidden_state[:, :-1], model.get_output_embeddings()


def check_fused_head(model: torch.nn.Module, device: torch.device | str = "cpu") -> None:
    """Raise if the model's logits are not its output embedding applied to its final hidden states (a
    model with logit scaling or soft-capping cannot use the fused path)."""
    ids = torch.arange(1, 9, device=device).unsqueeze(0) % model.config.vocab_size
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        hidden, head = _hidden_and_head(model, batch)
        want = model(**batch).logits[:, :-1]
        got = head(hidden)
    model.train(was_training)
    if not torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-4):
        raise ValueError(
            f"fused_head: {type(model).__name__}'s logits are not its output embedding of the final hidden "
            "states (logit scaling or soft-capping?); train it with fused_head: false"
        )


def _forward_backward_fused(
    model: torch.nn.Module,
    micro_batches: list[dict[str, torch.Tensor]],
    loss_fn: Callable[..., torch.Tensor],
    teacher: torch.nn.Module | None,
    device: torch.device | str,
    bf16: bool,
    num_targets: int | None = None,
) -> dict[str, float]:
    device = torch.device(device)
    if num_targets is None:
        num_targets = sum(count_targets(b) for b in micro_batches)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (bf16 and device.type == "cuda") else None
    total_loss, tokens = 0.0, 0
    for batch in micro_batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch["labels"][:, 1:]
        teacher_args: dict[str, Any] = {}
        with amp if amp is not None else _null():
            hidden, head = _hidden_and_head(model, batch)
            width = head.weight.shape[0]
            if batch.get("teacher_logits") is not None:
                teacher_args["teacher_logits"] = _student_width(batch["teacher_logits"], width)
            elif teacher is not None:
                with torch.no_grad():
                    t_hidden, t_head = _hidden_and_head(teacher, batch)
                t_bias = None if t_head.bias is None else t_head.bias[:width]
                teacher_args.update(
                    teacher_hidden=t_hidden, teacher_weight=t_head.weight[:width], teacher_bias=t_bias
                )
        loss = fused_linear_kd_loss(
            loss_fn, hidden, head.weight, labels, bias=head.bias, num_tokens=num_targets, **teacher_args
        )
        loss.backward()
        total_loss += float(loss.detach())
        tokens += int(batch["attention_mask"].sum())
    return {"loss": total_loss, "tokens": tokens, "target_tokens": num_targets}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    examples: list[Example],
    pad_token_id: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> float:
    """Mean cross-entropy per target token (response + EOS for records) over `examples`."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    ce = build_loss("ce")
    total, n = 0.0, 0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (bf16 and device.type == "cuda") else _null()
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_token_id).items()}
        k = count_targets(batch)
        if k == 0:
            continue
        with amp:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += float(ce(logits[:, :-1], None, batch["labels"][:, 1:])) * k
        n += k
    model.train(was_training)
    return total / max(n, 1)


# --------------------------------------------------------------------------------------------------
# Checkpoints.


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete resumable checkpoints, oldest first (temp dirs of an interrupted write are ignored)."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / "state.pt").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(output_dir: Path, state: dict[str, Any], keep: int) -> Path:
    """Write `state` to checkpoints/step-N atomically, then drop all but the newest `keep`."""
    path = output_dir / "checkpoints" / f"step-{state['step']:08d}"
    with atomic_dir(path) as tmp:
        torch.save(state, tmp / "state.pt")
    for old in checkpoint_dirs(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path / "state.pt", map_location="cpu", weights_only=False)


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep only metric lines up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line + "\n")
        except json.JSONDecodeError:  # a blank line or one cut short by the kill
            continue
    atomic_write_text(path, "".join(kept))


# --------------------------------------------------------------------------------------------------
# The run.


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def _finished(output_dir: Path, cfg: TrainConfig) -> Path | None:
    """The final model dir of a completed identical run in `output_dir`, else None (error if different)."""
    summary = output_dir / "train_summary.json"
    if not summary.is_file():
        return None
    done = json.loads(summary.read_text(encoding="utf-8"))
    diff = _config_diff(done["config"], cfg.to_dict())
    if diff:
        raise ValueError(
            f"{output_dir} holds a finished run with a different config (fields: "
            f"{', '.join(diff)}); use another output_dir or delete it"
        )
    wanted = [f"step-{s:08d}" for s in cfg.save_hf_at] + [epoch_dir_name(e) for e in cfg.save_hf_at_epochs]
    if missing := [name for name in wanted if not (output_dir / "hf" / name / "config.json").is_file()]:
        log.info("%s: finished, but without hf/%s; training again (same result)", output_dir, missing[0])
        return None
    return output_dir / "final"


def _runtime(cfg: TrainConfig) -> torch.device:
    """Threads, deterministic kernels (the cuBLAS variable must precede CUDA's first use), seeds."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    return _device(cfg.device)


def _student(cfg: TrainConfig, tokenizer: Any) -> torch.nn.Module:
    """Random init from a ladder shape (`arch`), or the checkpoint / Hub id in `model`."""
    if cfg.arch is not None:
        return build_model(
            cfg.arch,
            len(tokenizer),
            seed=cfg.seed,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    model = load_model(cfg.model)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"model {cfg.model} has {model.config.vocab_size} embeddings but the tokenizer "
            f"has {len(tokenizer)} tokens"
        )
    return model


def _check_widths(what: str, teacher_width: int, student: torch.nn.Module, tokenizer: Any) -> None:
    """Teacher and student output widths must agree, except that a teacher may have extra padding rows
    beyond every real token (its logits are then cut to the student's width)."""
    width = student.config.vocab_size
    if teacher_width == width:
        return
    if teacher_width > width >= len(tokenizer):
        log.info(
            "%s: %d output rows, the student %d: extra rows are padding, cut", what, teacher_width, width
        )
        return
    raise ValueError(
        f"{what} has vocab_size {teacher_width}, the student {width} (tokenizer {len(tokenizer)}): "
        "KD needs one shared tokenizer"
    )


def _teacher(
    cfg: TrainConfig,
    needs_teacher: bool,
    student: torch.nn.Module,
    tokenizer: Any,
    device: torch.device,
    train_set: list[Example],
) -> tuple[torch.nn.Module | None, TeacherCache | None]:
    """The frozen teacher (eval mode, no grad) and/or its logits cache on the training data, or neither;
    checks the vocabulary. Both only when sampled batches need the live teacher and ground-truth batches
    can read the cache."""
    if needs_teacher != (cfg.teacher is not None or cfg.teacher_cache is not None):
        name = parse_spec(cfg.loss).name
        raise ValueError(
            f"loss {name!r} needs a 'teacher' (or a 'teacher_cache')"
            if needs_teacher
            else f"loss {name!r} uses no teacher, but 'teacher' or 'teacher_cache' is set"
        )
    if parse_sampling(cfg.sampling).mixes and needs_teacher and cfg.teacher is None:
        raise ValueError("sampled sequences need the live 'teacher' (a teacher_cache covers train_data only)")
    cache = None
    if cfg.teacher_cache is not None:
        cache = TeacherCache(cfg.teacher_cache)
        _check_widths(f"teacher cache {cfg.teacher_cache}", cache.meta["vocab_size"], student, tokenizer)
        cache.check(cfg.train_data, tokenizer, cfg.max_length, train_set)
    if cfg.teacher is None:
        return None, cache
    teacher = load_model(cfg.teacher, device).eval().requires_grad_(False)
    _check_widths(f"teacher {cfg.teacher}", teacher.config.vocab_size, student, tokenizer)
    try:
        t_tok = load_tokenizer(cfg.teacher)
    except (OSError, ValueError):
        return teacher, cache  # a checkpoint without tokenizer files: the vocab sizes agree, nothing more
    if t_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"teacher {cfg.teacher} uses a different tokenizer from the student's")
    return teacher, cache


def _bucket_lengths(
    cfg: TrainConfig, train_set: list[Example], teacher_set: list[Example] | None, sampling: SamplingConfig
) -> tuple[int, ...] | None:
    """Sequence lengths that bucketed batching groups by (None: random batches): those of the teacher's
    file when every step reads it (SeqKD), else the ground truth's (on-policy answers are not known in
    advance; their prompts are the ground truth's)."""
    if cfg.batching == "random":
        return None
    source = teacher_set if teacher_set is not None and sampling.lam == 1 else train_set
    return tuple(len(e.input_ids) for e in source)


def train(config: TrainConfig | Mapping[str, Any], *, on_step: Callable[[int], None] | None = None) -> Path:
    """Run (or resume, or skip if already complete) one training run; return the final HF model dir.

    `on_step(step)` is called after every optimizer step, once its logs and checkpoint are written
    (tests raise from it to simulate a crash).
    """
    cfg = TrainConfig.from_any(config)
    out = Path(cfg.output_dir)
    if (done := _finished(out, cfg)) is not None:
        log.info("%s: already complete, nothing to do", out)
        return done
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes()  # one, or several under torchrun / accelerate launch (atkd.train.distributed)
    device = procs.device(_runtime(cfg))
    bf16 = cfg.bf16 and device.type == "cuda"

    # Tokenizer, student, loss, teacher, data, optimizer, schedule.
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    pad = tokenizer.pad_token_id
    model = _student(cfg, tokenizer).to(device).train()
    loss_fn = build_loss(cfg.loss)
    train_set = load_examples(cfg.train_data, tokenizer, cfg.max_length)
    teacher, cache = _teacher(cfg, loss_fn.config.needs_teacher, model, tokenizer, device, train_set)
    if cfg.fused_head:
        for m in (model, teacher):
            if m is not None:
                check_fused_head(m, device)
    sampling = parse_sampling(cfg.sampling)
    sharded = cfg.shard and procs.size > 1
    if sharded:
        if cfg.fused_head or (sampling.mixes and sampling.source == "student"):
            raise ValueError("shard: not with fused_head or on-policy sampling (yet); use one or the other")
        for m in (model, teacher):
            if m is not None:
                shard(m, procs, device)
    teacher_set = None
    if sampling.source == "teacher":
        teacher_set = load_examples(cfg.teacher_data, tokenizer, cfg.max_length)
        check_aligned(train_set, teacher_set, cfg.teacher_data)
    valid_set = load_examples(cfg.valid_data, tokenizer, cfg.max_length) if cfg.valid_data else None
    if valid_set is not None and cfg.valid_limit:
        valid_set = valid_set[: cfg.valid_limit]
    lengths = _bucket_lengths(cfg, train_set, teacher_set, sampling)
    mb, bs = cfg.micro_batch_size or cfg.batch_size, cfg.batch_size
    steps = cfg.total_steps(len(train_set))
    eval_every = cfg.eval_every or (math.ceil(steps / cfg.eval_points) if cfg.eval_points else None)
    hf_saves = cfg.hf_saves(len(train_set))
    if late := sorted(step for step in hf_saves if step > steps):
        raise ValueError(
            f"an intermediate checkpoint at step {late[0]} is requested, but the run has {steps} steps"
        )
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * steps)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, warmup, steps, cfg.min_lr_ratio)
    )

    # Resume from the latest checkpoint, if any.
    state = {"step": 0, "tokens": 0, "target_tokens": 0, "elapsed": 0.0}
    metrics_path = out / "metrics.jsonl"
    if ckpts := checkpoint_dirs(out):
        saved = _load_checkpoint(ckpts[-1])
        if diff := _config_diff(saved["config"], cfg.to_dict()):
            raise ValueError(
                f"{ckpts[-1]} was written with a different config (fields: {', '.join(diff)}); "
                "use another output_dir or delete it"
            )
        if sharded:
            load_full_state(model, optimizer, saved["model"], saved["optimizer"])
        else:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        state = {k: saved[k] for k in state}
        if saved["examples_seen"] != state["step"] * bs:
            raise ValueError(f"{ckpts[-1]}: data position does not match its step")
        if procs.main:
            _truncate_metrics(metrics_path, state["step"])
        log.info("resuming %s from step %d", out, state["step"])
    elif metrics_path.exists() and procs.main:
        metrics_path.unlink()
    if procs.main:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    if bs % procs.size or bs // procs.size < 1:
        raise ValueError(f"batch_size {bs} must be divisible by the {procs.size} processes")
    mb = min(mb, bs // procs.size)  # examples per forward pass within this process's share

    n_params = count_params(model)
    log.info(
        "training %s (%d params) on %s: %d steps of %d examples in %d micro-batches; %d examples; "
        "loss %s; teacher %s",
        cfg.arch or cfg.model,
        n_params,
        device,
        steps,
        bs,
        cfg.grad_accum,
        len(train_set),
        loss_fn.config.name,
        cfg.teacher,
    )
    window = _Window()
    last: dict[str, float] = {}
    bar = tqdm(
        total=steps,
        initial=state["step"],
        disable=not (cfg.progress and procs.main),
        dynamic_ncols=True,
        mininterval=1.0,
        desc=out.name,
        file=sys.stderr,
    )
    with (metrics_path if procs.main else Path(os.devnull)).open("a", encoding="utf-8") as metrics:

        def emit(record: dict[str, Any]) -> None:
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()

        while state["step"] < steps:
            t0 = time.perf_counter()
            idx = procs.share(batch_indices(len(train_set), cfg.seed, state["step"] * bs, bs, lengths))
            sampled = use_source(sampling, cfg.seed, state["step"])
            if sampled and teacher_set is not None:
                examples = [teacher_set[i] for i in idx]
            elif sampled:  # on-policy: the current student answers this step's prompts
                examples = student_batch(
                    model,
                    [train_set[i] for i in idx],
                    sampling,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=pad,
                    max_length=cfg.max_length,
                    seed=generation_seed(cfg.seed, state["step"]) + procs.rank,
                    device=device,
                )
            else:
                examples = [train_set[i] for i in idx]
            micro = []
            for j in range(0, len(examples), mb):
                micro.append(collate(examples[j : j + mb], pad))
                if cache is not None and not sampled:
                    micro[-1]["teacher_logits"] = cache.aligned(idx[j : j + mb], micro[-1])
            # every process divides by the step's GLOBAL target count; summing the gradients over the
            # processes then gives exactly the gradient of the whole global batch
            n_targets = int(procs.sum(sum(count_targets(b) for b in micro), device))
            stats = forward_backward(
                model, micro, loss_fn, teacher, device, bf16, cfg.fused_head, n_targets,
                grad_scale=procs.size if sharded else 1.0,  # FSDP averages over processes: undo that
            )  # fmt: skip
            if not sharded:  # FSDP has already summed (reduce-scattered) the gradients
                procs.sum_gradients(model)
            for key in ("loss", "ce", "tokens"):
                if key in stats:
                    stats[key] = procs.sum(stats[key], device)
            if sampling.mixes:
                stats["sampled"] = float(sampled)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0

            state["step"] += 1
            step = state["step"]
            state["tokens"] += stats["tokens"]
            state["target_tokens"] += stats["target_tokens"]
            state["elapsed"] += dt
            window.add(stats, dt)
            bar.update(1)
            if step % cfg.log_every == 0 or step == steps:
                last = window.flush()
                emit(
                    {
                        "step": step,
                        "epoch": round(step * bs / len(train_set), 4),
                        **last,
                        "lr": lr,
                        "tokens": state["tokens"],
                        "target_tokens": state["target_tokens"],
                        "elapsed": round(state["elapsed"], 3),
                    }
                )
                bar.set_postfix(loss=f"{last['loss']:.4f}", tok_s=f"{last['tokens_per_s']:,.0f}")
            # One process writes; with sharding every process takes part in gathering what it writes.
            if not (procs.main or sharded):
                continue
            if valid_set is not None and eval_every and step % eval_every == 0 and step < steps:
                t_valid = time.perf_counter()
                valid = evaluate_loss(model, valid_set, pad, mb, device, bf16)
                emit(_valid_record(step, bs, len(train_set), valid, time.perf_counter() - t_valid))
            if step in hf_saves:
                _save_model(model, out / "hf" / hf_saves[step], tokenizer, procs, sharded)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps:
                model_sd, optim_sd = full_state(model, optimizer) if sharded else (None, None)
                if procs.main:
                    save_checkpoint(
                        out,
                        {
                            **state,
                            "examples_seen": step * bs,
                            "config": cfg.to_dict(),
                            "model": model_sd if sharded else model.state_dict(),
                            "optimizer": optim_sd if sharded else optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "rng": _rng_state(),
                        },
                        cfg.keep_checkpoints,
                    )
            if on_step is not None and procs.main:
                on_step(step)
        bar.close()
        valid_loss = None
        if valid_set is not None and (procs.main or sharded):
            t_valid = time.perf_counter()
            valid_loss = evaluate_loss(model, valid_set, pad, mb, device, bf16)
            emit(_valid_record(state["step"], bs, len(train_set), valid_loss, time.perf_counter() - t_valid))

    final = _save_model(model, out / "final", tokenizer, procs, sharded)
    if not procs.main:
        procs.close()
        return final
    summary = {
        "final_model": str(final),
        "steps": state["step"],
        "epochs": state["step"] * bs / len(train_set),
        "examples": len(train_set),
        "tokens": state["tokens"],
        "target_tokens": state["target_tokens"],
        "train_seconds": round(state["elapsed"], 3),
        "tokens_per_s": round(state["tokens"] / max(state["elapsed"], 1e-9), 1),
        "train_loss": last.get("loss"),  # mean over the last logging window
        "train_ce": last.get("ce"),  # KD runs: the student's CE on the targets, same window
        "valid_loss": valid_loss,
        "params": n_params,
        "teacher": cfg.teacher or (cache.meta["teacher"] if cache is not None else None),
        "device": str(device),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "config": cfg.to_dict(),
    }
    atomic_write_json(out / "train_summary.json", summary)  # written last: marks the run complete
    if not cfg.keep_final_checkpoint:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    log.info("done: %s (train loss %.4f, valid loss %s)", final, last.get("loss", float("nan")), valid_loss)
    procs.close()
    return final


def _valid_record(step: int, batch_size: int, examples: int, loss: float, seconds: float) -> dict[str, Any]:
    """A metrics.jsonl validation line: step, epoch, mean CE per target token, seconds it took."""
    return {
        "step": step,
        "epoch": round(step * batch_size / examples, 4),
        "valid_loss": loss,
        "valid_seconds": round(seconds, 3),
    }


class _Window:
    """Running sums between two log lines: mean loss (and CE), processed tokens per second, and the share
    of steps whose sequences came from the sampling source."""

    def __init__(self) -> None:
        self.loss = self.ce = self.time = self.sampled = 0.0
        self.steps = self.tokens = 0
        self.has_ce = self.has_sampled = False

    def add(self, stats: Mapping[str, float], seconds: float) -> None:
        self.loss += stats["loss"]
        self.ce += stats.get("ce", 0.0)
        self.has_ce = self.has_ce or "ce" in stats
        self.sampled += stats.get("sampled", 0.0)
        self.has_sampled = self.has_sampled or "sampled" in stats
        self.steps += 1
        self.tokens += int(stats["tokens"])
        self.time += seconds

    def flush(self) -> dict[str, float]:
        out = {"loss": self.loss / self.steps}
        if self.has_ce:
            out["ce"] = self.ce / self.steps
        if self.has_sampled:
            out["sampled"] = self.sampled / self.steps
        out["tokens_per_s"] = round(self.tokens / max(self.time, 1e-9), 1)
        self.__init__()
        return out


# --------------------------------------------------------------------------------------------------
# CLI.


def load_config_file(path: str | Path | None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML/JSON config (optional) and apply `key=value` overrides (values parsed as YAML)."""
    cfg: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config is a mapping of keys to values")
        cfg.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        cfg[key.strip()] = yaml.safe_load(value)
    return cfg


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
