"""The models a run trains with: the student (random init or checkpoint) and the frozen teacher and/or
its logits cache, with the checks that KD between them is meaningful (one shared vocabulary)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from atkd.losses import parse_spec
from atkd.models.ladder import build_model, load_model
from atkd.models.tokenizer import load_tokenizer
from atkd.train.config import TrainConfig
from atkd.train.data import Example
from atkd.train.sampling import parse_sampling
from atkd.train.teacher_cache import TeacherCache

log = logging.getLogger("atkd.train")


def load_student(cfg: TrainConfig, tokenizer: Any) -> torch.nn.Module:
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


def load_teacher(
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
