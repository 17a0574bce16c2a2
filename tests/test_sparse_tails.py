"""Tail estimators of a sparse teacher (atkd.losses.tails) against a plain dense reference: each rebuilds
the teacher exactly where its model of the tail is exact, keeps p_g and the tail mass exact always, and the
sampled tail is unbiased for forward KL."""

from __future__ import annotations

import pytest
import torch
from helpers import reference_losses as ref
from helpers.cases import random_case
from hypothesis import given, settings
from hypothesis import strategies as st

from atkd.losses import build_loss, sparse_from_logits
from atkd.losses.tails import TailModel, fit_lowrank, tail_mask

DIVS = ["fkl", "rkl", "tvd", "jsd", "skl", "srkl"]
ATKD = [None, {"k": 0.5, "lam": 0.2}]


make = random_case


def spec(name, atkd):
    return {"name": name, **({"atkd": atkd} if atkd is not None else {})}


def value_and_grad(loss, s, teacher, y):
    a = s.clone().requires_grad_(True)
    value = loss(a, teacher, y)
    value.backward()
    return value.detach(), a.grad


def flat_tail(te, y, k, fill):
    """Teacher logits whose tail (outside the top k and the target) is set flat at `fill` below the max:
    a teacher the uniform estimator describes exactly."""
    t = te.clone().reshape(-1, te.shape[-1])
    top = torch.topk(t, k, -1).indices
    mask = tail_mask(top, y.reshape(-1).clamp_min(0), te.shape[-1])
    floor = torch.minimum(torch.topk(t, k, -1).values[:, -1:], t.gather(-1, y.reshape(-1, 1).clamp_min(0)))
    t[mask] = (floor - fill).expand_as(t)[mask]  # below every kept token: the top k stays the top k
    return t.reshape(te.shape)


