"""The student's loss on collated batches: one optimizer step's gradient, and the validation loss.

Logits are aligned with labels here: `logits[:, :-1]` predicts `input_ids[:, 1:]`; labels are -100 on the
prompt and on padding, so the loss covers response tokens + EOS only (plain text: every token).

The step runs the student (and the teacher, if the loss needs one) through one of three output heads: the
model's logits; (`targets_only`) the output embedding applied to the final hidden states of the target
positions only, which gives the same loss without computing, copying or differentiating logits of prompt
and padding positions (about two thirds of the tokens of an instruction batch); or (`fused_head`) the final
hidden states and output embedding, from which `atkd.losses.fused_linear_kd_loss` computes the same loss
chunk by chunk without `[tokens x vocab]` logits. Everything else (devices, autocast, teacher logits from
a cache, token counts, gradient scaling, the sums reported) is the same for all three.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from atkd.losses import SparseTeacher, build_loss, fused_linear_kd_loss
from atkd.train.data import IGNORE_INDEX, Example, collate, pack, target_mask

_CE = build_loss("ce")
_Batch = dict[str, torch.Tensor]


def count_targets(batch: Mapping[str, torch.Tensor]) -> int:
    """Valid target tokens of a collated batch after the shift."""
    return int(target_mask(batch).sum())


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the model is called with: ids and attention mask, or for a packed batch (`data.pack`) ids and
    restarting position ids, with no mask and no cache (so transformers masks block-diagonally)."""
    if "position_ids" in batch:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def real_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Non-padding tokens of a collated or packed batch."""
    return int(batch["attention_mask" if "attention_mask" in batch else "token_mask"].sum())


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked for, else nothing (CPU runs in float32)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _LogitsHead:
    """The model's logits `[B, T-1, V]`, student and teacher; the loss reads them directly."""

    full_logits = True  # so the student's CE on the targets can be monitored for free

    @staticmethod
    def labels(labels: torch.Tensor) -> torch.Tensor:
        return labels

    @staticmethod
    def student(model: torch.nn.Module, batch: _Batch) -> tuple[torch.Tensor, int]:
        logits = model(**model_inputs(batch)).logits
        return logits[:, :-1], logits.shape[-1]

    @staticmethod
    def teacher(teacher: torch.nn.Module, batch: _Batch, width: int) -> dict[str, Any]:
        logits = teacher(**model_inputs(batch)).logits
        return {"teacher_logits": _student_width(logits[:, :-1], width)}

    @staticmethod
    def loss(
        loss_fn: Callable[..., torch.Tensor],
        student: torch.Tensor,
        labels: torch.Tensor,
        num_targets: int,
        teacher: Mapping[str, Any],
    ) -> torch.Tensor:
        return loss_fn(student, teacher.get("teacher_logits"), labels, num_tokens=num_targets)


class _TargetsHead:
    """The logits of the target positions only, `[1, N, V]` in the batch's row-major order: the output
    embedding applied to those positions' final hidden states. The loss sees one row of N valid tokens, so
    this head serves token-level losses whose +ATKD split is over the batch (`setup_run` decides)."""

    full_logits = True

    @staticmethod
    def labels(labels: torch.Tensor) -> torch.Tensor:
        return labels[labels != IGNORE_INDEX].unsqueeze(0)

    @staticmethod
    def student(model: torch.nn.Module, batch: _Batch) -> tuple[torch.Tensor, int]:
        hidden, head = _hidden_and_head(model, batch)
        logits = head(hidden[target_mask(batch)])
        return logits.unsqueeze(0), logits.shape[-1]

    @staticmethod
    def teacher(teacher: torch.nn.Module, batch: _Batch, width: int) -> dict[str, Any]:
        hidden, head = _hidden_and_head(teacher, batch)
        logits = head(hidden[target_mask(batch)]).unsqueeze(0)
        return {"teacher_logits": _student_width(logits, width)}

    loss = _LogitsHead.loss


