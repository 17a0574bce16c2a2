"""A top-K teacher (atkd.losses.sparse) against a plain reference on the coarsened distributions, and the
quantities it must keep exact (UnC, TKD, the +ATKD split) against the dense teacher."""

from __future__ import annotations

import pytest
import torch
from helpers import reference_losses as ref
from helpers.cases import random_case
from hypothesis import given, settings
from hypothesis import strategies as st

from atkd.losses import SparseTeacher, build_loss, fused_linear_kd_loss, sparse_from_logits

DIVS = ["fkl", "rkl", "tvd", "jsd", "skl", "srkl"]
ATKD = [None, {"k": 0.5, "lam": 0.2}, {"k": 0.3, "lam": 0.0, "unc_weight": True}]


make = random_case


def coarsened(s, t, labels, k):
    """The reference's events, row by row in probability space: the teacher's top k tokens other than the
    target, the target, the rest. Returns log-probabilities [1, n, k+2] of student and teacher (the
    student's differentiable in `s`) and the event labels (k)."""
    p_all, q_all = torch.softmax(t, -1), torch.softmax(s, -1)
    rows_p, rows_q = [], []
    for b, i in (labels != -100).nonzero().tolist():
        p, q, g = p_all[b, i], q_all[b, i], int(labels[b, i])
        top = [v for v in torch.argsort(p, descending=True)[:k].tolist() if v != g]
        top = top + [None] * (k - len(top))  # the target's column, if it was among the top k: 0 for both
        ev_p = [p[v] if v is not None else p.new_zeros(()) for v in top] + [p[g]]
        ev_q = [q[v] if v is not None else q.new_zeros(()) for v in top] + [q[g]]
        ev_p.append(1 - sum(ev_p))
        ev_q.append(1 - sum(ev_q))
        rows_p.append(torch.stack(ev_p))
        rows_q.append(torch.stack(ev_q))
    lp, lq = torch.stack(rows_p).clamp_min(0).log(), torch.stack(rows_q).clamp_min(0).log()
    return lq[None], lp[None], torch.full((1, len(rows_p)), k)


def spec(name, atkd):
    return {"name": name, **({"atkd": atkd} if atkd is not None else {})}


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 7, 13), (3, 5, 64)])
@pytest.mark.parametrize("name", DIVS)
@pytest.mark.parametrize("atkd", ATKD)
@pytest.mark.parametrize("k_frac", [0.1, 0.5, 1.0])
def test_sparse_loss_and_gradient_match_the_reference_on_coarsened_distributions(shape, name, atkd, k_frac):
    s, t, y = make(shape)
    k = max(1, min(shape[-1] - 1, round(k_frac * shape[-1])))
    sparse = sparse_from_logits(t, y, k, value_dtype=torch.float64)
    got_s = s.clone().requires_grad_(True)
    got = build_loss(spec(name, atkd))(got_s, sparse, y)
    got.backward()
    want_s = s.clone().requires_grad_(True)
    lq, lp, ev = coarsened(want_s, t, y, k)
    want = ref.loss(lq, lp, ev, name, atkd=atkd)
    want.backward()
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_s.grad, want_s.grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", DIVS + ["dkd"])
@pytest.mark.parametrize("atkd", [None, {"k": 0.5, "lam": 0.2}])
def test_a_teacher_kept_whole_gives_the_dense_loss(name, atkd):
    """K = V - 1 leaves no tail: every loss, plain or +ATKD, equals the dense teacher's."""
    s, t, y = make((2, 6, 11), seed=1)
    loss = build_loss(spec(name, atkd))
    sparse = sparse_from_logits(t, y, 10, value_dtype=torch.float64)
    ref.assert_same_as_dense(loss, s, t, sparse, y, rtol=1e-10, grad_rtol=1e-8)


