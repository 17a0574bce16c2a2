"""What a run leaves on disk to resume, skip or share: resumable checkpoints and HF checkpoints.

    checkpoints/step-00000100/state.pt   model, optimizer, scheduler, RNG states, data position, config
    hf/step-00000100/, hf/epoch-1/       intermediate HF checkpoints (`save_hf_at`, `save_hf_at_epochs`)
    final/                               the trained model; train_summary.json marks the run complete

Every write is atomic (a killed run leaves the previous state intact). A resume restores everything the
next step depends on, so an interrupted run ends with the same weights and metrics as an uninterrupted
one; a checkpoint or finished run written with a different weight-affecting config is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from atkd.fsutil import atomic_dir, epoch_dir_name
from atkd.models.ladder import save_model
from atkd.train.config import TrainConfig, config_diff
from atkd.train.distributed import Processes, full_state, load_full_state
from atkd.train.metrics import truncate_metrics

log = logging.getLogger("atkd.train")


@dataclasses.dataclass
class Progress:
    """The counters a run carries from step to step (the first entries of every checkpoint)."""

    step: int = 0
    tokens: int = 0
    target_tokens: int = 0
    elapsed: float = 0.0


def step_dir_name(step: int) -> str:
    """`step-00000100`: the directory of a step's checkpoint, resumable or HF."""
    return f"step-{step:08d}"


# --------------------------------------------------------------------------------------------------
# A finished run, and HF checkpoints.


def finished_run(output_dir: Path, cfg: TrainConfig) -> Path | None:
    """The final model dir of a completed identical run in `output_dir`, else None (error if different)."""
    summary = output_dir / "train_summary.json"
    if not summary.is_file():
        return None
    done = json.loads(summary.read_text(encoding="utf-8"))
    _require_same_config(done["config"], cfg, f"{output_dir} holds a finished run")
    wanted = [step_dir_name(s) for s in cfg.save_hf_at] + [epoch_dir_name(e) for e in cfg.save_hf_at_epochs]
    if missing := [name for name in wanted if not (output_dir / "hf" / name / "config.json").is_file()]:
        log.info("%s: finished, but without hf/%s; training again (same result)", output_dir, missing[0])
        return None
    return output_dir / "final"


def hf_saves(cfg: TrainConfig, num_examples: int) -> dict[int, str]:
    """{step: directory name under hf/} of every requested intermediate HF checkpoint."""
    out = {s: step_dir_name(s) for s in cfg.save_hf_at}
    for e in cfg.save_hf_at_epochs:
        out[max(1, round(e * num_examples / cfg.batch_size))] = epoch_dir_name(e)
    return out


def save_hf(model: torch.nn.Module, path: Path, tokenizer: Any, procs: Processes, sharded: bool) -> Path:
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


# --------------------------------------------------------------------------------------------------
# Resumable checkpoints.


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
    path = output_dir / "checkpoints" / step_dir_name(state["step"])
    with atomic_dir(path) as tmp:
        torch.save(state, tmp / "state.pt")
    for old in checkpoint_dirs(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def save_resumable(
    output_dir: Path,
    cfg: TrainConfig,
    progress: Progress,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    procs: Processes,
    sharded: bool,
    method: Any = None,
) -> None:
    """Checkpoint everything the next step depends on, from process 0 (a sharded model is gathered
    first: every process must call this then), with a stateful method's state."""
    model_sd, optim_sd = full_state(model, optimizer) if sharded else (None, None)
    if not procs.main:
        return
    state = {
        **dataclasses.asdict(progress),
        "examples_seen": progress.step * cfg.batch_size,
        "config": cfg.to_dict(),
        "model": model_sd if sharded else model.state_dict(),
        "optimizer": optim_sd if sharded else optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
    }
    if method is not None:
        state["method"] = method.state_dict()
    save_checkpoint(output_dir, state, cfg.keep_checkpoints)


def resume(
    output_dir: Path,
    cfg: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    procs: Processes,
    sharded: bool,
    method: Any = None,
) -> Progress:
    """Restore the latest checkpoint in `output_dir` (with a stateful method's state), if any, and cut
    metrics.jsonl back to its step (a fresh start removes it); return where the run stands."""
    metrics_path = output_dir / "metrics.jsonl"
    if not (ckpts := checkpoint_dirs(output_dir)):
        if metrics_path.exists() and procs.main:
            metrics_path.unlink()
        return Progress()
    saved = torch.load(ckpts[-1] / "state.pt", map_location="cpu", weights_only=False)
    _require_same_config(saved["config"], cfg, f"{ckpts[-1]} was written")
    if sharded:
        load_full_state(model, optimizer, saved["model"], saved["optimizer"])
    else:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if method is not None:
        method.load_state_dict(saved["method"])
    _set_rng_state(saved["rng"])
    progress = Progress(**{f.name: saved[f.name] for f in dataclasses.fields(Progress)})
    if saved["examples_seen"] != progress.step * cfg.batch_size:
        raise ValueError(f"{ckpts[-1]}: data position does not match its step")
    if procs.main:
        truncate_metrics(metrics_path, progress.step)
    log.info("resuming %s from step %d", output_dir, progress.step)
    return progress


def remove_checkpoints(output_dir: Path) -> None:
    """Drop the resumable state of a completed run."""
    shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)


def _require_same_config(saved: Mapping[str, Any], cfg: TrainConfig, what: str) -> None:
    if diff := config_diff(saved, cfg.to_dict()):
        raise ValueError(
            f"{what} with a different config (fields: {', '.join(diff)}); use another output_dir or delete it"
        )


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
