"""Token-level KD losses: decoupling, +ATKD, and a fused chunked evaluation over the vocabulary.

Decoupling (docs/losses.md). At a position with target g, teacher p and student q:

    binary part      D(b_p, b_q),  b_p = [p_g, 1 - p_g]              ("TKD" for KL)
    non-target part  D(p^, q^),    p^_v = p_v / (1 - p_g), v != g     ("DKD" for KL)
    KL(p||q) = TKD + UnC * DKD  with  UnC = 1 - p_g  (exact)

All of it is computed from logits in log space: with `m` the log-sum-exp of the non-target logits,
`log p_g = -softplus(m - t_g)` and `log(1 - p_g) = -softplus(t_g - m)`, exact for confident teachers
(no `1 - p_g` cancellation), and `log p^ = t - m` with the target entry set to a finite "minus
infinity". Nothing is selected with a boolean mask over the vocabulary.

+ATKD: the valid tokens of the batch (or of each sequence) are ranked by teacher UnC; the top
`ceil(k * n)` are hard, the rest easy, and

    L = lam * mean_easy(nontarget) + (1 - lam) * mean_hard(binary + nontarget).

`groups` generalises the two weights for the token-level analyses of the study (docs/study.md):
`{easy: {tkd: a, dkd: b}, hard: {tkd: c, dkd: d}}` gives
`L = mean_easy(a * binary + b * nontarget) + mean_hard(c * binary + d * nontarget)`, so ATKD is
`easy {0, lam}, hard {1 - lam, 1 - lam}`, KD on the hardest k only is `easy {0, 0}, hard {1, 1}` with
`unc_weight`, and "DKD everywhere, TKD on hard tokens" is `easy {0, b}, hard {c, b}`.

Evaluation is fused and chunked over tokens: the loss and its gradient with respect to the student
logits are computed together, `chunk_size` valid tokens at a time (float32 inside a chunk whatever the
input dtype), so peak memory is the inputs, one gradient buffer and one chunk's intermediates, never a
set of `[tokens x vocab]` temporaries. Per-token weights are fixed before the gradient pass because
they depend only on the teacher and the labels.

Normalisation: the loss returns `sum_i n_i * L_i / N`, where `L_i` is the loss of this call's `n_i`
valid tokens and `N` defaults to `n_i`. Passing the global valid-token count of an optimizer step as
`num_tokens` makes gradient accumulation and data parallelism equal one big batch for every plain
divergence; for +ATKD each call splits its own tokens (the split cannot see other micro-batches), and
the calls are combined weighted by their token counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from atkd.losses.divergences import DIVERGENCES, NEG, Divergence
from atkd.losses.onepass import decoupled_fkl_pass, finish_rows, log_binary
from atkd.losses.sparse import SparseTeacher, collapse, event_targets, sparse_log_uncertainty

IGNORE_INDEX = -100
# Elements of one [chunk x vocab] float32 temporary when chunk_size is automatic (16 MiB).
AUTO_CHUNK_ELEMENTS = 1 << 22

SPLITS = ("batch", "sequence")
ATKD_KEYS = {"k": 0.5, "lam": 0.2, "split": "batch", "unc_weight": False, "groups": None}
GROUPS = ("easy", "hard")
PARTS = ("tkd", "dkd")
COMMON_KEYS = {"temperature": 1.0, "ignore_index": IGNORE_INDEX, "chunk_size": None}
# Losses that are not a registered divergence but are built from the same machinery.
SPECIAL_LOSSES = {
    "ce": {},  # cross-entropy on the labels; no teacher
    "dkd": {"alpha": 1.0, "beta": 1.0},  # Zhao et al. 2022: alpha*TKD + beta*DKD on every token
}


@dataclass(frozen=True)
class AtkdConfig:
    """Options of +ATKD: hard-token ratio `k`, easy-token weight `lam`, where to split, UnC weighting, and
    optionally explicit per-group part weights `groups` ((easy tkd, easy dkd), (hard tkd, hard dkd))
    in place of `lam`."""

    k: float = 0.5
    lam: float = 0.2
    split: str = "batch"
    unc_weight: bool = False
    groups: tuple[tuple[float, float], tuple[float, float]] | None = None

    @property
    def group_weights(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((easy tkd, easy dkd), (hard tkd, hard dkd)): `groups`, or ATKD's from `lam`."""
        if self.groups is not None:
            return self.groups
        return (0.0, self.lam), (1.0 - self.lam, 1.0 - self.lam)


