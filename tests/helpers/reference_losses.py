"""Plain reference implementations of the KD losses: the obvious full-tensor PyTorch code.

Written from PAPER.md section 2 in probability space with boolean masks, deliberately naive. The tests
compare the library against it in float64, and `benchmarks/losses.py` times it against the library.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def kl(a: Tensor, b: Tensor) -> Tensor:
    """KL(a || b) per row, from probabilities (0 log 0 = 0, with a gradient that stays finite there)."""
    support = a > 0
    one = torch.ones_like(a)
    return (a * (torch.log(torch.where(support, a, one)) - torch.log(torch.where(support, b, one)))).sum(-1)


def divergence(name: str, p: Tensor, q: Tensor, **params: float) -> Tensor:
    """Divergence between teacher probabilities p and student probabilities q, per row."""
    if name == "fkl":
        return kl(p, q)
    if name == "rkl":
        return kl(q, p)
    if name == "tvd":
        return 0.5 * (p - q).abs().sum(-1)
    if name == "jsd":
        beta = params.get("beta", 0.5)
        if beta == 0:
            return kl(p, q)
        if beta == 1:
            return kl(q, p)
        m = beta * p + (1 - beta) * q
        return beta * kl(p, m) + (1 - beta) * kl(q, m)
    if name == "skl":
        a = params.get("alpha", 0.1)
        return kl(p, a * p + (1 - a) * q)
    if name == "srkl":
        a = params.get("alpha", 0.1)
        return kl(q, a * q + (1 - a) * p)
    raise KeyError(name)


def parts(
    s: Tensor,
    t: Tensor,
    labels: Tensor,
    name: str = "fkl",
    temperature: float = 1.0,
    ignore_index: int = -100,
    **params: float,
) -> dict[str, Tensor]:
    """Per-valid-token unc, binary (tkd), non-target (dkd) and full (base) divergence, plus sequence ids."""
    valid = labels != ignore_index
    seq = torch.arange(labels.shape[0]).unsqueeze(1).expand_as(labels)[valid] if labels.dim() == 2 else None
    s = s[valid] / temperature
    t = t[valid] / temperature
    y = labels[valid]
    p = torch.softmax(t, -1)
    q = torch.softmax(s, -1)
    onehot = F.one_hot(y, p.shape[-1]).bool()
    p_g = p[onehot]
    q_g = q[onehot]
    bp = torch.stack([p_g, 1 - p_g], -1)
    bq = torch.stack([q_g, 1 - q_g], -1)
    p_hat = p.masked_fill(onehot, 0) / (1 - p_g).unsqueeze(-1)
    q_hat = q.masked_fill(onehot, 0) / (1 - q_g).unsqueeze(-1)
    return {
        "unc": 1 - p_g,
        "unc_student": 1 - q_g,
        "tkd": divergence(name, bp, bq, **params),
        "dkd": divergence(name, p_hat, q_hat, **params),
        "base": divergence(name, p, q, **params),
        "ce": -torch.log(q_g),
        "seq": seq,
    }


def hard_mask(unc: Tensor, k: float, seq: Tensor | None = None) -> Tensor:
    """The ceil(k*n) highest-UnC tokens (of the batch, or of each sequence when `seq` is given)."""
    hard = torch.zeros_like(unc, dtype=torch.bool)
    groups = (
        [torch.arange(unc.numel())]
        if seq is None
        else [torch.nonzero(seq == i).squeeze(-1) for i in torch.unique(seq)]
    )
    for g in groups:
        n_hard = math.ceil(k * g.numel() - 1e-9)
        order = torch.argsort(unc[g], descending=True)
        hard[g[order[:n_hard]]] = True
    return hard


def _mean(x: Tensor) -> Tensor:
    return x.mean() if x.numel() else x.sum()


def loss(
    s: Tensor,
    t: Tensor,
    labels: Tensor,
    name: str = "fkl",
    *,
    atkd: dict | None = None,
    temperature: float = 1.0,
    **params: float,
) -> Tensor:
    """Reference value of `build_loss({...})(s, t, labels)` (mean over valid tokens)."""
    if name == "ce":
        return _mean(parts(s, s, labels, "fkl", temperature)["ce"])
    if name == "dkd":
        r = parts(s, t, labels, "fkl", temperature)
        return _mean(params.get("alpha", 1.0) * r["tkd"] + params.get("beta", 1.0) * r["dkd"])
    r = parts(s, t, labels, name, temperature, **params)
    if atkd is None:
        return _mean(r["base"])
    k, lam = atkd.get("k", 0.5), atkd.get("lam", 0.2)
    hard = hard_mask(r["unc"], k, r["seq"] if atkd.get("split") == "sequence" else None)
    dkd = r["dkd"]
    if atkd.get("unc_weight"):
        dkd = dkd * (r["unc_student"] if name == "rkl" else r["unc"])
    if atkd.get("groups") is None:
        return lam * _mean(dkd[~hard]) + (1 - lam) * _mean(r["tkd"][hard] + dkd[hard])
    total = dkd.new_zeros(())
    for group, rows in (("easy", ~hard), ("hard", hard)):
        w = atkd["groups"].get(group, {})
        total = total + _mean(w.get("tkd", 0.0) * r["tkd"][rows] + w.get("dkd", 0.0) * dkd[rows])
    return total


def assert_same_as_dense(
    loss, s: Tensor, dense, sparse, labels: Tensor, rtol: float, grad_rtol: float
) -> None:
    """`loss` against a dense and a sparse teacher gives the same value and student gradient."""
    a, b = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    want, got = loss(a, dense, labels), loss(b, sparse, labels)
    want.backward()
    got.backward()
    torch.testing.assert_close(got, want, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(b.grad, a.grad, rtol=grad_rtol, atol=1e-12)
