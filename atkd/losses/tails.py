"""What a sparse teacher says about its tail: estimators of the teacher's distribution beyond the top K.

The top-K view (atkd.losses.sparse) stores the K most probable tokens, the exact log p_g of the target and
the tail's log-mass P_tail, and with the `bucket` estimator compares teacher and student on one tail
event. That is close for divergences weighted by the teacher (fkl, tvd, jsd) but not for reverse KL,
whose gradient in the student's logit z_v,

    d RKL / d z_v = q_v (log q_v - log p_v - RKL),

needs the teacher's log p_v wherever the *student* has mass: on one bucket the student's spread over the
teacher's tail goes unpenalised. The other estimators store a little more per position and rebuild a
full distribution over the vocabulary, on which every divergence is computed as against a dense teacher:

    p~_v = p_v                                   v among the top K, or v = g (stored, exact)
    p~_v = P_tail * s_v / sum_{u in tail} s_u    v in the tail             (exact mass, estimated shape)

with the tail's shape s:

    uniform  s_v = 1                             no extra bytes
    lowrank  s_v = exp(mean_v + c . basis_v)     c: the position's logits (centred over the vocabulary)
                                                 projected on their first r principal directions, fitted
                                                 once per cache on a sample of positions (`fit_lowrank`);
                                                 r float16 numbers per position
    sampled  s_v = (1 - eps) n_v / M + eps / |tail|   n_v: how often v is among M tokens drawn with
                                                 replacement from the teacher's tail p_v / P_tail
                                                 (Sparse Logit Sampling, Anshumann et al., ACL 2025:
                                                 E[n_v / M] = p_v / P_tail, so a loss linear in p, such
                                                 as forward KL, is unbiased); M token ids per position.
                                                 eps > 0 keeps log p~ finite where nothing was drawn
                                                 (reverse KL), at the price of a bias

Because p_g and P_tail are stored exactly, UnC = 1 - p_g, the binary (TKD) part and the +ATKD split are
exact under every estimator; only the non-target distribution's shape is estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from atkd.losses.divergences import NEG

ESTIMATORS = ("bucket", "uniform", "lowrank", "sampled")


@dataclass(frozen=True)
class TailModel:
    """How a sparse teacher's tail is read (see the module docstring). `mean` [V] and `basis` [V, r]
    (orthonormal columns) for `lowrank`; `eps` for `sampled`. Shared by every position of a cache."""

    kind: str = "bucket"
    mean: Tensor | None = None
    basis: Tensor | None = None
    eps: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ESTIMATORS:
            raise ValueError(f"tail estimator {self.kind!r} unknown; valid: {', '.join(ESTIMATORS)}")
        if self.kind == "lowrank" and (self.mean is None or self.basis is None):
            raise ValueError("a lowrank tail needs its mean and basis (fit_lowrank)")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"tail eps must be in [0, 1], got {self.eps}")

    @property
    def dense(self) -> bool:
        """Whether losses read a rebuilt full distribution (all estimators but `bucket`)."""
        return self.kind != "bucket"


def bytes_per_position(k: int, vocab: int, kind: str = "bucket", width: int = 0) -> int:
    """What a sparse cache stores per position: K token ids (16 bits up to 65,536 tokens, else 32), K
    float16 log-probabilities, the float32 target log-probability and tail log-mass, and the tail
    estimator's own data: 2 bytes per lowrank coefficient, one token id per sampled token."""
    index = 2 if vocab <= 1 << 16 else 4
    extra = {"lowrank": 2 * width, "sampled": index * width}.get(kind, 0)
    return k * (index + 2) + 8 + extra


