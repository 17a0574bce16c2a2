"""A teacher kept as its top K tokens: what a sparse teacher cache stores, and how every loss reads it.

Per position with target g, the teacher's distribution p is kept as

    indices  [K]   the K most probable tokens (any order)
    logp     [K]   their log-probabilities
    target   []    log p_g, exact (whether or not g is among the K)
    tail     []    log of the mass outside the K tokens and g: log(1 - p_g - sum_{v in K, v != g} p_v)

which is 4K + 8 bytes per position with 16-bit indices and log-probabilities and 32-bit target and tail.
A tail estimator (`tail_model`, atkd.losses.tails) may add per-position data (`extra`) that says how the
tail mass is spread over the tail's tokens; losses then read the full distribution it rebuilds, chunk by
chunk, instead of the K + 2 events below.

A loss sees the teacher and the student on the same K + 2 events: the K tokens other than g (the target's
own column, if g is among them, gets probability 0 for both), g itself, and the tail bucket. The teacher
side is the stored values, its non-target entries renormalised to sum to exactly 1 - p_g; the student side
is exact: its log-probabilities of the K tokens and g, and the log-sum-exp of all its other logits. So

    UnC = 1 - p_g, the binary (TKD) part and the +ATKD hard/easy split are exact;
    the full and non-target (DKD) parts are the divergence of the two coarsened distributions, which for
    an f-divergence (KL, reverse KL, TVD, JSD, ...) is at most the dense one (data processing), and equal
    to it when the tail is empty (K covers every token).

The student's gradient flows through the gathers and the tail's log-sum-exp to every one of its logits.
Stored log-probabilities are those at temperature 1, so a sparse teacher needs `temperature: 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from atkd.losses.divergences import NEG
from atkd.losses.tails import TailModel, encode_extra, log1mexp, rebuild

FIELDS = ("indices", "logp", "target", "tail")


@dataclass(frozen=True)
class SparseTeacher:
    """Top-K teacher distributions aligned with `labels` `[...]`: `indices` and `logp` `[..., K]`, `target`
    and `tail` `[...]` (see the module docstring); with a dense `tail_model`, its per-position `extra`
    `[..., E]` (or None). Entries at ignored positions are never read."""

    indices: Tensor
    logp: Tensor
    target: Tensor
    tail: Tensor
    extra: Tensor | None = None
    tail_model: TailModel | None = None

    @property
    def rebuilds(self) -> bool:
        """Whether losses read the full distribution that the tail model rebuilds (not K + 2 events)."""
        return self.tail_model is not None and self.tail_model.dense

    def _map(self, fn) -> SparseTeacher:
        """The same teacher with `fn` applied to every per-position tensor."""
        fields = {name: fn(getattr(self, name)) for name in FIELDS}
        return replace(self, **fields, extra=None if self.extra is None else fn(self.extra))

    @property
    def k(self) -> int:
        return int(self.indices.shape[-1])

    def check(self, labels_shape: Sequence[int], vocab: int) -> None:
        """Raise ValueError unless the fields are aligned with labels of `labels_shape` and K < vocab."""
        want = tuple(labels_shape)
        shapes = {name: tuple(getattr(self, name).shape) for name in FIELDS}
        if shapes["target"] != want or shapes["tail"] != want or shapes["indices"] != shapes["logp"]:
            raise ValueError(f"sparse teacher fields {shapes} are not aligned with labels {want}")
        if shapes["indices"][:-1] != want:
            raise ValueError(f"sparse teacher indices {shapes['indices']} must be labels {want} x K")
        if not 0 < self.k < vocab:
            raise ValueError(f"a sparse teacher keeps 0 < K < vocab tokens; got K={self.k}, vocab {vocab}")
        if self.extra is not None and tuple(self.extra.shape[:-1]) != want:
            raise ValueError(f"sparse teacher extra {tuple(self.extra.shape)} must be labels {want} x E")
        model = self.tail_model
        if model is not None and model.kind == "lowrank" and model.mean.shape[-1] != vocab:
            raise ValueError(f"lowrank tail of {model.mean.shape[-1]} tokens for a vocabulary of {vocab}")
        if model is not None and model.kind in ("lowrank", "sampled") and self.extra is None:
            raise ValueError(f"a {model.kind} tail needs its per-position data (extra)")

    def flat(self) -> SparseTeacher:
        """The same teacher with the positions flattened to one axis."""
        n = self.target.numel()
        return self._map(lambda x: x.reshape(n, *x.shape[self.target.dim() :]))

    def rows(self, rows: Tensor) -> SparseTeacher:
        """The flat teacher's `rows` (a flat teacher only)."""
        return self._map(lambda x: x.index_select(0, rows))

    def detach(self) -> SparseTeacher:
        return self._map(Tensor.detach)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SparseTeacher:
        return self._map(lambda x: x.to(device, non_blocking=non_blocking))

    def rebuild(self, labels: Tensor, vocab: int, dtype: torch.dtype) -> Tensor:
        """The full log-probabilities [N, V] of a flat teacher under its tail model (atkd.losses.tails)."""
        if not self.rebuilds:
            raise ValueError(
                "only a sparse teacher with a uniform, lowrank or sampled tail rebuilds a distribution"
            )
        fields = (self.indices, self.logp, self.target, self.tail, self.extra)
        return rebuild(self.tail_model, *fields, labels, vocab, dtype)


