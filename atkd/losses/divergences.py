"""Divergences between a teacher distribution p and a student distribution q, row by row.

Every divergence here takes log-probabilities `lp` (teacher) and `lq` (student) of shape `[N, K]`
(rows sum to one in probability space) and returns a `[N]` tensor. They are written once, in log
space, and applied both to the full vocabulary distributions and to the decoupled ones (the binary
target-vs-rest pair and the renormalised non-target distribution), which is what lets +ATKD work on
top of any registered divergence.

Entries of probability zero may appear as very negative finite log values (see `NEG`); every formula
must then give an exact zero contribution for them, never `0 * inf`.

Conventions (formulas, not names; public code disagrees on names):
    fkl   KL(p || q)                                           forward KL, "Supervised KD"
    rkl   KL(q || p)                                           reverse KL
    tvd   0.5 * sum |p - q|                                    total variation, "f-distill"
    jsd   beta*KL(p||m) + (1-beta)*KL(q||m), m = beta*p + (1-beta)*q   (TRL/GKD convention;
          beta = 0 is defined as forward KL and beta = 1 as reverse KL, as TRL does)
    skl   KL(p || a*p + (1-a)*q)                               skew KL (DistiLLM), a = alpha
    srkl  KL(q || a*q + (1-a)*p)                               skew reverse KL (DistiLLM)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Log-probability used for "probability exactly zero": finite, so differences and products of two
# such entries stay finite (exp(NEG) == 0 in float32 and float64).
NEG = -1.0e30

DivergenceFn = Callable[..., Tensor]


@dataclass(frozen=True)
class Divergence:
    """A registered divergence: its row-wise function, default parameters and their checks.

    `unc_side` says whose uncertainty multiplies the non-target part in the exact decomposition
    D = binary + UnC * nontarget ("teacher" for forward KL, "student" for reverse KL); it is used by
    the UnC-weighted option of +ATKD. For divergences without an exact decomposition it is the
    teacher's, which is the paper's choice.
    """

    name: str
    fn: DivergenceFn
    defaults: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Callable[[float], bool]] = field(default_factory=dict)
    unc_side: str = "teacher"
    doc: str = ""


DIVERGENCES: dict[str, Divergence] = {}


def _same_source(a: Callable, b: Callable) -> bool:
    """The same function defined twice by importing one file twice (a plugin loaded by name and by path)."""
    ca, cb = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        ca is not None
        and cb is not None
        and (ca.co_filename, ca.co_firstlineno) == (cb.co_filename, cb.co_firstlineno)
        and a.__qualname__ == b.__qualname__
    )


def register_divergence(
    name: str,
    *,
    defaults: dict[str, float] | None = None,
    checks: dict[str, Callable[[float], bool]] | None = None,
    unc_side: str = "teacher",
) -> Callable[[DivergenceFn], DivergenceFn]:
    """Decorator: register `fn(lp, lq, **params) -> [N]` under `name` for `build_loss`.

    A user's own module can call this to add a KD method; +ATKD, chunking, temperature and masking
    then come for free.
    """
    if unc_side not in ("teacher", "student"):
        raise ValueError(f"unc_side must be 'teacher' or 'student', got {unc_side!r}")

    def wrap(fn: DivergenceFn) -> DivergenceFn:
        old = DIVERGENCES.get(name)
        if old is not None and old.fn is not fn and not _same_source(old.fn, fn):
            raise ValueError(f"divergence {name!r} is already registered")
        DIVERGENCES[name] = Divergence(
            name, fn, dict(defaults or {}), dict(checks or {}), unc_side, (fn.__doc__ or "").strip()
        )
        return fn

    return wrap


def _kl(la: Tensor, lb: Tensor) -> Tensor:
    """KL(a || b) per row from log-probabilities; zero-probability entries of `a` contribute 0."""
    return (la.exp() * (la - lb)).sum(-1)


def _unit(x: float) -> bool:
    return 0.0 <= x <= 1.0


@register_divergence("fkl")
def forward_kl(lp: Tensor, lq: Tensor) -> Tensor:
    """Forward KL(p || q): the classic token-level KD loss (Supervised KD)."""
    return _kl(lp, lq)


@register_divergence("rkl", unc_side="student")
def reverse_kl(lp: Tensor, lq: Tensor) -> Tensor:
    """Reverse KL(q || p) (Reverse KD, MiniLLM's objective)."""
    return _kl(lq, lp)


@register_divergence("tvd")
def total_variation(lp: Tensor, lq: Tensor) -> Tensor:
    """Total variation distance 0.5 * sum |p - q| (f-distill)."""
    return 0.5 * (lp.exp() - lq.exp()).abs().sum(-1)


@register_divergence("jsd", defaults={"beta": 0.5}, checks={"beta": _unit})
def generalized_jsd(lp: Tensor, lq: Tensor, beta: float = 0.5) -> Tensor:
    """Generalised JSD of GKD/TRL: beta*KL(p||m) + (1-beta)*KL(q||m), m = beta*p + (1-beta)*q.

    beta = 0 is forward KL and beta = 1 reverse KL by definition (TRL's convention).
    """
    if beta == 0.0:
        return _kl(lp, lq)
    if beta == 1.0:
        return _kl(lq, lp)
    lm = torch.logaddexp(lp + math.log(beta), lq + math.log1p(-beta))
    return beta * _kl(lp, lm) + (1.0 - beta) * _kl(lq, lm)


@register_divergence("skl", defaults={"alpha": 0.1}, checks={"alpha": _unit})
def skew_kl(lp: Tensor, lq: Tensor, alpha: float = 0.1) -> Tensor:
    """Skew KL of DistiLLM: KL(p || alpha*p + (1-alpha)*q)."""
    if alpha == 0.0:
        return _kl(lp, lq)
    if alpha == 1.0:
        return torch.zeros_like(lp[..., 0])
    lm = torch.logaddexp(lp + math.log(alpha), lq + math.log1p(-alpha))
    return _kl(lp, lm)


@register_divergence("srkl", defaults={"alpha": 0.1}, checks={"alpha": _unit})
def skew_reverse_kl(lp: Tensor, lq: Tensor, alpha: float = 0.1) -> Tensor:
    """Skew reverse KL of DistiLLM: KL(q || alpha*q + (1-alpha)*p)."""
    if alpha == 0.0:
        return _kl(lq, lp)
    if alpha == 1.0:
        return torch.zeros_like(lq[..., 0])
    lm = torch.logaddexp(lq + math.log(alpha), lp + math.log1p(-alpha))
    return _kl(lq, lm)
