"""A training run's configuration: `TrainConfig`, its validation, and which fields may differ on resume.

A run is fully determined by its config (plus the machine): `weight_affecting` is the part that fixes the
trained weights, so a resume (or a finished run in the same output_dir) is refused when it differs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atkd.losses import parse_spec
from atkd.models.ladder import LADDER
from atkd.plugins import load_plugins
from atkd.train.data import BATCHINGS
from atkd.train.sampling import parse_sampling

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
    train_data: str  # .jsonl instruction records, or a corpus (.jsonl `text` records, or text; train.data)
    # train on the first N examples of train_data only: a smaller instruction set of the same world (the
    # records are in random order), read against a teacher cache of the whole file
    train_limit: int | None = None
    # skip the first N examples first (then train_limit counts from there): e.g. students on records a
    # teacher tuned with train_limit never saw; a teacher cache of the whole file is read at their rows
    train_offset: int = 0
    model: str | None = None
    arch: str | None = None
    tokenizer: str | None = None  # defaults to `model`; required with `arch`
    teacher: str | None = None  # HF dir or Hub id; the loss needs a teacher or a teacher_cache
    teacher_cache: str | None = None  # `atkd teacher-cache` output: precomputed teacher logits on train_data
    loss: str | dict = "ce"  # a spec for atkd.losses.build_loss
    plugins: list[str] = field(default_factory=list)  # modules that register losses (atkd.plugins)
    sampling: str | dict | None = None  # atkd.train.sampling spec: source (ground_truth|teacher|student), lam
    stateful: dict | None = None  # a registered stateful method around the loss, {name, **params}
    teacher_data: str | None = None  # source `teacher`: teacher answers to train_data (`atkd generate`)
    valid_data: str | None = None  # .jsonl; mean CE per response token is logged
    seed: int = 0
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 32  # examples per optimizer step
    micro_batch_size: int | None = None  # examples per forward pass; default batch_size (no accumulation)
    # bucketed: each step's examples have similar lengths (less padding: docs/bench/batching-*.md);
    # random: a plain shuffle; packed: a plain shuffle, each step's examples packed side by side in rows
    # (little padding, the batches of `random`). Every example once per epoch, in an order fixed by the seed.
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
    # Logits at the target positions only (response + EOS) where the loss allows it
    # (atkd.train.run.targets_only): the same loss without the logits of prompt and padding positions.
    targets_only: bool = True
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
        if self.stateful is not None:
            from atkd.train.stateful import STATEFUL

            if not isinstance(self.stateful, Mapping) or self.stateful.get("name") not in STATEFUL:
                valid = ", ".join(sorted(STATEFUL)) or "none registered (name its module in plugins)"
                raise ValueError(f"stateful: {self.stateful!r} names no registered method; valid: {valid}")
            if self.fused_head:
                raise ValueError("stateful: a stateful method reads the logits; not with fused_head")
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
        counts = ("eval_every", "eval_points", "valid_limit", "train_limit", "checkpoint_every", "threads")
        counts += ("warmup_steps",)
        for key in counts:
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, int) or value < (0 if key == "warmup_steps" else 1)
            ):
                raise ValueError(f"{key} must be a positive integer or null, got {value!r}")
        if (
            isinstance(self.train_offset, bool)
            or not isinstance(self.train_offset, int)
            or self.train_offset < 0
        ):
            raise ValueError(f"train_offset must be a non-negative integer, got {self.train_offset!r}")
        if any(not isinstance(s, int) or s < 1 for s in self.save_hf_at):
            raise ValueError(f"save_hf_at must be a list of positive step numbers, got {self.save_hf_at!r}")
        bad = [e for e in self.save_hf_at_epochs if isinstance(e, bool) or not isinstance(e, int | float)]
        if bad or any(e <= 0 for e in self.save_hf_at_epochs):
            raise ValueError(f"save_hf_at_epochs must be positive numbers, got {self.save_hf_at_epochs!r}")

    @property
    def grad_accum(self) -> int:
        """Micro-batches per optimizer step."""
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def total_steps(self, num_examples: int) -> int:
        """Optimizer steps of the run: `max_steps`, else `epochs` over `num_examples` examples."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * num_examples / self.batch_size))

    def to_dict(self) -> dict[str, Any]:
        """The config as saved (train_config.json, checkpoints, train_summary.json)."""
        return dataclasses.asdict(self)


def weight_affecting(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config dict that determines the trained weights."""
    return {k: v for k, v in cfg.items() if k not in COSMETIC_FIELDS}


# A field a saved config lacks counts as its default, except where the default changed when the field was
# added: runs saved before `batching` existed used random batches.
_LEGACY_DEFAULTS = {"batching": "random"}


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Weight-affecting fields that differ; a field one side lacks (a run saved before the field existed)
    counts as the value it had then (its default, or `_LEGACY_DEFAULTS`)."""
    a, b = weight_affecting(a), weight_affecting(b)
    defaults = TrainConfig.defaults() | _LEGACY_DEFAULTS
    return sorted(k for k in set(a) | set(b) if a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)))


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