def sparse_from_logits(
    logits: Tensor,
    labels: Tensor,
    k: int,
    *,
    ignore_index: int = -100,
    index_dtype: torch.dtype = torch.long,
    value_dtype: torch.dtype = torch.float32,
    tail_model: TailModel | None = None,
    samples: int = 0,
    generator: torch.Generator | None = None,
) -> SparseTeacher:
    """The top-`k` view of dense teacher `logits` `[..., V]` at `labels` `[...]` (ignored positions take
    token 0 as their target). Indices and log-probabilities are stored in `index_dtype` and `value_dtype`
    (a cache: int16/uint16 and float16), the target and tail in float32 at least, computed in float64.
    With a `tail_model`, its per-position data too (`samples` tail tokens drawn with `generator` for a
    sampled tail; atkd.losses.tails.encode_extra)."""
    vocab = logits.shape[-1]
    if not 0 < k < vocab:
        raise ValueError(f"k must be in (0, {vocab}), got {k}")
    with torch.no_grad():
        lp = F.log_softmax(logits.to(torch.float64), -1)
        top_lp, top_idx = torch.topk(lp, k, dim=-1)
        y = torch.where(labels == ignore_index, torch.zeros_like(labels), labels).unsqueeze(-1)
        target = lp.gather(-1, y).squeeze(-1)
        rest = lp.scatter(-1, top_idx, NEG).scatter(-1, y, NEG)
        tail = torch.logsumexp(rest, -1).clamp_min(NEG)
        out_dtype = torch.float64 if value_dtype == torch.float64 else torch.float32
        extra = None
        if tail_model is not None:
            flat = lp.reshape(-1, vocab)
            extra = encode_extra(
                tail_model, flat, top_idx.reshape(-1, k), y.reshape(-1), samples,
                generator=generator, index_dtype=index_dtype,
            )  # fmt: skip
            extra = None if extra is None else extra.reshape(*labels.shape, extra.shape[-1])
        return SparseTeacher(
            top_idx.to(index_dtype), top_lp.to(value_dtype), target.to(out_dtype), tail.to(out_dtype),
            extra, tail_model,
        )  # fmt: skip


def sparse_log_uncertainty(target: Tensor) -> Tensor:
    """log UnC = log(1 - p_g) from the exact log p_g (float64)."""
    return log1mexp(target.to(torch.float64))


def collapse(s: Tensor, t: SparseTeacher, y: Tensor) -> tuple[Tensor, Tensor]:
    """Student logits `s` `[C, V]` and teacher rows `t` (flat, C rows) on the K + 2 events (the K tokens but
    g, g, the tail): (student logits [C, K+2], differentiable in `s`; teacher log-probabilities
    [C, K+2]). The target is event K."""
    dtype = s.dtype
    idx = t.indices.long()
    in_top = idx == y.unsqueeze(-1)
    y_col = y.unsqueeze(-1)
    s_top = s.gather(-1, idx).masked_fill(in_top, NEG)
    s_g = s.gather(-1, y_col)
    s_tail = torch.logsumexp(s.scatter(-1, idx, NEG).scatter(-1, y_col, NEG), -1, keepdim=True)
    student = torch.cat((s_top, s_g, s_tail), -1)
    lp_g = t.target.to(dtype)
    nontarget = torch.cat((t.logp.to(dtype).masked_fill(in_top, NEG), t.tail.to(dtype).unsqueeze(-1)), -1)
    # the stored non-target entries (16-bit, rounded) renormalised to the exact 1 - p_g
    nontarget = nontarget - torch.logsumexp(nontarget, -1, keepdim=True) + log1mexp(lp_g).unsqueeze(-1)
    nontarget = nontarget.clamp_min(NEG)
    teacher = torch.cat((nontarget[:, :-1], lp_g.unsqueeze(-1), nontarget[:, -1:]), -1)
    return student, teacher


def event_targets(t: SparseTeacher) -> Tensor:
    """The target's event (K) for every row of a flat teacher."""
    return torch.full((t.target.shape[0],), t.k, dtype=torch.long, device=t.target.device)