@pytest.mark.parametrize("name", DIVS)
@pytest.mark.parametrize("k", [1, 4])
def test_unc_tkd_and_the_atkd_split_are_exact(name, k):
    """With the binary part alone on both groups, and with KD on the hard tokens only (whose selection is
    the split), the sparse teacher gives the dense values and gradients whatever K."""
    s, t, y = make((3, 9, 40), seed=2)
    sparse = sparse_from_logits(t, y, k, value_dtype=torch.float64)
    tkd_only = {"groups": {"easy": {"tkd": 1.0}, "hard": {"tkd": 0.7}}, "k": 0.4}
    for atkd in (tkd_only, {"groups": {"hard": {"tkd": 1.0}}, "k": 0.25}):
        loss = build_loss(spec(name, atkd))
        ref.assert_same_as_dense(loss, s, t, sparse, y, rtol=1e-10, grad_rtol=1e-8)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 30), st.sampled_from(["fkl", "rkl", "tvd", "jsd"]))
def test_property_coarsening_never_exceeds_the_dense_divergence(seed, k, name):
    """Data processing: an f-divergence of the coarsened distributions is at most the dense one."""
    s, t, y = make((2, 5, 31), seed=seed)
    loss = build_loss(name)
    assert (
        float(loss(s, sparse_from_logits(t, y, k, value_dtype=torch.float64), y))
        <= float(loss(s, t, y)) + 1e-12
    )


@pytest.mark.parametrize("name", ["fkl", "jsd", "tvd"])
@pytest.mark.parametrize("atkd", [None, {"k": 0.5, "lam": 0.2}])
def test_cache_precision_changes_little(name, atkd):
    """16-bit indices and log-probabilities (a cache's storage) against float64: the loss moves by less
    than 1e-3 relative."""
    s, t, y = make((2, 16, 300), seed=3)
    s, t = s.float(), t.float()
    loss = build_loss(spec(name, atkd))
    exact = loss(s, sparse_from_logits(t, y, 32, value_dtype=torch.float64), y)
    stored = sparse_from_logits(t, y, 32, index_dtype=torch.int16, value_dtype=torch.float16)
    assert stored.indices.dtype == torch.int16 and stored.logp.dtype == torch.float16
    assert float(abs(loss(s, stored, y) - exact)) <= 1e-3 * float(exact)


@pytest.mark.parametrize("chunk", [1, 5, 0])
@pytest.mark.parametrize("name", ["fkl", "rkl", "jsd"])
def test_sparse_chunked_and_fused_equal_plain(chunk, name):
    s, t, y = make((2, 9, 37), seed=4)
    h = torch.randn(2, 9, 6, dtype=torch.float64)
    w = torch.randn(37, 6, dtype=torch.float64)
    sparse = sparse_from_logits(t, y, 6, value_dtype=torch.float64)
    base = {"name": name, "atkd": {"k": 0.5, "lam": 0.2}}
    h1, w1 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    plain = build_loss(base)(h1 @ w1.T, sparse, y)
    plain.backward()
    h2, w2 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    chunked = build_loss({**base, "chunk_size": chunk})(h2 @ w2.T, sparse, y)
    chunked.backward()
    h3, w3 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    fused = fused_linear_kd_loss({**base, "chunk_size": chunk}, h3, w3, y, teacher_logits=sparse)
    fused.backward()
    for value, gh, gw in ((chunked, h2.grad, w2.grad), (fused, h3.grad, w3.grad)):
        torch.testing.assert_close(value, plain, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gh, h1.grad, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(gw, w1.grad, rtol=1e-8, atol=1e-12)


def test_sparse_teacher_errors():
    s, t, y = make((1, 4, 10))
    sparse = sparse_from_logits(t, y, 3)
    with pytest.raises(ValueError, match="temperature 1"):
        build_loss({"name": "fkl", "temperature": 2.0})(s, sparse, y)
    with pytest.raises(ValueError, match="not aligned with labels"):
        build_loss("fkl")(s, sparse_from_logits(t[:, :3], y[:, :3], 3), y)
    wide = SparseTeacher(
        *(torch.cat([x, x], -1) for x in (sparse.indices, sparse.logp)), sparse.target, sparse.tail
    )
    with pytest.raises(ValueError, match="K < vocab"):
        build_loss("fkl")(s[..., :5], wide, y.clamp_max(4))
    with pytest.raises(ValueError, match="k must be in"):
        sparse_from_logits(t, y, 10)