@dataclass(frozen=True)
class LossConfig:
    """A validated loss specification (what `build_loss` turns into a callable)."""

    name: str
    params: Mapping[str, float]
    temperature: float = 1.0
    ignore_index: int = IGNORE_INDEX
    chunk_size: int | None = None
    atkd: AtkdConfig | None = None
    closed_form: bool = True  # use the closed-form gradients where one exists (False: autograd)

    @property
    def needs_teacher(self) -> bool:
        return self.name != "ce"

    @property
    def divergence(self) -> Divergence | None:
        if self.name == "ce":
            return None
        return DIVERGENCES["fkl" if self.name == "dkd" else self.name]

    @property
    def part_scales(self) -> tuple[float, float] | None:
        """(binary, non-target) scales when the loss is a decoupled one, else None."""
        if self.name == "dkd":
            return float(self.params["alpha"]), float(self.params["beta"])
        if self.atkd is not None:
            return 1.0, 1.0
        return None


def valid_names() -> list[str]:
    """All loss names `build_loss` accepts."""
    return sorted(set(DIVERGENCES) | set(SPECIAL_LOSSES))


def _fail(what: str, got: Any, valid: list[str]) -> ValueError:
    return ValueError(f"unknown {what} {got!r}; valid: {', '.join(valid)}")


def parse_spec(spec: str | Mapping[str, Any] | LossConfig) -> LossConfig:
    """Validate a loss spec (a name or a dict) into a `LossConfig`; raise ValueError listing valid keys."""
    if isinstance(spec, LossConfig):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"a loss spec is a name or a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in valid_names():
        raise _fail("loss name", name, valid_names())
    defaults = dict(SPECIAL_LOSSES[name]) if name in SPECIAL_LOSSES else dict(DIVERGENCES[name].defaults)
    checks = {} if name in SPECIAL_LOSSES else DIVERGENCES[name].checks
    allowed = sorted(set(defaults) | set(COMMON_KEYS) | {"atkd"})
    for key in spec:
        if key not in allowed:
            raise _fail(f"parameter for loss {name!r}:", key, allowed)
    params = {key: float(spec.get(key, value)) for key, value in defaults.items()}
    for key, check in checks.items():
        if not check(params[key]):
            raise ValueError(f"parameter {key}={params[key]} of loss {name!r} is out of range")
    temperature = float(spec.get("temperature", 1.0))
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    chunk = spec.get("chunk_size")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 0):
        raise ValueError(f"chunk_size must be a non-negative int (0 = no chunking) or null, got {chunk!r}")
    atkd = _parse_atkd(spec.get("atkd"), name)
    return LossConfig(name, params, temperature, int(spec.get("ignore_index", IGNORE_INDEX)), chunk, atkd)


def _parse_atkd(raw: Any, name: str) -> AtkdConfig | None:
    if raw is None or raw is False:
        return None
    if name == "ce":
        raise ValueError(
            "+ATKD needs a teacher and 'ce' has none; for SeqKD+ATKD use an ATKD loss (e.g. fkl) "
            "on the teacher-generated sequences"
        )
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"atkd must be a mapping of {sorted(ATKD_KEYS)}, got {raw!r}")
    for key in raw:
        if key not in ATKD_KEYS:
            raise _fail("atkd option", key, sorted(ATKD_KEYS))
    if raw.get("groups") is not None and "lam" in raw:
        raise ValueError("atkd: set lam (ATKD's weights) or groups (explicit weights), not both")
    cfg = AtkdConfig(**{**ATKD_KEYS, **raw, "groups": None})
    if not 0.0 < float(cfg.k) <= 1.0:
        raise ValueError(f"atkd k (hard-token ratio) must be in (0, 1], got {cfg.k}")
    if not 0.0 <= float(cfg.lam) <= 1.0:
        raise ValueError(f"atkd lam must be in [0, 1], got {cfg.lam}")
    if cfg.split not in SPLITS:
        raise _fail("atkd split", cfg.split, list(SPLITS))
    if not isinstance(cfg.unc_weight, bool):
        raise ValueError(f"atkd unc_weight must be true or false, got {cfg.unc_weight!r}")
    groups = _parse_groups(raw.get("groups"))
    return AtkdConfig(float(cfg.k), float(cfg.lam), cfg.split, cfg.unc_weight, groups)


