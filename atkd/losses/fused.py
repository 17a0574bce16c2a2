"""The fused output-layer path for large vocabularies: student logits are computed chunk by chunk from the
final hidden states and the output embedding, together with the loss and its gradients, so that no
`[tokens x vocab]` tensor is ever held, neither for the student nor (given its hidden states and head)
for the teacher.

    loss = fused_linear_kd_loss("fkl", h, model.get_output_embeddings().weight, labels,
                                teacher_hidden=th, teacher_weight=teacher_head.weight)

`h` is `[..., d]` aligned with `labels` `[...]` (h[b, t] predicts labels[b, t]); the result equals
`build_loss(spec)(h @ W.T + b, teacher_logits, labels)` (same spec, same +ATKD split, same normalisation
by `num_tokens`), and its gradients with respect to `h`, `W` and `b` equal those of that unfused
expression. Peak memory is the inputs, the gradients of `h`, `W` and `b`, and one chunk's
`[chunk x vocab]` temporaries (chunk = `chunk_size` valid tokens; automatic: 2^24 / vocab elements, at
least 8 rows). `benchmarks/fused_head.py` measures the saving.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from atkd.losses.core import (
    KDLoss,
    LossConfig,
    _compute_dtype,
    _weights,
    check_sparse,
    chunk_bounds,
    log_uncertainty,
    parse_spec,
    teacher_chunk,
    teacher_log_uncertainty,
)
from atkd.losses.sparse import SparseTeacher

FUSED_CHUNK_ELEMENTS = 1 << 24  # [chunk x vocab] float32 elements per chunk when chunk_size is automatic


def _rows(n: int, vocab: int, chunk_size: int | None) -> list[tuple[int, int]]:
    return chunk_bounds(n, vocab, chunk_size, auto_elements=FUSED_CHUNK_ELEMENTS, min_rows=8)


def _logits(h: Tensor, w: Tensor, b: Tensor | None, dtype: torch.dtype) -> Tensor:
    out = h.to(dtype) @ w.to(dtype).T
    return out if b is None else out + b.to(dtype)


class _Teacher:
    """Teacher logits for a set of rows: from full logits, or computed from hidden states and a head; or a
    sparse teacher's rows."""

    def __init__(
        self,
        logits: Tensor | None,
        hidden: Tensor | None,
        w: Tensor | None,
        b: Tensor | None,
        sparse: SparseTeacher | None = None,
    ):
        self.logits, self.hidden, self.w, self.b, self.sparse = logits, hidden, w, b, sparse

    def rows(self, rows: Tensor, dtype: torch.dtype) -> Tensor | SparseTeacher | None:
        if self.sparse is not None:
            return self.sparse.rows(rows)
        if self.logits is not None:
            return self.logits.index_select(0, rows).to(dtype)
        if self.hidden is not None:
            return _logits(self.hidden.index_select(0, rows), self.w, self.b, dtype)
        return None