@pytest.mark.parametrize("name", DIVS)
@pytest.mark.parametrize("atkd", ATKD)
@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 6, 17)])
def test_uniform_tail_is_exact_for_a_teacher_with_a_flat_tail(name, atkd, shape):
    s, te, y = make(shape)
    k = 2
    te = flat_tail(te, y, k, fill=4.0)
    loss = build_loss(spec(name, atkd))
    sparse = sparse_from_logits(te, y, k, value_dtype=torch.float64, tail_model=TailModel("uniform"))
    (d, gd), (x, gx) = (value_and_grad(loss, s, t, y) for t in (te, sparse))
    a = s.clone().requires_grad_(True)
    want = ref.loss(a, te, y, name, atkd=atkd)  # the plain reference on the dense teacher
    want.backward()
    torch.testing.assert_close(d, want.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gd, a.grad, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(x, d, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gx, gd, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", DIVS)
@pytest.mark.parametrize("atkd", ATKD)
def test_lowrank_tail_at_full_rank_is_the_dense_teacher(name, atkd):
    """Logits of rank r (a teacher whose hidden size is r) are rebuilt exactly from r coefficients."""
    g = torch.Generator().manual_seed(3)
    v, r = 23, 4
    hidden = torch.randn(2, 9, r, generator=g, dtype=torch.float64)
    head = torch.randn(r, v, generator=g, dtype=torch.float64) * 2
    te = hidden @ head
    s, _, y = make((2, 9, v), seed=4)
    model = fit_lowrank(te, r + 1)  # +1: the centring leaves rank r + 1 at most
    sparse = sparse_from_logits(te, y, 3, value_dtype=torch.float64, tail_model=model)
    # coefficients are float16 on disk: compare with a float64 copy to test the algebra, not the rounding
    sparse64 = sparse_from_logits(te, y, 3, value_dtype=torch.float64, tail_model=model)
    exact = (te.reshape(-1, v) - te.reshape(-1, v).mean(-1, keepdim=True) - model.mean.double()) @ (
        model.basis.double()
    )
    sparse64 = type(sparse64)(**{**sparse64.__dict__, "extra": exact.reshape(2, 9, -1)})
    loss = build_loss(spec(name, atkd))
    (d, gd), (x, gx) = (value_and_grad(loss, s, t, y) for t in (te, sparse64))
    torch.testing.assert_close(x, d, rtol=1e-5, atol=1e-7)  # basis stored in float32
    torch.testing.assert_close(gx, gd, rtol=1e-4, atol=1e-6)
    (h, _) = value_and_grad(loss, s, sparse, y)
    assert abs(float(h - d)) <= 2e-2 * abs(float(d)) + 1e-4  # float16 coefficients: close, not exact


@given(
    seed=st.integers(0, 10_000), k=st.integers(1, 10), kind=st.sampled_from(["uniform", "lowrank", "sampled"])
)
@settings(max_examples=40, deadline=None)
def test_property_every_estimator_keeps_p_g_and_the_tail_mass_exact(seed, k, kind):
    s, te, y = make((2, 4, 12), seed=seed)
    model = fit_lowrank(te, 3) if kind == "lowrank" else TailModel(kind, eps=0.1 if kind == "sampled" else 0)
    gen = torch.Generator().manual_seed(seed)
    sparse = sparse_from_logits(
        te, y, k, value_dtype=torch.float64, tail_model=model, samples=5, generator=gen
    )
    flat, labels = sparse.flat(), y.reshape(-1)
    lp = flat.rebuild(labels, 12, torch.float64)
    dense = torch.log_softmax(te.reshape(-1, 12), -1)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(lp.shape[0], dtype=lp.dtype))
    g = labels.clamp_min(0).unsqueeze(-1)
    torch.testing.assert_close(lp.gather(-1, g), dense.gather(-1, g))
    mask = tail_mask(flat.indices, labels.clamp_min(0), 12)
    torch.testing.assert_close((lp.exp() * mask).sum(-1), (dense.exp() * mask).sum(-1))
    top = flat.indices.long()
    keep = top != g  # the top K's non-target entries, exact
    torch.testing.assert_close(lp.gather(-1, top)[keep], dense.gather(-1, top)[keep])


def test_sampled_tail_is_unbiased_for_forward_kl_and_finite_for_reverse_kl():
    s, te, y = make((1, 6, 30), seed=5, scale=1.5)
    dense_fkl = value_and_grad(build_loss("fkl"), s, te, y)[1]
    gen = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(400):
        sparse = sparse_from_logits(te, y, 2, value_dtype=torch.float64, tail_model=TailModel("sampled"),
                                    samples=4, generator=gen)  # fmt: skip
        draws.append(value_and_grad(build_loss("fkl"), s, sparse, y)[1])
    mean = torch.stack(draws).mean(0)
    one = (draws[0] - dense_fkl).norm()
    assert (mean - dense_fkl).norm() < 0.15 * one  # the mean of 400 draws: error ~ 1/20 of one draw's
    sparse = sparse_from_logits(te, y, 2, tail_model=TailModel("sampled", eps=0.05), samples=4, generator=gen)
    value, grad = value_and_grad(build_loss("rkl"), s, sparse, y)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("kind", ["uniform", "lowrank", "sampled"])
@pytest.mark.parametrize("chunk", [0, 3])
def test_rebuilt_teacher_is_the_same_chunked_or_not(kind, chunk):
    s, te, y = make((2, 5, 11), seed=6)
    model = fit_lowrank(te, 3) if kind == "lowrank" else TailModel(kind, eps=0.1)
    sparse = sparse_from_logits(
        te, y, 3, tail_model=model, samples=3, generator=torch.Generator().manual_seed(1)
    )
    whole = value_and_grad(build_loss({"name": "rkl", "atkd": {"k": 0.5, "lam": 0.2}}), s, sparse, y)
    chunked = value_and_grad(
        build_loss({"name": "rkl", "atkd": {"k": 0.5, "lam": 0.2}, "chunk_size": chunk}), s, sparse, y
    )
    torch.testing.assert_close(chunked[0], whole[0])
    torch.testing.assert_close(chunked[1], whole[1])


def test_tail_model_errors():
    with pytest.raises(ValueError, match="tail estimator 'zipf' unknown; valid: bucket, uniform, lowrank"):
        TailModel("zipf")
    with pytest.raises(ValueError, match="lowrank tail needs its mean and basis"):
        TailModel("lowrank")
    s, te, y = make((1, 3, 8))
    with pytest.raises(ValueError, match="sampled tail needs samples >= 1"):
        sparse_from_logits(te, y, 2, tail_model=TailModel("sampled"))
    sparse = sparse_from_logits(te, y, 2, tail_model=fit_lowrank(te, 2))
    bad = type(sparse)(**{**sparse.__dict__, "extra": sparse.extra[:, :2]})
    with pytest.raises(ValueError, match="extra .* must be labels"):
        build_loss("rkl")(s, bad, y)