def _parse_groups(raw: Any) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """`{easy: {tkd: a, dkd: b}, hard: {tkd: c, dkd: d}}` (missing entries are 0) -> ((a, b), (c, d))."""
    if raw is None:
        return None
    if isinstance(raw, tuple):  # already parsed (an AtkdConfig's own value)
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"atkd groups must map easy/hard to {{tkd: w, dkd: w}}, got {raw!r}")
    out = []
    for key in raw:
        if key not in GROUPS:
            raise _fail("atkd group", key, list(GROUPS))
    for group in GROUPS:
        parts = raw.get(group) or {}
        if not isinstance(parts, Mapping):
            raise ValueError(f"atkd groups.{group} must be a mapping of {list(PARTS)}, got {parts!r}")
        for key, value in parts.items():
            if key not in PARTS:
                raise _fail(f"part in atkd groups.{group}:", key, list(PARTS))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"atkd groups.{group}.{key} must be a number >= 0, got {value!r}")
        out.append((float(parts.get("tkd", 0.0)), float(parts.get("dkd", 0.0))))
    if not any(w for pair in out for w in pair):
        raise ValueError("atkd groups: every weight is 0, so nothing would be learned")
    return out[0], out[1]


# --------------------------------------------------------------------------------------------------
# Log-space pieces of one distribution (one chunk of rows).


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _target_and_rest(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Return (target logit [C], log-sum-exp of the non-target logits [C], logits with target = NEG)."""
    idx = target.unsqueeze(-1)
    z_g = logits.gather(-1, idx).squeeze(-1)
    masked = logits.scatter(-1, idx, NEG)
    return z_g, torch.logsumexp(masked, dim=-1), masked


def _decoupled(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Log binary distribution [C, 2] = log[p_g, 1-p_g] and log non-target distribution [C, V]."""
    z_g, m, masked = _target_and_rest(logits, target)
    return log_binary(z_g, m), masked - m.unsqueeze(-1)


def log_uncertainty(logits: Tensor, target: Tensor) -> Tensor:
    """log(1 - p_g) per row, exact for confident distributions."""
    z_g, m, _ = _target_and_rest(logits, target)
    return -F.softplus(z_g - m)


# --------------------------------------------------------------------------------------------------
# Per-token weights.


@dataclass
class _Weights:
    base: Tensor | None  # weight of the full divergence, or None
    binary: Tensor | None  # weight of the binary part
    nontarget: Tensor | None  # weight of the non-target part (before UnC weighting)

    def rows(self, lo: int, hi: int) -> _Weights:
        """The weights of valid tokens lo..hi (one chunk)."""
        return _Weights(*(None if w is None else w[lo:hi] for w in (self.base, self.binary, self.nontarget)))


def _hard_mask(log_unc: Tensor, seq_ids: Tensor, cfg: AtkdConfig) -> Tensor:
    """Boolean [n] marking the ceil(k*n) highest-UnC tokens of the batch, or of each sequence."""
    hard = torch.zeros_like(log_unc, dtype=torch.bool)
    groups = [torch.arange(log_unc.numel(), device=log_unc.device)]
    if cfg.split == "sequence":
        groups = [torch.nonzero(seq_ids == s).squeeze(-1) for s in torch.unique(seq_ids)]
    for members in groups:
        n_hard = math.ceil(cfg.k * members.numel() - 1e-9)
        top = torch.topk(log_unc[members], n_hard, sorted=False).indices
        hard[members[top]] = True
    return hard


def _weights(cfg: LossConfig, log_unc: Tensor | None, seq_ids: Tensor, norm: float) -> _Weights:
    """Per-token weights of this call's n valid tokens, scaled so that the sum is `n * L / norm`."""
    n = seq_ids.numel()
    dtype = torch.float64
    if cfg.atkd is None:
        uniform = torch.full((n,), 1.0 / norm, dtype=dtype, device=seq_ids.device)
        scales = cfg.part_scales
        if scales is None:
            return _Weights(uniform, None, None)
        return _Weights(None, uniform * scales[0], uniform * scales[1])
    assert log_unc is not None
    a = cfg.atkd
    hard = _hard_mask(log_unc, seq_ids, a).to(dtype)
    n_hard, n_easy = float(hard.sum()), float(n - hard.sum())
    inv_hard = 1.0 / n_hard if n_hard else 0.0  # mean over each group's own tokens
    inv_easy = 1.0 / n_easy if n_easy else 0.0
    (easy_bin, easy_nt), (hard_bin, hard_nt) = a.group_weights
    scale = n / norm
    a_bin, a_nt = cfg.part_scales  # type: ignore[misc]
    binary = (hard * (hard_bin * inv_hard) + (1.0 - hard) * (easy_bin * inv_easy)) * (scale * a_bin)
    nontarget = (hard * (hard_nt * inv_hard) + (1.0 - hard) * (easy_nt * inv_easy)) * (scale * a_nt)
    return _Weights(None, binary, nontarget)


# --------------------------------------------------------------------------------------------------
# One chunk: weighted sum of the per-token terms (differentiable in the student logits).


def _chunk_terms(cfg: LossConfig, s: Tensor, t: Tensor | None, y: Tensor) -> dict[str, Tensor]:
    """Per-token terms of a chunk (already temperature-scaled, compute dtype)."""
    if cfg.name == "ce":
        return {"base": torch.logsumexp(s, -1) - s.gather(-1, y.unsqueeze(-1)).squeeze(-1)}
    assert t is not None
    div = cfg.divergence
    assert div is not None
    params = dict(cfg.params) if cfg.name != "dkd" else {}
    if cfg.part_scales is None:
        return {"base": div.fn(F.log_softmax(t, -1), F.log_softmax(s, -1), **params)}
    pb, pn = _decoupled(t, y)
    qb, qn = _decoupled(s, y)
    out = {"binary": div.fn(pb, qb, **params), "nontarget": div.fn(pn, qn, **params)}
    if cfg.atkd is not None and cfg.atkd.unc_weight:
        side = pb if div.unc_side == "teacher" else qb
        out["nontarget"] = out["nontarget"] * side[:, 1].exp()
    return out


def _chunk_loss(cfg: LossConfig, s: Tensor, t: Tensor | None, y: Tensor, w: _Weights) -> Tensor:
    terms = _chunk_terms(cfg, s, t, y)
    total = s.new_zeros(())
    for key, weight in (("base", w.base), ("binary", w.binary), ("nontarget", w.nontarget)):
        if weight is not None:
            total = total + (terms[key] * weight.to(terms[key].dtype)).sum()
    return total


def _col(w: Tensor | None, like: Tensor) -> Tensor:
    return w.to(like.dtype).unsqueeze(-1)


def _closed_form_chunk(
    cfg: LossConfig, s: Tensor, t: Tensor | None, y: Tensor, w: _Weights, want_grad: bool
) -> tuple[Tensor, Tensor | None] | None:
    """Loss and d loss / d s in closed form for ce, fkl and decoupled fkl (+ATKD, dkd); else None.

    Same math as the autograd path (the tests hold both to the reference), about half the
    [chunk x vocab] passes, and every temporary reused in place:
        ce:   grad = softmax(s) - onehot(g)
        fkl:  grad = q - p
        decoupled fkl, with q^ the student's non-target distribution:
              grad = w_nt (q^ - p^) + w_bin (p_g - q_g) q^  off the target, w_bin (q_g - p_g) at g
    """
    idx = y.unsqueeze(-1)
    if cfg.name == "ce":
        lse = torch.logsumexp(s, -1)
        loss = ((lse - s.gather(-1, idx).squeeze(-1)) * w.base.to(s.dtype)).sum()
        if not want_grad:
            return loss, None
        grad = torch.softmax(s, -1).mul_(_col(w.base, s))
        return loss, grad.scatter_add_(-1, idx, -_col(w.base, s))
    if cfg.name not in ("fkl", "dkd"):
        return None
    assert t is not None
    if cfg.part_scales is None:
        lp, lq = F.log_softmax(t, -1), F.log_softmax(s, -1)
        p = lp.exp()
        loss = (lp.sub_(lq).mul_(p).sum(-1) * w.base.to(s.dtype)).sum()
        if not want_grad:
            return loss, None
        return loss, lq.exp_().sub_(p).mul_(_col(w.base, s))
    z_t, m_t, lp_hat = _target_and_rest(t, y)
    z_s, m_s, lq_hat = _target_and_rest(s, y)
    lp_hat.sub_(m_t.unsqueeze(-1))
    lq_hat.sub_(m_s.unsqueeze(-1))
    lbin_p, lbin_q = log_binary(z_t, m_t), log_binary(z_s, m_s)
    tkd = (lbin_p.exp() * (lbin_p - lbin_q)).sum(-1)
    w_bin, w_nt = w.binary.to(s.dtype), w.nontarget.to(s.dtype)
    if cfg.atkd is not None and cfg.atkd.unc_weight:  # fkl: the teacher's UnC, a constant here
        w_nt = w_nt * lbin_p[:, 1].exp()
    p_hat = lp_hat.exp()
    dkd = lp_hat.sub_(lq_hat).mul_(p_hat).sum(-1)
    loss = (w_bin * tkd + w_nt * dkd).sum()
    if not want_grad:
        return loss, None
    p_g, q_g = lbin_p[:, 0].exp(), lbin_q[:, 0].exp()
    grad = lq_hat.exp_().mul_((w_nt + w_bin * (p_g - q_g)).unsqueeze(-1))
    grad.sub_(p_hat.mul_(w_nt.unsqueeze(-1)))
    return loss, grad.scatter_(-1, idx, (w_bin * (q_g - p_g)).unsqueeze(-1))


def chunk_bounds(
    n: int, vocab: int, chunk_size: int | None, auto_elements: int = AUTO_CHUNK_ELEMENTS, min_rows: int = 1
) -> list[tuple[int, int]]:
    """(lo, hi) row ranges covering n valid tokens: `chunk_size` rows each, all at once for 0, or for None
    as many as keep one [rows x vocab] float32 temporary at `auto_elements` (at least `min_rows`)."""
    if chunk_size == 0:
        size = max(n, 1)
    elif chunk_size is None:
        size = max(min_rows, auto_elements // max(vocab, 1))
    else:
        size = chunk_size
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def chunk_loss_and_grad(
    cfg: LossConfig, s: Tensor, t: Tensor | None, y: Tensor, w: _Weights, need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """One chunk's loss and its gradient in the (temperature-scaled) student logits `s`: the closed form
    where the loss has one, else autograd on the chunk alone; no gradient unless `need_grad`."""
    closed = _closed_form_chunk(cfg, s, t, y, w, need_grad) if cfg.closed_form else None
    if closed is not None:
        return closed
    if not need_grad:
        return _chunk_loss(cfg, s, t, y, w), None
    s = s.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = _chunk_loss(cfg, s, t, y, w)
    (g,) = torch.autograd.grad(loss, s)
    return loss, g


def sparse_chunk_loss_and_grad(
    cfg: LossConfig, s: Tensor, t: SparseTeacher, y: Tensor, w: _Weights, need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """`chunk_loss_and_grad` against a sparse teacher's rows `t`: the loss on the K + 2 events of
    `sparse.collapse`, its gradient carried back to every student logit through the collapse."""
    events = event_targets(t)
    if not need_grad:
        with torch.no_grad():
            s_ev, t_ev = collapse(s, t, y)
        return chunk_loss_and_grad(cfg, s_ev, t_ev, events, w, False)
    s = s.detach().requires_grad_(True)
    with torch.enable_grad():
        s_ev, t_ev = collapse(s, t, y)
    loss, g_ev = chunk_loss_and_grad(cfg, s_ev.detach(), t_ev.detach(), events, w, True)
    (g,) = torch.autograd.grad(s_ev, s, g_ev)
    return loss, g


def teacher_chunk(
    cfg: LossConfig, s: Tensor, t: Tensor | SparseTeacher | None, y: Tensor, w: _Weights, need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """One chunk's loss and gradient against dense teacher logits, a sparse teacher's rows (on K + 2 events,
    or on the full distribution its tail model rebuilds: atkd.losses.tails), or none."""
    if isinstance(t, SparseTeacher) and t.rebuilds:
        return chunk_loss_and_grad(cfg, s, t.rebuild(y, s.shape[-1], s.dtype), y, w, need_grad)
    if isinstance(t, SparseTeacher):
        return sparse_chunk_loss_and_grad(cfg, s, t, y, w, need_grad)
    return chunk_loss_and_grad(cfg, s, t, y, w, need_grad)


def _saved_grad(ctx: Any, grad_out: Tensor, n_inputs: int) -> tuple[Tensor | None, ...]:
    """Backward of a loss whose forward saved d loss / d student logits: that gradient times
    `grad_out`, and None for the other `n_inputs - 1` inputs."""
    (grad,) = ctx.saved_tensors
    if grad is not None and not torch.equal(grad_out, torch.ones_like(grad_out)):
        grad = grad * grad_out.to(grad.dtype)
    return (grad, *([None] * (n_inputs - 1)))


class _FusedKD(torch.autograd.Function):
    """Loss and d loss / d student logits in one chunked pass; backward only scales the gradient."""

    @staticmethod
    def forward(ctx, s_flat, t_flat, idx, y, weights, cfg):  # type: ignore[override]
        cdtype = _compute_dtype(s_flat.dtype)
        want_grad = ctx.needs_input_grad[0]
        grad = torch.zeros_like(s_flat) if want_grad else None
        total = torch.zeros((), dtype=torch.float64, device=s_flat.device)
        inv_t = 1.0 / cfg.temperature
        for lo, hi in chunk_bounds(idx.numel(), s_flat.shape[-1], cfg.chunk_size):
            rows = idx[lo:hi]
            s_c = s_flat.index_select(0, rows).to(cdtype) * inv_t
            if isinstance(t_flat, SparseTeacher):  # temperature 1 (checked)
                t_c: Tensor | SparseTeacher | None = t_flat.rows(rows)
            else:
                t_c = None if t_flat is None else t_flat.index_select(0, rows).to(cdtype) * inv_t
            loss, g = teacher_chunk(cfg, s_c, t_c, y[lo:hi], weights.rows(lo, hi), want_grad)
            if want_grad:
                grad.index_copy_(0, rows, (g * inv_t).to(grad.dtype))
            total += loss.detach().to(torch.float64)
        ctx.save_for_backward(grad if want_grad else None)
        return total.to(cdtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        return _saved_grad(ctx, grad_out, 6)


def one_pass_applies(cfg: LossConfig, teacher: Tensor | SparseTeacher | None, rank_by: object) -> bool:
    """+ATKD on forward KL (or dkd) against dense teacher logits that also rank the tokens, in closed
    form: the case `_OnePassATKD` computes with one read of the teacher."""
    return (
        cfg.atkd is not None
        and cfg.closed_form
        and cfg.name in ("fkl", "dkd")
        and isinstance(teacher, Tensor)
        and rank_by is None
    )


class _OnePassATKD(torch.autograd.Function):
    """+ATKD on decoupled forward KL in one pass over the teacher (atkd.losses.onepass): the per-token
    parts and UnC in one chunked pass, the batch's split and weights after it, then the stored gradient
    rows finished with the weights (reading only the student). Same loss and gradient as `_FusedKD`."""

    @staticmethod
    def forward(ctx, s_flat, t_flat, idx, y, seq_ids, norm, cfg):  # type: ignore[override]
        cdtype = _compute_dtype(s_flat.dtype)
        want_grad = ctx.needs_input_grad[0]
        n = idx.numel()
        grad = torch.zeros_like(s_flat) if want_grad else None
        inv_t = 1.0 / cfg.temperature
        bounds = chunk_bounds(n, s_flat.shape[-1], cfg.chunk_size)
        parts: dict[str, list[Tensor]] = {k: [] for k in ("tkd", "dkd", "log_unc", "c", "m_s")}
        with torch.no_grad():
            for lo, hi in bounds:
                rows = idx[lo:hi]
                s_c = s_flat.index_select(0, rows).to(cdtype) * inv_t
                t_c = t_flat.index_select(0, rows).to(cdtype) * inv_t
                stats, d = decoupled_fkl_pass(t_c, s_c, y[lo:hi], want_grad)
                for key in parts:
                    parts[key].append(getattr(stats, key))
                if d is not None:
                    grad.index_copy_(0, rows, d.mul_(inv_t).to(grad.dtype))
                del s_c, t_c, d
            tkd, dkd, log_unc, c, m_s = (torch.cat(parts[k]) for k in parts)
            w = _weights(cfg, log_unc.to(torch.float64), seq_ids, norm)
            w_bin, w_nt = w.binary, w.nontarget
            if cfg.atkd.unc_weight:  # fkl: the teacher's UnC
                w_nt = w_nt * log_unc.to(torch.float64).exp()
            total = (w_bin * tkd.to(torch.float64) + w_nt * dkd.to(torch.float64)).sum()
            if want_grad:
                w_bin_c, w_nt_c = w_bin.to(cdtype), w_nt.to(cdtype)
                for lo, hi in bounds:
                    rows = idx[lo:hi]

                    def student(local: Tensor, rows: Tensor = rows) -> Tensor:
                        return s_flat.index_select(0, rows.index_select(0, local)).to(cdtype) * inv_t

                    g = grad.index_select(0, rows).to(cdtype)
                    g = finish_rows(
                        g, student, y[lo:hi], m_s[lo:hi], c[lo:hi], w_bin_c[lo:hi], w_nt_c[lo:hi], inv_t
                    )
                    grad.index_copy_(0, rows, g.to(grad.dtype))
        ctx.save_for_backward(grad if want_grad else None)
        return total.to(cdtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        return _saved_grad(ctx, grad_out, 7)


# --------------------------------------------------------------------------------------------------
# Public entry points.


def _flatten(
    student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor, ignore_index: int
) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor]:
    """Check shapes; return flat logits views, valid row indices, their targets and sequence ids."""
    if student_logits.dim() < 2:
        raise ValueError(f"logits must be [..., V], got shape {tuple(student_logits.shape)}")
    if tuple(student_logits.shape[:-1]) != tuple(labels.shape):
        raise ValueError(
            f"logits {tuple(student_logits.shape)} and labels {tuple(labels.shape)} are not aligned: "
            "labels must have the logits' shape without the vocabulary axis"
        )
    if teacher_logits is not None and teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} differ from student logits "
            f"{tuple(student_logits.shape)}"
        )
    vocab = student_logits.shape[-1]
    s_flat = student_logits.reshape(-1, vocab)
    t_flat = None if teacher_logits is None else teacher_logits.reshape(-1, vocab)
    flat_labels = labels.reshape(-1)
    idx = torch.nonzero(flat_labels != ignore_index).squeeze(-1)
    y = flat_labels.index_select(0, idx)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= vocab):
        raise ValueError(
            f"labels must be in [0, {vocab}) or {ignore_index}; got {int(y.min())}..{int(y.max())}"
        )
    row_len = labels.shape[-1] if labels.dim() else 1
    seq_ids = torch.div(idx, row_len, rounding_mode="floor")
    return s_flat, t_flat, idx, y, seq_ids


def teacher_log_uncertainty(
    cfg: LossConfig, t_flat: Tensor | SparseTeacher, idx: Tensor, y: Tensor
) -> Tensor:
    """log UnC of the teacher for each valid token (float64 [n]), chunked and gradient-free."""
    if isinstance(t_flat, SparseTeacher):  # exact: the stored log p_g
        return sparse_log_uncertainty(t_flat.target.index_select(0, idx))
    out = torch.empty(idx.numel(), dtype=torch.float64, device=t_flat.device)
    with torch.no_grad():
        for lo, hi in chunk_bounds(idx.numel(), t_flat.shape[-1], cfg.chunk_size):
            t_c = t_flat.index_select(0, idx[lo:hi]).to(_compute_dtype(t_flat.dtype)) / cfg.temperature
            out[lo:hi] = log_uncertainty(t_c, y[lo:hi]).to(torch.float64)
    return out


class KDLoss:
    """Callable loss built by `build_loss`: `loss(student_logits, teacher_logits, labels, num_tokens=None)`.

    Logits are `[..., V]` and aligned with `labels` `[...]` (labels[b, t] is the target of position t;
    `ignore_index` marks prompt and padding). Returns the mean over valid tokens, or the sum divided
    by `num_tokens` when given (see the module docstring). The teacher receives no gradient.
    """

    def __init__(self, config: LossConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"KDLoss({self.config})"

    def __call__(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | SparseTeacher | None,
        labels: Tensor,
        num_tokens: int | float | Tensor | None = None,
        *,
        rank_by: Tensor | SparseTeacher | None = None,
    ) -> Tensor:
        """The loss; with +ATKD, `rank_by` (another teacher, same shape) ranks the tokens into easy and
        hard by its UnC instead of `teacher_logits` (a method whose target is not the teacher itself,
        e.g. TAID's interpolation, still splits by the teacher's uncertainty)."""
        cfg = self.config
        if cfg.needs_teacher and teacher_logits is None:
            raise ValueError(f"loss {cfg.name!r} needs teacher logits")
        sparse = teacher_logits if isinstance(teacher_logits, SparseTeacher) and cfg.needs_teacher else None
        teacher = None
        if cfg.needs_teacher and sparse is None and teacher_logits is not None:
            teacher = teacher_logits.detach()
        s_flat, t_flat, idx, y, seq_ids = _flatten(student_logits, teacher, labels, cfg.ignore_index)
        if sparse is not None:
            t_flat = check_sparse(cfg, sparse, labels.shape, s_flat.shape[-1])
        n = idx.numel()
        norm = float(num_tokens) if num_tokens is not None else float(n)
        if n == 0 or norm <= 0:
            return student_logits.sum() * 0.0
        if one_pass_applies(cfg, t_flat, rank_by):
            return _OnePassATKD.apply(s_flat, t_flat, idx, y, seq_ids, norm, cfg)
        log_unc = None
        if cfg.atkd is not None:
            assert t_flat is not None
            ranker = t_flat if rank_by is None else _rank_view(cfg, rank_by, labels, s_flat.shape[-1])
            log_unc = teacher_log_uncertainty(cfg, ranker, idx, y)
        weights = _weights(cfg, log_unc, seq_ids, norm)
        return _FusedKD.apply(s_flat, t_flat, idx, y, weights, cfg)


def _rank_view(
    cfg: LossConfig, t: Tensor | SparseTeacher, labels: Tensor, vocab: int
) -> Tensor | SparseTeacher:
    """The flat, detached view of a `rank_by` teacher (dense logits or sparse), checked like the teacher."""
    if isinstance(t, SparseTeacher):
        return check_sparse(cfg, t, labels.shape, vocab)
    if tuple(t.shape) != (*labels.shape, vocab):
        raise ValueError(
            f"rank_by logits {tuple(t.shape)} differ from the student's {(*labels.shape, vocab)}"
        )
    return t.detach().reshape(-1, vocab)


def check_sparse(cfg: LossConfig, t: SparseTeacher, labels_shape: Sequence[int], vocab: int) -> SparseTeacher:
    """A sparse teacher's flat, detached view after checking it against the labels and the loss."""
    t.check(labels_shape, vocab)
    if cfg.temperature != 1.0:
        raise ValueError(
            f"a sparse teacher holds log-probabilities at temperature 1; loss {cfg.name!r} has temperature "
            f"{cfg.temperature} (use a dense cache or a live teacher)"
        )
    return t.detach().flat()


def build_loss(spec: str | Mapping[str, Any] | LossConfig) -> KDLoss:
    """Build a loss callable from a name (`"fkl"`) or a dict (`{"name": "jsd", "beta": 0.5}`,
    `{"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}}`). Unknown names or parameters raise ValueError
    listing the valid ones."""
    return KDLoss(parse_spec(spec))


def token_parts(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    divergence: str | Mapping[str, Any] = "fkl",
    *,
    temperature: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Per-token view for the probes, over the valid tokens in row-major order (1-D float tensors).

    Keys: `unc` (teacher 1 - p_g), `unc_student` (1 - q_g), `tkd` (binary part of the divergence),
    `dkd` (non-target part, not multiplied by UnC), `base` (the full divergence), `seq` (sequence
    index of each token, as in the batch) and `target`. For fkl, `base == tkd + unc * dkd`.
    """
    spec = {"name": divergence} if isinstance(divergence, str) else dict(divergence)
    spec.update(temperature=temperature, ignore_index=ignore_index, chunk_size=chunk_size)
    cfg = parse_spec(spec)
    if cfg.divergence is None or cfg.atkd is not None or cfg.name == "dkd":
        raise ValueError("token_parts takes a plain divergence: one of " + ", ".join(sorted(DIVERGENCES)))
    s_flat, t_flat, idx, y, seq_ids = _flatten(student_logits, teacher_logits, labels, ignore_index)
    assert t_flat is not None
    cdtype = _compute_dtype(s_flat.dtype)
    parts: dict[str, list[Tensor]] = {k: [] for k in ("unc", "unc_student", "tkd", "dkd", "base")}
    params = dict(cfg.params)
    with torch.no_grad():
        for lo, hi in chunk_bounds(idx.numel(), s_flat.shape[-1], chunk_size):
            s_c = s_flat.index_select(0, idx[lo:hi]).to(cdtype) / temperature
            t_c = t_flat.index_select(0, idx[lo:hi]).to(cdtype) / temperature
            pb, pn = _decoupled(t_c, y[lo:hi])
            qb, qn = _decoupled(s_c, y[lo:hi])
            parts["unc"].append(pb[:, 1].exp())
            parts["unc_student"].append(qb[:, 1].exp())
            parts["tkd"].append(cfg.divergence.fn(pb, qb, **params))
            parts["dkd"].append(cfg.divergence.fn(pn, qn, **params))
            parts["base"].append(cfg.divergence.fn(F.log_softmax(t_c, -1), F.log_softmax(s_c, -1), **params))
    out = {k: torch.cat(v) if v else s_flat.new_zeros(0, dtype=cdtype) for k, v in parts.items()}
    out["seq"] = seq_ids
    out["target"] = y
    return out