def fit_lowrank(logits: Tensor, rank: int, *, seed: int = 0) -> TailModel:
    """The first `rank` principal directions of teacher logits `[N, V]` (each row centred over the
    vocabulary, so a per-position shift, which softmax ignores, is not a direction): a `lowrank` model."""
    z = logits.reshape(-1, logits.shape[-1]).to(torch.float64)
    if not 0 < rank < min(z.shape):
        raise ValueError(f"rank must be in (0, {min(z.shape)}), got {rank}")
    z = z - z.mean(-1, keepdim=True)
    mean = z.mean(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, v = torch.svd_lowrank(z - mean, q=min(rank + 10, min(z.shape)), niter=6)
    return TailModel("lowrank", mean=mean.float(), basis=v[:, :rank].contiguous().float())


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    x = x.clamp_max(0.0)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def tail_mask(indices: Tensor, target: Tensor, vocab: int) -> Tensor:
    """[N, V] True on the tail: tokens neither among a row's top K `indices` [N, K] nor its `target` [N]."""
    mask = torch.ones(indices.shape[0], vocab, dtype=torch.bool, device=indices.device)
    mask.scatter_(-1, indices.long(), False)
    return mask.scatter_(-1, target.long().unsqueeze(-1), False)


def encode_extra(
    model: TailModel,
    logits: Tensor,
    indices: Tensor,
    labels: Tensor,
    samples: int = 0,
    *,
    generator: torch.Generator | None = None,
    index_dtype: torch.dtype = torch.long,
) -> Tensor | None:
    """The per-position data of `model` from dense `logits` [N, V] whose top K is `indices` [N, K]:
    lowrank coefficients [N, r] (float16), `samples` tail tokens [N, M] drawn from p_v / P_tail
    (`index_dtype`), or None (bucket, uniform)."""
    if model.kind == "lowrank":
        z = logits.to(torch.float64)
        z = z - z.mean(-1, keepdim=True) - model.mean.to(z)
        return (z @ model.basis.to(z)).to(torch.float16)
    if model.kind == "sampled":
        if samples < 1:
            raise ValueError(f"a sampled tail needs samples >= 1, got {samples}")
        mask = tail_mask(indices, labels.clamp_min(0), logits.shape[-1])
        lp = torch.log_softmax(logits.to(torch.float64), -1).masked_fill(~mask, float("-inf"))
        w = (lp - lp.logsumexp(-1, keepdim=True)).exp().nan_to_num(0.0)
        empty = w.sum(-1) <= 0  # no tail left (K covers the rest): any draw, it gets no mass
        w[empty] = mask[empty].to(w.dtype) + (~mask[empty].any(-1, keepdim=True)).to(w.dtype)
        drawn = torch.multinomial(w, samples, replacement=True, generator=generator)
        return drawn.to(index_dtype)
    return None


def tail_log_shape(model: TailModel, extra: Tensor | None, mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[N, V] log s_v of the tail's shape (any scale; only the tail's entries, `mask`, are read)."""
    n, vocab = mask.shape
    if model.kind == "uniform":
        return torch.zeros(n, vocab, dtype=dtype, device=mask.device)
    if model.kind == "lowrank":
        return model.mean.to(dtype) + extra.to(dtype) @ model.basis.to(dtype).T
    counts = torch.zeros(n, vocab, dtype=dtype, device=mask.device)
    counts.scatter_add_(-1, extra.long(), torch.ones(extra.shape, dtype=dtype, device=mask.device))
    share = (1 - model.eps) * counts / extra.shape[-1] + model.eps / mask.sum(-1, keepdim=True).clamp_min(1)
    return share.log()


def rebuild(
    model: TailModel, indices: Tensor, logp: Tensor, target: Tensor, tail: Tensor, extra: Tensor | None,
    labels: Tensor, vocab: int, dtype: torch.dtype,
) -> Tensor:  # fmt: skip
    """Full teacher log-probabilities [N, V] from a flat sparse view (module docstring): the stored top K
    (non-target entries renormalised to the exact 1 - p_g together with the tail, as the bucket reads
    them), the exact log p_g, and the tail mass spread in the estimator's shape. Zero entries are `NEG`."""
    y = labels.clamp_min(0).long()
    idx = indices.long()
    in_top = idx == y.unsqueeze(-1)
    lp_g = target.to(dtype)
    nontarget = torch.cat((logp.to(dtype).masked_fill(in_top, NEG), tail.to(dtype).unsqueeze(-1)), -1)
    nontarget = nontarget - torch.logsumexp(nontarget, -1, keepdim=True) + log1mexp(lp_g).unsqueeze(-1)
    mask = tail_mask(idx, y, vocab)
    shape = tail_log_shape(model, extra, mask, dtype).masked_fill(~mask, float("-inf"))
    norm = shape.logsumexp(-1, keepdim=True)
    out = (shape - norm + nontarget[:, -1:]).nan_to_num(NEG, NEG, NEG).clamp_min(NEG)
    out = out.masked_fill(~mask, NEG)
    out = out.scatter(-1, idx, nontarget[:, :-1].clamp_min(NEG))
    return out.scatter(-1, y.unsqueeze(-1), lp_g.unsqueeze(-1))
