"""TRL's GKD trainer as a study baseline: train the study's student base with `trl`'s `GKDTrainer` from the
run's teacher on the study's training records, and leave a run the workflow evaluates like its own.

    python examples/trl_gkd/train.py --student BASE --teacher TEACHER --data train.jsonl \
        --valid valid.jsonl --atkd off --seed 1 --out RUN --settings '{"distill": {...}, "params": {...}}'

What it shares with the study's own `gkd` (atkd.train with `loss: {name: jsd, beta}` and `sampling:
{source: student, lam, max_new_tokens}`): the student base, the teacher, the training records and their
prompt template and tokenisation (atkd.train.data), the optimizer (AdamW, no weight decay), peak learning
rate, linear warmup then cosine decay, gradient clipping, batch size, epochs, beta, lambda, the sampling
temperature and budget. What stays TRL's: the data order and the per-step on-policy draw (Python's
`random`), sampling with `generate`, the generalized JSD and its normalisation (`GKDTrainer.
generalized_jsd_loss`, tokens counted by the Trainer on the batch *before* on-policy sampling replaces it),
the teacher run live at every step in float32 (the study's gkd reads ground-truth steps from its cache).

+ATKD (`--atkd on`): TRL's loss is replaced, in the same `compute_loss`, by the study's KD loss
(atkd.losses) with the same generalized JSD and the ATKD token split; everything else stays TRL's.

Writes RUN/final (model and tokenizer), RUN/metrics.jsonl (train loss every `log_every` steps, validation CE
per target token `eval_points` times) and RUN/train_summary.json whose `config` holds every setting that
determines the weights. TRL's own checkpoints (RUN/trl) make a killed run resume where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # GKDTrainer lives in trl.experimental (1.16)

import torch
import transformers
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl.experimental.gkd import GKDConfig, GKDTrainer

from atkd.fsutil import atomic_dir, atomic_write_text
from atkd.losses import build_loss
from atkd.train import data
from atkd.train.data import IGNORE_INDEX, Example, load_sft
from atkd.train.step import evaluate_loss

# TRL's names for the study's `gkd` settings, with the study's defaults (config/full.yaml's gkd)
DEFAULT_PARAMS = {"beta": 0.5, "lmbda": 0.5, "max_new_tokens": 64, "temperature": 1.0}


def prompt_length(example: Example) -> int:
    """Tokens before the first target (the prompt of an instruction record)."""
    return next(i for i, y in enumerate(example.labels) if y != IGNORE_INDEX)


def collate(rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """TRL's GKD batch: the whole sequences right-padded as atkd.train pads them (labels -100 on the prompt
    and padding), and the prompts left-padded for on-policy generation."""
    batch = data.collate([Example(tuple(r["input_ids"]), tuple(r["labels"])) for r in rows], pad_id)
    p_width = max(r["prompt_len"] for r in rows)
    batch["prompts"] = torch.full((len(rows), p_width), pad_id)
    batch["prompt_attention_mask"] = torch.zeros((len(rows), p_width), dtype=torch.long)
    for i, r in enumerate(rows):
        p = r["prompt_len"]
        batch["prompts"][i, p_width - p :] = torch.tensor(r["input_ids"][:p])
        batch["prompt_attention_mask"][i, p_width - p :] = 1
    return batch


class AtkdGKDTrainer(GKDTrainer):
    """GKDTrainer whose per-token divergence is the study's loss (+ATKD): same batches, same teacher."""

    def __init__(self, *args: Any, study_loss: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.study_loss = study_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        student = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        self.teacher_model.eval()
        with torch.no_grad():
            teacher = self.teacher_model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            )
        loss = self.study_loss(student.logits[:, :-1], teacher.logits[:, :-1], inputs["labels"][:, 1:])
        return (loss, student) if return_outputs else loss