class _FusedHead:
    """The final hidden states and the output embedding, student and (live) teacher; no full logits."""

    full_logits = False
    labels = _LogitsHead.labels

    @staticmethod
    def student(model: torch.nn.Module, batch: _Batch) -> tuple[tuple[torch.Tensor, Any], int]:
        hidden, head = _hidden_and_head(model, batch)
        return (hidden, head), head.weight.shape[0]

    @staticmethod
    def teacher(teacher: torch.nn.Module, batch: _Batch, width: int) -> dict[str, Any]:
        hidden, head = _hidden_and_head(teacher, batch)
        bias = None if head.bias is None else head.bias[:width]
        return {"teacher_hidden": hidden, "teacher_weight": head.weight[:width], "teacher_bias": bias}

    @staticmethod
    def loss(
        loss_fn: Callable[..., torch.Tensor],
        student: tuple[torch.Tensor, Any],
        labels: torch.Tensor,
        num_targets: int,
        teacher: Mapping[str, Any],
    ) -> torch.Tensor:
        hidden, head = student
        return fused_linear_kd_loss(
            loss_fn, hidden, head.weight, labels, bias=head.bias, num_tokens=num_targets, **teacher
        )


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
    targets_only: bool = False,
) -> dict[str, float]:
    """Accumulate the gradient of one optimizer step over its micro-batches (no optimizer step).

    Each micro-batch loss is its token sum divided by the step's GLOBAL valid-token count, so the summed
    gradient equals that of one batch holding all micro-batches. Teacher logits come from `teacher` (run
    here, no grad) or, when a micro-batch carries `teacher_logits` (aligned `[B, T-1, V]`, from a teacher
    cache), from the batch. Returns the step's mean token loss, processed (non-pad) tokens and target
    tokens (and, with a teacher, the student's CE on the targets). With `fused`, the loss is computed from
    the hidden states and output embeddings (`fused_linear_kd_loss`), student and live teacher alike, and
    no full logits exist (nor the CE monitor, which would need them). With `targets_only`, only the target
    positions get logits (`_TargetsHead`) and cached teacher logits are those rows, `[1, N, V]`
    (`TeacherCache.rows`). `grad_scale` multiplies the gradient, not the reported loss (FSDP averages the
    gradients over processes; this undoes that).
    """
    device = torch.device(device)
    if num_targets is None:
        num_targets = sum(count_targets(b) for b in micro_batches)
    head = _FusedHead if fused else (_TargetsHead if targets_only else _LogitsHead)
    total_loss, total_ce, tokens, monitor_ce = 0.0, 0.0, 0, False
    for batch in micro_batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = head.labels(batch["labels"][:, 1:])
        with autocast(device, bf16):
            student, width = head.student(model, batch)
            teacher_args: dict[str, Any] = {}
            if batch.get("teacher_logits") is not None:  # precomputed (teacher cache), already aligned
                teacher_args["teacher_logits"] = _student_width(batch["teacher_logits"], width)
            elif teacher is not None:
                with torch.no_grad():
                    teacher_args = head.teacher(teacher, batch, width)
        loss = head.loss(loss_fn, student, labels, num_targets, teacher_args)
        if grad_scale != 1.0:
            loss = _ScaleGrad.apply(loss, grad_scale)
        loss.backward()
        total_loss += float(loss.detach())
        monitor_ce = head.full_logits and bool(teacher_args)
        if monitor_ce:  # also the student's CE on the targets (cheap, no grad)
            with torch.no_grad():
                total_ce += float(_CE(student.detach(), None, labels, num_tokens=num_targets))
        tokens += real_tokens(batch)
    out = {"loss": total_loss, "tokens": tokens, "target_tokens": num_targets}
    if monitor_ce:
        out["ce"] = total_ce
    return out


class _ScaleGrad(torch.autograd.Function):
    """Identity on the value, `scale` times the gradient."""

    @staticmethod
    def forward(ctx, value, scale):  # type: ignore[override]
        ctx.scale = scale
        return value.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad * ctx.scale, None


def _student_width(t_logits: torch.Tensor | SparseTeacher, width: int) -> torch.Tensor | SparseTeacher:
    """Teacher logits cut to the student's output width. Checked when the teacher is loaded: a wider
    teacher differs only by padding rows beyond the shared tokenizer (Pythia-6.9B's 50432 vs 50304), never
    real tokens. A sparse teacher's tokens must all lie within the student's width."""
    if isinstance(t_logits, SparseTeacher):
        if t_logits.indices.numel() and int(t_logits.indices.max()) >= width:
            raise ValueError(f"the sparse teacher keeps tokens beyond the student's vocabulary ({width})")
        return t_logits
    if t_logits.shape[-1] == width:
        return t_logits
    if t_logits.shape[-1] < width:
        raise ValueError(
            f"teacher vocabulary ({t_logits.shape[-1]}) is narrower than the student's ({width})"
        )
    return t_logits[..., :width]


def _hidden_and_head(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """Final hidden states (aligned with the labels: positions :-1) and the output embedding module."""
    out = model.base_model(**model_inputs(batch))
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


def check_packing(model: torch.nn.Module, device: torch.device | str = "cpu") -> None:
    """Raise unless the model keeps packed examples apart (`data.pack`): the logits of two sequences
    packed in one row must equal those of each run alone (an architecture whose attention ignores
    restarting position ids would let them see each other)."""
    vocab = model.config.vocab_size
    seqs = [Example(tuple((7 * i + 3) % vocab for i in range(n)), (IGNORE_INDEX,) * n) for n in (6, 4, 2)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        batch, order = pack(seqs, 0, width=6)  # rows: [6], [4, 2]
        packed = model(**model_inputs({k: v.to(device) for k, v in batch.items()})).logits
        ok, row, at = batch["input_ids"].shape[0] == 2, 0, 0
        for k in order:
            n = len(seqs[k].input_ids)
            if at + n > packed.shape[1]:
                row, at = row + 1, 0
            alone = model(input_ids=torch.tensor([seqs[k].input_ids], device=device)).logits[0]
            ok = ok and torch.allclose(packed[row, at : at + n].float(), alone.float(), rtol=1e-4, atol=1e-4)
            at += n
    model.train(was_training)
    if not ok:
        raise ValueError(
            f"batching: packed: {type(model).__name__} lets packed examples attend to each other (its "
            "attention does not follow restarting position ids); use batching: random or bucketed"
        )


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
    total, n = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_token_id).items()}
        k = count_targets(batch)
        if k == 0:
            continue
        with autocast(device, bf16):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += float(_CE(logits[:, :-1], None, batch["labels"][:, 1:])) * k
        n += k
    model.train(was_training)
    return total / max(n, 1)