class _FusedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, b, teacher, idx, y, weights, cfg, chunk_size):  # type: ignore[override]
        cdtype = _compute_dtype(h.dtype)
        want = ctx.needs_input_grad[:3]
        grad_h = torch.zeros(h.shape, dtype=cdtype, device=h.device) if want[0] else None
        grad_w = torch.zeros(w.shape, dtype=cdtype, device=w.device) if want[1] else None
        grad_b = torch.zeros(b.shape, dtype=cdtype, device=b.device) if (b is not None and want[2]) else None
        need_grad = any(g is not None for g in (grad_h, grad_w, grad_b))
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        inv_t = 1.0 / cfg.temperature
        w_cd = w.detach().to(cdtype)  # no copy unless the head is in lower precision
        b_cd = None if b is None else b.detach().to(cdtype)
        for lo, hi in _rows(idx.numel(), w.shape[0], chunk_size):
            rows = idx[lo:hi]
            h_c = h.detach().index_select(0, rows).to(cdtype)
            s_c = _logits(h_c, w_cd, b_cd, cdtype) * inv_t
            t_c = teacher.rows(rows, cdtype)
            if isinstance(t_c, Tensor):
                t_c = t_c * inv_t
            loss, g = teacher_chunk(cfg, s_c, t_c, y[lo:hi], weights.rows(lo, hi), need_grad)
            total += loss.detach().to(torch.float64)
            if g is None:
                continue
            g = g.mul_(inv_t)  # d loss / d raw logits of these rows
            if grad_h is not None:
                grad_h.index_copy_(0, rows, g @ w_cd)
            if grad_w is not None:
                grad_w.addmm_(g.T, h_c)
            if grad_b is not None:
                grad_b.add_(g.sum(0))
            del g, s_c, t_c
        ctx.save_for_backward(
            *(None if g is None else g.to(x.dtype) for g, x in ((grad_h, h), (grad_w, w), (grad_b, b)))
        )
        return total.to(cdtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grads = list(ctx.saved_tensors)
        if not torch.equal(grad_out, torch.ones_like(grad_out)):
            grads = [None if g is None else g * grad_out.to(g.dtype) for g in grads]
        return (*grads, None, None, None, None, None, None)


def fused_linear_kd_loss(
    spec: str | Mapping[str, Any] | LossConfig | KDLoss,
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    teacher_logits: Tensor | SparseTeacher | None = None,
    teacher_hidden: Tensor | None = None,
    teacher_weight: Tensor | None = None,
    teacher_bias: Tensor | None = None,
    num_tokens: int | float | Tensor | None = None,
) -> Tensor:
    """`build_loss(spec)(hidden @ weight.T + bias, teacher logits, labels)` without a `[tokens x vocab]`
    tensor. The teacher is given as full logits or, to bound its memory too, as its hidden states and
    head (`teacher_hidden` `[..., d_t]`, `teacher_weight` `[V, d_t]`), or as a `SparseTeacher` (its top K,
    `teacher_logits=`). The teacher gets no gradient."""
    cfg = spec.config if isinstance(spec, KDLoss) else parse_spec(spec)
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} are not aligned: labels must "
            "have the hidden states' shape without the feature axis"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be [vocab, {hidden.shape[-1]}], got {tuple(weight.shape)}")
    vocab, d = weight.shape
    if teacher_logits is not None and teacher_hidden is not None:
        raise ValueError("give the teacher as teacher_logits or as teacher_hidden + teacher_weight, not both")
    if teacher_hidden is not None:
        if teacher_weight is None or teacher_weight.shape[0] != vocab:
            raise ValueError(f"teacher_hidden needs teacher_weight [vocab={vocab}, d_t]")
        teacher = _Teacher(
            None,
            teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1]),
            teacher_weight.detach(),
            None if teacher_bias is None else teacher_bias.detach(),
        )
    elif isinstance(teacher_logits, SparseTeacher):
        teacher = _Teacher(
            None, None, None, None, sparse=check_sparse(cfg, teacher_logits, labels.shape, vocab)
        )
    elif teacher_logits is not None:
        if tuple(teacher_logits.shape) != (*labels.shape, vocab):
            raise ValueError(
                f"teacher logits {tuple(teacher_logits.shape)} must be {(*labels.shape, vocab)} "
                "(labels x vocab)"
            )
        teacher = _Teacher(teacher_logits.detach().reshape(-1, vocab), None, None, None)
    else:
        teacher = _Teacher(None, None, None, None)
    has_teacher = teacher_logits is not None or teacher_hidden is not None
    if cfg.needs_teacher and not has_teacher:
        raise ValueError(f"loss {cfg.name!r} needs the teacher (teacher_logits or teacher_hidden)")
    h_flat = hidden.reshape(-1, d)
    flat_labels = labels.reshape(-1)
    idx = torch.nonzero(flat_labels != cfg.ignore_index).squeeze(-1)
    y = flat_labels.index_select(0, idx)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= vocab):
        raise ValueError(
            f"labels must be in [0, {vocab}) or {cfg.ignore_index}; got {int(y.min())}..{int(y.max())}"
        )
    seq_ids = torch.div(idx, labels.shape[-1] if labels.dim() else 1, rounding_mode="floor")
    n = idx.numel()
    norm = float(num_tokens) if num_tokens is not None else float(n)
    if n == 0 or norm <= 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    log_unc = None
    if cfg.atkd is not None and teacher.sparse is not None:  # exact: the stored log p_g
        log_unc = teacher_log_uncertainty(cfg, teacher.sparse, idx, y)
    elif cfg.atkd is not None:
        # the split ranks every valid token of the call: one gradient-free teacher pass
        log_unc = torch.empty(n, dtype=torch.float64, device=hidden.device)
        cdtype = _compute_dtype(hidden.dtype)
        with torch.no_grad():
            for lo, hi in _rows(n, vocab, cfg.chunk_size):
                t_c = teacher.rows(idx[lo:hi], cdtype) / cfg.temperature
                log_unc[lo:hi] = log_uncertainty(t_c, y[lo:hi]).to(torch.float64)
    weights = _weights(cfg, log_unc, seq_ids, norm)
    return _FusedLinear.apply(h_flat, weight, bias, teacher, idx, y, weights, cfg, cfg.chunk_size)