class StudyLog(TrainerCallback):
    """metrics.jsonl as the study's trainer writes it: train loss lines and validation lines."""

    def __init__(self, path: Path, valid: list[Example], pad_id: int, eval_steps: set[int], batch: int):
        self.path, self.valid, self.pad_id, self.eval_steps, self.batch = (
            path,
            valid,
            pad_id,
            eval_steps,
            batch,
        )

    def _emit(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and state.global_step:
            self._emit(
                {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": logs["loss"]}
            )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.valid and state.global_step in self.eval_steps:
            t0 = time.perf_counter()
            loss = evaluate_loss(model, self.valid, self.pad_id, self.batch, model.device)
            model.train()
            self._emit(
                {
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 4),
                    "valid_loss": loss,
                    "valid_seconds": round(time.perf_counter() - t0, 3),
                }
            )
            self.last_valid = loss


def eval_steps(total: int, points: int | None) -> set[int]:
    """`points` validations evenly spaced, the last at the end (as atkd.train's `eval_points`)."""
    if not points:
        return {total}
    return {max(1, round(total * i / points)) for i in range(1, points + 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", required=True, help="the student base (a Hugging Face folder)")
    ap.add_argument("--teacher", required=True, help="the teacher (a Hugging Face folder)")
    ap.add_argument("--data", required=True, help="training records (JSONL: instruction, input, output)")
    ap.add_argument("--valid", help="validation records (JSONL), for the validation curve")
    ap.add_argument("--atkd", choices=("off", "on"), default="off")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="the run's folder")
    ap.add_argument(
        "--settings",
        default="{}",
        help="the study's settings for this run (JSON: distill, "
        "params, atkd, threads), as the workflow's run_params('METHOD')['settings'] gives them",
    )
    args = ap.parse_args(argv)
    settings = json.loads(args.settings)
    distill = settings.get("distill", {})
    params = DEFAULT_PARAMS | settings.get("params", {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise SystemExit(f"trl_gkd: unknown params {unknown}; valid: {', '.join(DEFAULT_PARAMS)}")
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(args.student)
    max_length = int(distill.get("max_length", 512))
    train = load_sft(args.data, tokenizer, max_length)
    valid = load_sft(args.valid, tokenizer, max_length) if args.valid else []
    valid = valid[: distill["valid_limit"]] if distill.get("valid_limit") else valid
    rows = [
        {"input_ids": list(e.input_ids), "labels": list(e.labels), "prompt_len": prompt_length(e)}
        for e in train
    ]
    batch_size = int(distill.get("batch_size", 32))
    epochs = float(distill.get("epochs", 1.0))
    # as atkd.train counts them (TrainConfig.total_steps): epochs x records / batch, rounded up
    total = (
        int(distill["max_steps"])
        if distill.get("max_steps")
        else max(1, math.ceil(epochs * len(rows) / batch_size))
    )

    config = GKDConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        max_steps=total,
        learning_rate=float(distill.get("lr", 2e-3)),
        lr_scheduler_type="cosine",
        warmup_steps=round(float(distill.get("warmup_ratio", 0.03)) * total),
        weight_decay=float(distill.get("weight_decay", 0.0)),
        max_grad_norm=float(distill.get("max_grad_norm", 1.0)),
        seed=args.seed,
        data_seed=args.seed,
        max_length=max_length,
        lmbda=float(params["lmbda"]),
        beta=float(params["beta"]),
        temperature=float(params["temperature"]),
        max_new_tokens=int(params["max_new_tokens"]),
        logging_steps=int(distill.get("log_every", 10)),
        save_strategy="steps",
        save_steps=int(distill.get("checkpoint_every", 100) or 100),
        save_total_limit=1,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        disable_tqdm=False,
        dataloader_drop_last=False,
    )
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32)
    pad_id = tokenizer.pad_token_id
    common = dict(
        model=student,
        teacher_model=teacher,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        data_collator=lambda b: collate(b, pad_id),
    )
    if args.atkd == "on":
        loss = {
            "name": "jsd",
            "beta": float(params["beta"]),
            "atkd": settings.get("atkd_options", {"k": 0.5, "lam": 0.2}),
        }
        trainer = AtkdGKDTrainer(**common, study_loss=build_loss(loss))
    else:
        loss = {"name": "jsd", "beta": float(params["beta"])}
        trainer = GKDTrainer(**common)
    metrics = out / "metrics.jsonl"
    resume = any((out / "trl").glob("checkpoint-*")) if (out / "trl").is_dir() else False
    if not resume and metrics.exists():
        metrics.unlink()  # a fresh start: no stale log lines
    log = StudyLog(metrics, valid, pad_id, eval_steps(total, distill.get("eval_points")), batch_size)
    trainer.add_callback(log)
    random.seed(args.seed)  # TRL's on-policy draw uses Python's random (set_seed also seeds it)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)

    final = out / "final"
    with atomic_dir(final) as tmp:  # complete or absent, and readable under the user's umask (safetensors
        trainer.model.save_pretrained(tmp)  # writes its files private)
        tokenizer.save_pretrained(tmp)
    summary = {
        "final_model": str(final),
        "steps": trainer.state.global_step,
        "epochs": epochs,
        "examples": len(rows),
        "train_seconds": round(time.perf_counter() - t0, 3),
        "train_loss": result.training_loss,
        "valid_loss": getattr(log, "last_valid", None),
        "teacher": args.teacher,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        # what determines the weights (runs.csv keys the "same objective" marks on it)
        "config": {
            "trainer": f"trl {trl.__version__} GKDTrainer",
            "model": args.student,
            "teacher": args.teacher,
            "train_data": args.data,
            "seed": args.seed,
            "loss": loss,
            "lmbda": params["lmbda"],
            "temperature": params["temperature"],
            "max_new_tokens": params["max_new_tokens"],
            "max_steps": total,
            "batch_size": batch_size,
            "max_length": max_length,
            "lr": config.learning_rate,
            "warmup_steps": config.warmup_steps,
            "weight_decay": config.weight_decay,
            "max_grad_norm": config.max_grad_norm,
        },
    }
    atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out / "trl", ignore_errors=True)  # TRL's resume checkpoints: the run is complete


if __name__ == "__main__":
    main()
