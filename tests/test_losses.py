"""The loss library against the plain float64 reference (tests/helpers/reference_losses.py)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import reference_losses as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from atkd.losses import DIVERGENCES, build_loss, register_divergence, token_parts, valid_names

DIVS = ["fkl", "rkl", "tvd", "jsd", "skl", "srkl"]
ALL = DIVS + ["dkd", "ce"]
SHAPES = [(1, 1, 2), (2, 7, 13), (3, 5, 64), (1, 33, 257)]


def make(shape, dtype=torch.float64, seed=0, scale=3.0, ignore_frac=0.3):
    g = torch.Generator().manual_seed(seed)
    b, t, v = shape
    s = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    te = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, v, (b, t), generator=g)
    drop = torch.rand(b, t, generator=g) < ignore_frac
    drop.view(-1)[0] = False  # at least one valid token
    y[drop] = -100
    return s, te, y


def spec_of(name, **kw):
    return {"name": name, **kw}


PARAMS = {
    "jsd": [{"beta": 0.0}, {"beta": 0.3}, {"beta": 1.0}],
    "skl": [{"alpha": 0.1}, {"alpha": 0.0}],
    "srkl": [{"alpha": 0.1}],
    "dkd": [{"alpha": 1.0, "beta": 1.0}, {"alpha": 0.5, "beta": 8.0}],
}


def cases():
    for name in ALL:
        for params in PARAMS.get(name, [{}]):
            yield name, params


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("name", "params"), list(cases()))
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_value_and_grad_match_reference(shape, name, params, temperature):
    s, t, y = make(shape)
    s.requires_grad_(True)
    got = build_loss(spec_of(name, temperature=temperature, **params))(s, t, y)
    (g_got,) = torch.autograd.grad(got, s)
    s2 = s.detach().clone().requires_grad_(True)
    want = ref.loss(s2, t, y, name, temperature=temperature, **params)
    (g_want,) = torch.autograd.grad(want, s2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-8, atol=1e-12)


ATKD_CASES = [
    {},
    {"k": 0.3, "lam": 0.5},
    {"k": 1.0, "lam": 0.0},
    {"k": 0.5, "lam": 0.2, "split": "sequence"},
    {"k": 0.7, "lam": 0.9, "unc_weight": True},
    {"k": 0.5, "groups": {"easy": {"dkd": 1.0}, "hard": {"tkd": 1.0, "dkd": 1.0}}},
    {"k": 0.3, "groups": {"hard": {"tkd": 1.0, "dkd": 1.0}}, "unc_weight": True},
    {"k": 0.6, "groups": {"easy": {"tkd": 0.5, "dkd": 2.0}, "hard": {"dkd": 0.25}}, "split": "sequence"},
]


def test_groups_reproduce_atkd_and_restricted_kd():
    s, t, y = make((3, 11, 23), seed=4)
    atkd = build_loss({"name": "fkl", "atkd": {"k": 0.4, "lam": 0.3}})(s, t, y)
    explicit = {"easy": {"dkd": 0.3}, "hard": {"tkd": 0.7, "dkd": 0.7}}
    same = build_loss({"name": "fkl", "atkd": {"k": 0.4, "groups": explicit}})(s, t, y)
    torch.testing.assert_close(same, atkd, rtol=1e-12, atol=0)
    # KD on the hardest 40% only: mean forward KL over exactly those tokens
    r = ref.parts(s, t, y, "fkl")
    hard = ref.hard_mask(r["unc"], 0.4)
    only_hard = {"hard": {"tkd": 1.0, "dkd": 1.0}}
    got = build_loss({"name": "fkl", "atkd": {"k": 0.4, "groups": only_hard, "unc_weight": True}})(s, t, y)
    torch.testing.assert_close(got, r["base"][hard].mean())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", DIVS)
@pytest.mark.parametrize("atkd", ATKD_CASES)
def test_atkd_matches_reference(shape, name, atkd):
    s, t, y = make(shape, seed=1)
    s.requires_grad_(True)
    got = build_loss({"name": name, "atkd": atkd})(s, t, y)
    (g_got,) = torch.autograd.grad(got, s)
    s2 = s.detach().clone().requires_grad_(True)
    want = ref.loss(s2, t, y, name, atkd=atkd)
    (g_want,) = torch.autograd.grad(want, s2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-8, atol=1e-12)


def test_atkd_on_dkd_uses_its_part_weights():
    s, t, y = make((2, 9, 17), seed=3)
    got = build_loss({"name": "dkd", "alpha": 2.0, "beta": 3.0, "atkd": {"k": 0.5, "lam": 0.2}})(s, t, y)
    r = ref.parts(s, t, y, "fkl")
    hard = ref.hard_mask(r["unc"], 0.5)
    want = 0.2 * (3 * r["dkd"][~hard]).mean() + 0.8 * (2 * r["tkd"][hard] + 3 * r["dkd"][hard]).mean()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["fkl", "rkl", "tvd", "jsd", "ce"])
@pytest.mark.parametrize("atkd", [None, {}])
def test_low_precision_inputs_accumulate_in_float32(dtype, name, atkd):
    if name == "ce" and atkd is not None:
        pytest.skip("ce has no +ATKD")
    s, t, y = make((2, 16, 300), dtype=dtype, seed=4)
    s.requires_grad_(True)
    got = build_loss({"name": name, "atkd": atkd})(s, t, y)
    assert got.dtype == torch.float32
    (g,) = torch.autograd.grad(got, s)
    assert g.dtype == dtype and torch.isfinite(g.float()).all()
    # the reference sees the very same (rounded) inputs in float64
    want = ref.loss(s.detach().double(), t.double(), y, name, atkd=atkd)
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=1e-6)


def test_token_parts_identity_fkl_and_rkl():
    s, t, y = make((3, 11, 50), seed=5)
    p = token_parts(s, t, y)
    torch.testing.assert_close(p["base"], p["tkd"] + p["unc"] * p["dkd"], rtol=1e-12, atol=1e-12)
    r = token_parts(s, t, y, "rkl")
    torch.testing.assert_close(r["base"], r["tkd"] + r["unc_student"] * r["dkd"], rtol=1e-12, atol=1e-12)
    want = ref.parts(s, t, y)
    for key in ("unc", "tkd", "dkd", "base"):
        torch.testing.assert_close(p[key], want[key])
    torch.testing.assert_close(p["seq"], want["seq"])
    assert p["unc"].shape == (int((y != -100).sum()),)


@pytest.mark.parametrize("name", ["fkl", "rkl"])
def test_unc_weighted_atkd_gives_back_base_at_k1_lam0(name):
    s, t, y = make((2, 10, 40), seed=6)
    s.requires_grad_(True)
    a = build_loss({"name": name, "atkd": {"k": 1.0, "lam": 0.0, "unc_weight": True}})(s, t, y)
    (ga,) = torch.autograd.grad(a, s)
    b = build_loss(name)(s, t, y)
    (gb,) = torch.autograd.grad(b, s)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "spec", ["fkl", "tvd", "ce", {"name": "fkl", "atkd": {}}, {"name": "jsd", "atkd": {"split": "sequence"}}]
)
@pytest.mark.parametrize("chunk", [1, 3, 0, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_equals_unchunked(spec, chunk, dtype):
    s, t, y = make((2, 13, 97), dtype=dtype, seed=7)
    s.requires_grad_(True)
    base = spec if isinstance(spec, dict) else {"name": spec}
    whole = build_loss({**base, "chunk_size": 0})(s, t, y)
    (g_whole,) = torch.autograd.grad(whole, s)
    got = build_loss({**base, "chunk_size": chunk})(s, t, y)
    (g_got,) = torch.autograd.grad(got, s)
    torch.testing.assert_close(got, whole, rtol=1e-6, atol=1e-7)
    assert torch.equal(g_got, g_whole)  # per-row math does not depend on the chunking


def test_confident_teacher_is_exact_in_float32():
    v = 50
    t = torch.zeros(1, 4, v)
    y = torch.tensor([[3, 7, 11, 0]])
    # p_g = 1 - u with u = 1e-9 .. 4e-9 (distinct, so the hard/easy split has no ties):
    # logit gap log((1 - u) * (v - 1) / u) over uniform non-target logits
    unc = torch.tensor([1e-9, 2e-9, 3e-9, 4e-9], dtype=torch.float64)
    t[0, torch.arange(4), y[0]] = torch.log((1 - unc) * (v - 1) / unc).float()
    s = torch.randn(1, 4, v, generator=torch.Generator().manual_seed(0))
    p = token_parts(s, t, y)
    assert (
        torch.isfinite(p["unc"]).all() and torch.isfinite(p["tkd"]).all() and torch.isfinite(p["dkd"]).all()
    )
    torch.testing.assert_close(p["unc"].double(), unc, rtol=1e-4, atol=0)
    want = ref.parts(s.double(), t.double(), y)
    torch.testing.assert_close(p["tkd"].double(), want["tkd"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(p["dkd"].double(), want["dkd"], rtol=1e-5, atol=1e-7)
    s.requires_grad_(True)
    out = build_loss({"name": "fkl", "atkd": {}})(s, t, y)
    (g,) = torch.autograd.grad(out, s)
    assert torch.isfinite(out) and torch.isfinite(g).all()
    torch.testing.assert_close(
        out.double(), ref.loss(s.detach().double(), t.double(), y, atkd={}), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("name", DIVS)
def test_one_valid_token_and_empty_groups_are_finite(name):
    s, t, y = make((1, 4, 9), seed=8)
    y[:] = -100
    y[0, 2] = 5
    s.requires_grad_(True)
    for atkd in ({}, {"k": 1.0}, {"k": 0.01, "lam": 1.0}):
        out = build_loss({"name": name, "atkd": atkd})(s, t, y)
        (g,) = torch.autograd.grad(out, s)
        assert torch.isfinite(out) and torch.isfinite(g).all()
        torch.testing.assert_close(out, ref.loss(s.detach(), t, y, name, atkd=atkd))


def test_no_valid_token_gives_zero_and_zero_grad():
    s, t, y = make((2, 3, 7), seed=9)
    y[:] = -100
    s.requires_grad_(True)
    out = build_loss({"name": "fkl", "atkd": {}})(s, t, y)
    out.backward()
    assert float(out.detach()) == 0.0 and torch.count_nonzero(s.grad) == 0


@pytest.mark.parametrize("spec", ["fkl", "rkl", "jsd", "tvd", "ce", "dkd"])
def test_num_tokens_makes_accumulation_equal_one_batch(spec):
    s, t, y = make((4, 9, 31), seed=10)
    s.requires_grad_(True)
    loss = build_loss(spec)
    whole = loss(s, t, y)
    (g_whole,) = torch.autograd.grad(whole, s)
    n = int((y != -100).sum())
    parts = [loss(s[i:j], t[i:j], y[i:j], num_tokens=n) for i, j in ((0, 1), (1, 4))]
    total = parts[0] + parts[1]
    (g_acc,) = torch.autograd.grad(total, s)
    torch.testing.assert_close(total, whole)
    torch.testing.assert_close(g_acc, g_whole)


def test_atkd_micro_batches_combine_by_token_count():
    s, t, y = make((4, 9, 31), seed=11)
    loss = build_loss({"name": "fkl", "atkd": {}})
    n = int((y != -100).sum())
    chunks = ((0, 1), (1, 4))
    total = sum(loss(s[i:j], t[i:j], y[i:j], num_tokens=n) for i, j in chunks)
    want = sum(int((y[i:j] != -100).sum()) / n * ref.loss(s[i:j], t[i:j], y[i:j], atkd={}) for i, j in chunks)
    torch.testing.assert_close(total, want)


def test_jsd_and_skew_limits():
    s, t, y = make((2, 6, 20), seed=12)
    fkl, rkl = build_loss("fkl")(s, t, y), build_loss("rkl")(s, t, y)
    torch.testing.assert_close(build_loss({"name": "jsd", "beta": 0.0})(s, t, y), fkl)
    torch.testing.assert_close(build_loss({"name": "jsd", "beta": 1.0})(s, t, y), rkl)
    torch.testing.assert_close(build_loss({"name": "skl", "alpha": 0.0})(s, t, y), fkl)
    torch.testing.assert_close(build_loss({"name": "srkl", "alpha": 0.0})(s, t, y), rkl)
    assert float(build_loss({"name": "skl", "alpha": 1.0})(s, t, y)) == 0.0


def test_teacher_gets_no_gradient_and_ce_needs_no_teacher():
    s, t, y = make((1, 5, 8), seed=13)
    t.requires_grad_(True)
    s.requires_grad_(True)
    build_loss({"name": "fkl", "atkd": {}})(s, t, y).backward()
    assert t.grad is None and s.grad is not None
    assert torch.isfinite(build_loss("ce")(s, None, y))


def test_custom_divergence_gets_atkd_for_free():
    name = "test_sq_hellinger"

    @register_divergence(name)
    def hellinger(lp, lq):
        return ((0.5 * lp).exp() - (0.5 * lq).exp()).pow(2).sum(-1)

    try:
        assert name in valid_names()
        s, t, y = make((2, 7, 19), seed=14)
        got = build_loss({"name": name, "atkd": {"k": 0.5, "lam": 0.2}})(s, t, y)
    finally:
        del DIVERGENCES[name]
    r = ref.parts(s, t, y, "fkl")
    hel = lambda a, b: (a.sqrt() - b.sqrt()).pow(2).sum(-1)  # noqa: E731
    valid = y != -100
    p, q = torch.softmax(t[valid], -1), torch.softmax(s[valid], -1)
    oh = torch.nn.functional.one_hot(y[valid], 19).bool()
    pg, qg = p[oh], q[oh]
    tkd = hel(torch.stack([pg, 1 - pg], -1), torch.stack([qg, 1 - qg], -1))
    dkd = hel(p.masked_fill(oh, 0) / (1 - pg)[:, None], q.masked_fill(oh, 0) / (1 - qg)[:, None])
    hard = ref.hard_mask(r["unc"], 0.5)
    want = 0.2 * dkd[~hard].mean() + 0.8 * (tkd[hard] + dkd[hard]).mean()
    torch.testing.assert_close(got, want)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kl", "unknown loss name 'kl'; valid: ce, dkd, fkl, jsd, rkl, skl, srkl"),
        (
            {"name": "jsd", "alpha": 0.1},
            "unknown parameter for loss 'jsd': 'alpha'; valid: atkd, beta, chunk_size",
        ),
        (
            {"name": "fkl", "atkd": {"ratio": 0.5}},
            "unknown atkd option 'ratio'; valid: groups, k, lam, split, unc_weight",
        ),
        ({"name": "fkl", "atkd": {"split": "token"}}, "unknown atkd split 'token'; valid: batch, sequence"),
        ({"name": "fkl", "atkd": {"k": 0.0}}, "atkd k (hard-token ratio) must be in (0, 1]"),
        ({"name": "fkl", "atkd": {"lam": 1.5}}, "atkd lam must be in [0, 1]"),
        ({"name": "fkl", "atkd": {"lam": 0.2, "groups": {}}}, "set lam (ATKD's weights) or groups"),
        ({"name": "fkl", "atkd": {"groups": {"medium": {}}}}, "atkd group 'medium'; valid: easy, hard"),
        ({"name": "fkl", "atkd": {"groups": {"hard": {"kd": 1}}}}, "unknown part in atkd groups.hard: 'kd'"),
        ({"name": "fkl", "atkd": {"groups": {"hard": {"tkd": -1}}}}, "groups.hard.tkd must be a number >= 0"),
        ({"name": "fkl", "atkd": {"groups": {"hard": {"tkd": 0}}}}, "every weight is 0"),
        ({"name": "jsd", "beta": 2.0}, "parameter beta=2.0 of loss 'jsd' is out of range"),
        ({"name": "ce", "atkd": {}}, "+ATKD needs a teacher and 'ce' has none"),
        ({"name": "fkl", "temperature": 0}, "temperature must be > 0"),
        ({"name": "fkl", "chunk_size": -1}, "chunk_size must be a non-negative int"),
        (3, "a loss spec is a name or a mapping"),
    ],
)
def test_errors_list_the_valid_choices(spec, message):
    with pytest.raises(ValueError) as err:
        build_loss(spec)
    assert message in str(err.value)
    if "unknown loss name" in message:
        assert set(valid_names()) >= {"fkl", "rkl", "tvd", "jsd", "skl", "srkl", "dkd", "ce"}


def test_call_errors():
    s, t, y = make((2, 3, 7))
    with pytest.raises(ValueError, match="needs teacher logits"):
        build_loss("fkl")(s, None, y)
    with pytest.raises(ValueError, match="not aligned"):
        build_loss("fkl")(s, t, y[:, :2])
    with pytest.raises(ValueError, match="teacher logits"):
        build_loss("fkl")(s, t[:, :, :5], y)
    bad = y.clone()
    bad[0, 0] = 7
    with pytest.raises(ValueError, match=r"labels must be in \[0, 7\)"):
        build_loss("fkl")(s, t, bad)
    with pytest.raises(ValueError, match="plain divergence"):
        token_parts(s, t, y, "ce")


# -------------------------------------------------------------------------------------- properties

logit_rows = st.integers(min_value=2, max_value=40).flatmap(
    lambda v: st.tuples(
        st.just(v),
        st.integers(0, 2**31 - 1),
        st.floats(0.1, 12.0),
    )
)


@settings(max_examples=60, deadline=None)
@given(logit_rows, st.sampled_from(DIVS))
def test_property_nonnegative_and_decomposition(case, name):
    v, seed, scale = case
    s, t, y = make((2, 5, v), seed=seed, scale=scale)
    p = token_parts(s, t, y, name)
    for key in ("tkd", "dkd", "base"):
        assert (p[key] >= -1e-12).all(), key
    assert ((p["unc"] >= 0) & (p["unc"] <= 1)).all()
    if name == "fkl":
        torch.testing.assert_close(p["base"], p["tkd"] + p["unc"] * p["dkd"], rtol=1e-9, atol=1e-12)
    if name == "tvd":
        assert (p["base"] <= 1 + 1e-12).all()
    for atkd in (None, {}):
        assert float(build_loss({"name": name, "atkd": atkd})(s, t, y)) >= -1e-12


@settings(max_examples=40, deadline=None)
@given(logit_rows)
def test_property_jsd_half_is_symmetric_and_bounded(case):
    v, seed, scale = case
    s, t, y = make((1, 6, v), seed=seed, scale=scale)
    a = token_parts(s, t, y, {"name": "jsd", "beta": 0.5})["base"]
    b = token_parts(t, s, y, {"name": "jsd", "beta": 0.5})["base"]
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert (a <= math.log(2) + 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(logit_rows, st.floats(0.05, 1.0), st.floats(0.0, 1.0))
def test_property_atkd_equals_reference(case, k, lam):
    v, seed, scale = case
    scale = min(scale, 4.0)  # beyond this the float64 reference's 1 - p_g loses the digits it is checked to
    s, t, y = make((2, 6, v), seed=seed, scale=scale)
    got = build_loss({"name": "fkl", "atkd": {"k": k, "lam": lam}})(s, t, y)
    torch.testing.assert_close(got, ref.loss(s, t, y, atkd={"k": k, "lam": lam}), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "spec",
    [
        "ce",
        "fkl",
        "dkd",
        {"name": "dkd", "alpha": 2.0, "beta": 0.5, "atkd": {}},
        {"name": "fkl", "atkd": {}},
        {"name": "fkl", "atkd": {"k": 0.3, "lam": 0.6, "unc_weight": True}},
        {"name": "fkl", "atkd": {"split": "sequence"}, "temperature": 2.0},
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_closed_form_gradients_equal_autograd_path(spec, dtype):
    import dataclasses

    from atkd.losses import KDLoss, parse_spec

    s, t, y = make((3, 8, 41), dtype=dtype, seed=15)
    s.requires_grad_(True)
    cfg = parse_spec(spec)
    assert cfg.closed_form
    fast = KDLoss(cfg)(s, t, y)
    (g_fast,) = torch.autograd.grad(fast, s)
    slow = KDLoss(dataclasses.replace(cfg, closed_form=False))(s, t, y)
    (g_slow,) = torch.autograd.grad(slow, s)
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(fast, slow, rtol=tol, atol=tol)
    torch.testing.assert_close(g_fast.double(), g_slow.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("vocab", [50257, 128256])
@pytest.mark.parametrize("spec", ["fkl", {"name": "fkl", "atkd": {}}, {"name": "jsd", "atkd": {}}])
def test_large_vocab_chunked_equals_unchunked_and_reference(vocab, spec):
    s, t, y = make((2, 5, vocab), dtype=torch.float32, seed=16)
    s.requires_grad_(True)
    base = spec if isinstance(spec, dict) else {"name": spec}
    whole = build_loss({**base, "chunk_size": 0})(s, t, y)
    (g_whole,) = torch.autograd.grad(whole, s)
    chunked = build_loss({**base, "chunk_size": 2})(s, t, y)
    (g_chunked,) = torch.autograd.grad(chunked, s)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
    # row-wise math; only the vectorised reductions' split may differ with the chunk's row count
    torch.testing.assert_close(g_chunked, g_whole, rtol=1e-5, atol=1e-8)
    want = ref.loss(s.detach().double(), t.double(), y, base["name"], atkd=base.get("atkd"))
    torch.testing.assert_close(whole.double(), want, rtol=1e-5, atol=1e-6)


ONE_PASS_SPECS = [
    {"name": "fkl", "atkd": {}},
    {"name": "fkl", "atkd": {"k": 0.3, "lam": 0.7}},
    {"name": "fkl", "atkd": {"split": "sequence"}},
    {"name": "fkl", "atkd": {"k": 0.5, "unc_weight": True, "groups": {"hard": {"tkd": 1, "dkd": 1}}}},
    {"name": "fkl", "atkd": {"groups": {"easy": {"tkd": 0.3, "dkd": 0.5}, "hard": {"dkd": 0.5}}}},
    {"name": "fkl", "atkd": {"k": 1.0}, "temperature": 2.0},
    {"name": "dkd", "alpha": 0.5, "beta": 8.0, "atkd": {}},
]


@pytest.mark.parametrize("spec", ONE_PASS_SPECS)
@pytest.mark.parametrize("chunk", [0, 3, None])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_one_pass_atkd_equals_the_two_pass_path(spec, chunk, dtype):
    """+ATKD on forward KL reads the teacher once (atkd.losses.onepass); ranking by a separate teacher
    (`rank_by`, here the same logits) takes the two-pass path. Same loss and gradient, also with
    `num_tokens` and without a gradient."""
    s, t, y = make((3, 11, 97), dtype=dtype, seed=11)
    s.requires_grad_(True)
    loss = build_loss({**spec, "chunk_size": chunk})
    one = loss(s, t, y, num_tokens=40)
    (g_one,) = torch.autograd.grad(one, s)
    two = loss(s, t, y, num_tokens=40, rank_by=t)
    (g_two,) = torch.autograd.grad(two, s)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(one, two, rtol=tol, atol=tol)
    torch.testing.assert_close(g_one, g_two, rtol=tol, atol=tol * float(g_two.abs().max()))
    with torch.no_grad():
        torch.testing.assert_close(loss(s, t, y), loss(s, t, y, rank_by=t), rtol=tol, atol=tol)


def test_one_pass_atkd_is_exact_for_a_confident_teacher():
    """Teacher UnC down to 1e-9 (p_g within float32's rounding of 1): the one-pass path's non-target
    distribution and split still match the float64 reference."""
    v = 50
    t = torch.zeros(1, 4, v)
    y = torch.tensor([[3, 7, 11, 0]])
    unc = torch.tensor([1e-9, 2e-9, 3e-9, 4e-9], dtype=torch.float64)
    t[0, torch.arange(4), y[0]] = torch.log((1 - unc) * (v - 1) / unc).float()
    s = torch.randn(1, 4, v, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = build_loss({"name": "fkl", "atkd": {}})(s, t, y)
    (g,) = torch.autograd.grad(out, s)
    s64 = s.detach().double().requires_grad_(True)
    want = ref.loss(s64, t.double(), y, atkd={})
    (g_want,) = torch.autograd.grad(want, s64)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g.double(), g_want, rtol=1e-4, atol=1e-6)
