"""The fused output-layer path equals the unfused loss on `h @ W.T + b`: values and gradients of h, W, b."""

from __future__ import annotations

import pytest
import torch

from atkd.losses import build_loss, fused_linear_kd_loss

SPECS = [
    "ce",
    "fkl",
    "rkl",
    "tvd",
    {"name": "jsd", "beta": 0.5},
    {"name": "dkd", "alpha": 1.0, "beta": 0.5},
    {"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}},
    {"name": "rkl", "atkd": {"k": 0.3, "lam": 0.5, "split": "sequence"}},
    {"name": "fkl", "atkd": {"k": 0.5, "groups": {"easy": {"dkd": 0.5}, "hard": {"tkd": 0.5, "dkd": 0.5}}}},
    {"name": "fkl", "temperature": 2.0},
]


def make(b=2, t=7, d=5, v=11, dt=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, t, d, generator=g, dtype=dtype)
    w = torch.randn(v, d, generator=g, dtype=dtype)
    bias = torch.randn(v, generator=g, dtype=dtype)
    th = torch.randn(b, t, dt, generator=g, dtype=dtype)
    tw = torch.randn(v, dt, generator=g, dtype=dtype) * 2
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :2] = -100  # a prompt
    labels[-1, -1] = -100  # padding
    return h, w, bias, th, tw, labels


def _grads(value, *xs):
    return torch.autograd.grad(value, xs)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("teacher_as", ["hidden", "logits"])
@pytest.mark.parametrize("chunk", [None, 0, 3])
def test_fused_equals_unfused(spec, teacher_as, chunk):
    h, w, bias, th, tw, labels = make()
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    spec["chunk_size"] = chunk
    leaves = [x.clone().requires_grad_(True) for x in (h, w, bias)]
    t_logits = th @ tw.T
    want = build_loss(spec)(leaves[0] @ leaves[1].T + leaves[2], t_logits, labels, num_tokens=9)
    g_want = _grads(want, *leaves)
    fused = [x.clone().requires_grad_(True) for x in (h, w, bias)]
    teacher = (
        {"teacher_hidden": th, "teacher_weight": tw}
        if teacher_as == "hidden"
        else {"teacher_logits": t_logits}
    )
    got = fused_linear_kd_loss(spec, fused[0], fused[1], labels, bias=fused[2], num_tokens=9, **teacher)
    g_got = _grads(got, *fused)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_fused_scales_with_the_upstream_gradient_and_without_bias():
    h, w, _, th, tw, labels = make(seed=1)
    hw = [x.clone().requires_grad_(True) for x in (h, w)]
    want = 3.0 * build_loss("fkl")(hw[0] @ hw[1].T, th @ tw.T, labels)
    g_want = _grads(want, *hw)
    fw = [x.clone().requires_grad_(True) for x in (h, w)]
    got = 3.0 * fused_linear_kd_loss("fkl", fw[0], fw[1], labels, teacher_hidden=th, teacher_weight=tw)
    for a, b in zip(_grads(got, *fw), g_want, strict=True):
        torch.testing.assert_close(a, b)


def test_fused_low_precision_is_close_to_float64():
    h, w, bias, th, tw, labels = make(b=3, t=16, d=32, v=300, dt=24, seed=2)
    want = build_loss({"name": "fkl", "atkd": {}})(h @ w.T + bias, th @ tw.T, labels)
    got = fused_linear_kd_loss(
        {"name": "fkl", "atkd": {}},
        h.bfloat16(),
        w.bfloat16(),
        labels,
        bias=bias.bfloat16(),
        teacher_hidden=th.bfloat16(),
        teacher_weight=tw.bfloat16(),
    )
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0.05, atol=0.05)


def test_fused_errors_and_empty_batches():
    h, w, bias, th, tw, labels = make()
    with pytest.raises(ValueError, match="needs the teacher"):
        fused_linear_kd_loss("fkl", h, w, labels)
    with pytest.raises(ValueError, match="not aligned"):
        fused_linear_kd_loss("ce", h[:, :-1], w, labels)
    with pytest.raises(ValueError, match="weight must be"):
        fused_linear_kd_loss("ce", h, w.T, labels)
    with pytest.raises(ValueError, match="not both"):
        fused_linear_kd_loss(
            "fkl", h, w, labels, teacher_logits=th @ tw.T, teacher_hidden=th, teacher_weight=tw
        )
    hh = h.clone().requires_grad_(True)
    out = fused_linear_kd_loss("ce", hh, w, torch.full_like(labels, -100))
    out.backward()
    assert float(out.detach()) == 0.0 and not hh.grad.any()
