"""+ATKD on forward KL in one pass over the teacher: the chunk kernels.

+ATKD splits the tokens of a batch by the teacher's UnC = 1 - p_g, so its weights are known only once
every token's UnC is. The two-pass path (`core._FusedKD`) first reads the whole teacher for UnC, then
reads it again for the loss. Here one pass over a chunk of teacher and student rows gives every
per-token quantity at once (UnC, the binary part TKD, the non-target part DKD), and the gradient in a
form that the weights can finish afterwards without the teacher:

    d L / d s = w_nt * (q^ - p^) + w_bin * c * (q^ - e_g),      c = p_g - q_g

where p^, q^ are the non-target distributions (0 at the target g). The pass stores `q^ - p^` (the
only term that needs the teacher) in the gradient buffer and keeps `c` and the student's non-target
log-sum-exp `m_s` per token; `finish_rows` then scales each row by its `w_nt` and, for rows whose binary
weight is not zero, adds `w_bin * c * (q^ - e_g)` with q^ recomputed from the student's logits.

Each distribution costs one exponential per entry: the non-target log-sum-exp is taken as
`max + log(sum(exp(x - max)))` over the entries with the target set to `NEG`, exact for confident
teachers (no `1 - p_g` cancellation), and the same exponentials, normalised, are p^ (or q^).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from atkd.losses.divergences import NEG


def nontarget_softmax_(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """In place on `x` [C, V] (a chunk's own copy of logits): turn it into the non-target distribution
    (exactly 0 at the target) and return (target logit z_g [C], non-target log-sum-exp m [C])."""
    idx = target.unsqueeze(-1)
    z_g = x.gather(-1, idx).squeeze(-1)
    x.scatter_(-1, idx, NEG)
    mx = x.amax(-1, keepdim=True)
    x.sub_(mx).exp_()
    total = x.sum(-1, keepdim=True)
    x.div_(total)
    return z_g, (mx + total.log()).squeeze(-1)


def log_binary(z_g: Tensor, m: Tensor) -> Tensor:
    """log [p_g, 1 - p_g] [C, 2] from the target logit and the non-target log-sum-exp."""
    return torch.stack((-F.softplus(m - z_g), -F.softplus(z_g - m)), dim=-1)


@dataclass
class ChunkStats:
    """Per-token results of one chunk (compute dtype): the binary and non-target parts of KL, the
    teacher's log UnC, and for the gradient c = p_g - q_g and the student's non-target log-sum-exp."""

    tkd: Tensor
    dkd: Tensor
    log_unc: Tensor
    c: Tensor
    m_s: Tensor


def decoupled_fkl_pass(t: Tensor, s: Tensor, y: Tensor, want_grad: bool) -> tuple[ChunkStats, Tensor | None]:
    """One chunk of (temperature-scaled, compute-dtype) teacher `t` and student `s` logits, both this
    chunk's own copies (overwritten): its `ChunkStats` and, if `want_grad`, q^ - p^ [C, V]."""
    p_hat, q_hat = t.clone(), s.clone()
    z_t, m_t = nontarget_softmax_(p_hat, y)
    z_s, m_s = nontarget_softmax_(q_hat, y)
    lbin_p, lbin_q = log_binary(z_t, m_t), log_binary(z_s, m_s)
    tkd = (lbin_p.exp() * (lbin_p - lbin_q)).sum(-1)
    # DKD = sum_v p^_v (log p^_v - log q^_v), log p^ = t - m_t: the target column is 0 * finite
    diff = t.sub_(s).sub_((m_t - m_s).unsqueeze(-1))
    dkd = diff.mul_(p_hat).sum(-1)
    stats = ChunkStats(tkd, dkd, lbin_p[:, 1], lbin_p[:, 0].exp() - lbin_q[:, 0].exp(), m_s)
    return stats, (q_hat.sub_(p_hat) if want_grad else None)


def finish_rows(
    g: Tensor,
    student: Callable[[Tensor], Tensor],
    y: Tensor,
    m_s: Tensor,
    c: Tensor,
    w_bin: Tensor,
    w_nt: Tensor,
    inv_t: float,
) -> Tensor:
    """Finish a chunk of stored gradient rows `g` = (q^ - p^) / T [C, V] (compute dtype) with the
    weights: `w_nt * g`, plus `w_bin * c * (q^ - e_g) / T` where `w_bin` is not zero. `student(rows)`
    gives the temperature-scaled student logits of those rows of the chunk (a fresh copy), read only
    for rows with a binary weight; `m_s` and `c` come from the pass."""
    g.mul_(w_nt.unsqueeze(-1))
    rows = torch.nonzero(w_bin != 0).squeeze(-1)
    if rows.numel() == 0:
        return g
    coef = (w_bin * c).index_select(0, rows) * inv_t
    target = y.index_select(0, rows).unsqueeze(-1)
    q_hat = student(rows).sub_(m_s.index_select(0, rows).unsqueeze(-1)).exp_()
    q_hat.scatter_(-1, target, 0.0).mul_(coef.unsqueeze(-1))
    g.index_add_(0, rows, q_hat)
    return g.index_put_((rows, target.squeeze(-1)), -coef)
