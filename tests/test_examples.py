"""The worked examples of extending the suite (examples/): each checked against a direct float64
computation of its authors' formulas."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import pytest
import torch

from atkd.losses import build_loss
from atkd.plugins import load_plugin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _registries_restored():
    """The examples register `akl` and `taid` in this process; later tests see the registries as before
    (their error messages list the registered names)."""
    from atkd.losses import DIVERGENCES
    from atkd.train.stateful import STATEFUL

    saved = dict(DIVERGENCES), dict(STATEFUL)
    yield
    for registry, before in zip((DIVERGENCES, STATEFUL), saved, strict=True):
        registry.clear()
        registry.update(before)


@pytest.fixture(scope="module")
def akl_module():
    return load_plugin(str(ROOT / "examples" / "akl.py"))


def akl_reference(p: list[float], q: list[float], mu: float) -> float:
    """AKL of one token in plain Python, step by step as in the authors' AKL.py (wutaiqiang/LLM_KD_AKL):
    sort by teacher probability, the tail where the running sum exceeds mu (top-1 always head), gaps
    |p - q| summed per part, FKL weighted by the head share and RKL by the tail share."""
    order = sorted(range(len(p)), key=lambda v: -p[v])
    running, g_head, g_tail = 0.0, 0.0, 0.0
    for rank, v in enumerate(order):
        running += p[v]
        gap = abs(p[v] - q[v])
        if running > mu and rank > 0:
            g_tail += gap
        else:
            g_head += gap
    fkl = sum(pv * (math.log(pv) - math.log(qv)) for pv, qv in zip(p, q))
    rkl = sum(qv * (math.log(qv) - math.log(pv)) for pv, qv in zip(p, q))
    if g_head + g_tail == 0:
        return 0.0
    return g_head / (g_head + g_tail) * fkl + g_tail / (g_head + g_tail) * rkl


@pytest.mark.parametrize("mu", [0.5, 0.2, 0.9])
@pytest.mark.parametrize("shape", [(2, 3, 7), (1, 5, 64)])
def test_akl_matches_the_authors_formula_in_float64(akl_module, mu, shape):
    gen = torch.Generator().manual_seed(shape[-1] + int(mu * 10))
    t = torch.randn(*shape, generator=gen, dtype=torch.float64) * 3
    s = torch.randn(*shape, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, shape[-1], shape[:2], generator=gen)
    labels[0, 0] = -100  # a masked position does not count
    loss = build_loss({"name": "akl", "mu": mu})(s, t, labels)
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    per_token = [
        akl_reference(p[b, i].tolist(), q[b, i].tolist(), mu)
        for b in range(shape[0])
        for i in range(shape[1])
        if labels[b, i] != -100
    ]
    assert float(loss) == pytest.approx(sum(per_token) / len(per_token), rel=1e-10)


def test_akl_weights_are_constants_and_equal_distributions_give_zero(akl_module):
    """The gradient is that of the weighted KLs with the weights held fixed (the authors' weights use the
    student's probabilities without gradient); a student equal to the teacher gets loss 0, not NaN."""
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    s = torch.randn(4, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    lp, lq = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    w_head, w_tail = akl_module.akl_weights(lp, lq, 0.5)
    assert not w_head.requires_grad and torch.allclose(w_head + w_tail, torch.ones(4, dtype=torch.float64))
    (grad,) = torch.autograd.grad(akl_module.akl(lp, lq).sum(), s, retain_graph=True)
    fixed = w_head * (lp.exp() * (lp - lq)).sum(-1) + w_tail * (lq.exp() * (lq - lp)).sum(-1)
    (expected,) = torch.autograd.grad(fixed.sum(), s)
    assert torch.allclose(grad, expected)
    same = akl_module.akl(lp, lp.clone())
    assert torch.equal(same, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="mu"):
        build_loss({"name": "akl", "mu": 1.5})


# ------------------------------------------------------------------------------------------------ TAID
@pytest.fixture(scope="module")
def taid_module():
    return load_plugin(str(ROOT / "examples" / "taid.py"))


def taid_schedule_reference(losses, total, t_start=0.4, t_end=1.0, alpha=5e-4, beta=0.99):
    """t after each step, transcribed from the authors' TAID.update_t (SakanaAI/TAID,
    src/distil_losses/taid.py) in plain Python: the first call only stores the loss; then the relative
    change feeds a momentum, sigmoid(momentum) scales a step towards 1, floored by the linear schedule at
    global_step / num_train_steps (global_step: optimiser steps before this one) and capped at t_end."""
    t, prev, momentum, out = t_start, float("inf"), 0.0, []
    for global_step, loss in enumerate(losses):
        if prev == float("inf"):
            prev = loss
            out.append(t)
            continue
        relative_change = (prev - loss) / (prev + 1e-15)
        momentum = beta * momentum + (1 - beta) * relative_change
        adaptive_delta = 1 / (1 + math.exp(-momentum))
        t_target = t_start + (t_end - t_start) * (global_step / total)
        t = min(t_end, max(t_target, t + alpha * adaptive_delta * (1 - t)))
        prev = loss
        out.append(t)
    return out


def test_taid_schedule_matches_the_authors_update(taid_module):
    """Per step, `after_step` moves t exactly as the authors' update does, from the step's J (the
    cross-entropy to p_t at the old t), falling or rising losses alike, capped at t_end."""
    loss = build_loss("fkl")
    total = 40
    method = taid_module.TAID(loss, total_steps=total, alpha=0.05)
    gen = torch.Generator().manual_seed(1)
    js = []
    for step in range(1, total + 1):
        s = torch.randn(2, 5, 11, generator=gen, dtype=torch.float64)
        t = torch.randn(2, 5, 11, generator=gen, dtype=torch.float64) * 2
        labels = torch.randint(0, 11, (2, 5), generator=gen)
        labels[1, :2] = -100
        method(s, t, labels)
        p = torch.softmax(taid_module.interpolate(s, t, method.t), -1)[labels != -100]
        js.append(float(-(p * torch.log_softmax(s, -1)[labels != -100]).sum(-1).mean()))
        method.after_step(step, {})
        expected = taid_schedule_reference(js, total, alpha=0.05)[-1]
        assert method.t == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert 0.4 < method.t <= 1.0 and method.prev == pytest.approx(js[-1])


@pytest.mark.parametrize("atkd", [False, True])
def test_taid_loss_is_the_divergence_to_the_interpolated_target(taid_module, atkd):
    """Without ATKD: KL(p_t || q) per target token, averaged, with p_t = softmax((1-t) sg(z_s) + t z_T)
    computed directly in float64; with ATKD the tokens are ranked by the teacher's own UnC, not p_t's."""
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(3, 6, 13, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 6, 13, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 13, (3, 6), generator=gen)
    spec = {"name": "fkl", **({"atkd": {"k": 0.5, "lam": 0.2}} if atkd else {})}
    method = taid_module.TAID(build_loss(spec), total_steps=10, t_start=0.3)
    got = method(s, t, labels)
    target = 0.7 * s.detach() + 0.3 * t
    if not atkd:
        lp, lq = torch.log_softmax(target, -1), torch.log_softmax(s, -1)
        expected = (lp.exp() * (lp - lq)).sum(-1).mean()
    else:
        expected = build_loss(spec)(s, target, labels, rank_by=t)
        assert not torch.allclose(expected, build_loss(spec)(s, target, labels))  # the ranking matters
    assert torch.allclose(got, expected, rtol=1e-12)
    (grad,) = torch.autograd.grad(got, s, retain_graph=True)
    (ref,) = torch.autograd.grad(expected, s)
    assert torch.allclose(grad, ref, rtol=1e-10)


def test_taid_resumes_exactly_after_a_kill(taid_module, tmp_path):
    """A TAID run killed after step 3 and run again ends with the weights and the t of an uninterrupted
    run (t, the last J and the momentum travel with the checkpoint)."""
    from helpers.tiny_world import killed_then_resumed, train_config, write_world

    from atkd.train import train

    world = write_world(tmp_path / "world")
    teacher = train(train_config(world, tmp_path / "teacher", max_steps=4))
    kw = dict(
        loss="fkl", teacher=str(teacher), max_steps=6, checkpoint_every=1, keep_final_checkpoint=True,
        plugins=[str(ROOT / "examples" / "taid.py")], stateful={"name": "taid", "alpha": 0.2},
    )  # fmt: skip
    whole = train(train_config(world, tmp_path / "whole", **kw))
    resumed = killed_then_resumed(train_config(world, tmp_path / "killed", **kw), at=3)
    a = (whole / "model.safetensors").read_bytes()
    assert (resumed / "model.safetensors").read_bytes() == a

    def final_t(out):
        latest = sorted((out.parent / "checkpoints").iterdir())[-1]
        return torch.load(latest / "state.pt", weights_only=False)["method"]

    assert final_t(resumed) == final_t(whole) and final_t(whole)["t"] > 0.4


# ------------------------------------------------------------------------------------ TRL's GKD as a rule
def _trl_gkd():
    """examples/trl_gkd/train.py as a module (skips without the `trl` extra)."""
    pytest.importorskip("trl")
    return load_plugin(str(ROOT / "examples" / "trl_gkd" / "train.py"))


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trls_generalized_jsd_is_the_studys_jsd(beta, dtype):
    """The divergence TRL's GKDTrainer trains on equals atkd's `jsd` with the same beta (same convention:
    beta 0 is forward KL, 1 reverse KL), token for token, so trl_gkd and gkd optimise one objective."""
    _trl_gkd()
    from trl.experimental.gkd import GKDTrainer

    g = torch.Generator().manual_seed(int(beta * 10))
    s, t = (torch.randn(3, 7, 11, generator=g, dtype=dtype) * 2 for _ in range(2))
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, :3] = labels[2, 5:] = -100
    got = GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta)
    want = build_loss({"name": "jsd", "beta": beta})(s, t, labels)
    assert torch.allclose(got, want.to(got.dtype), rtol=1e-5 if dtype == torch.float32 else 1e-10)


def test_trl_gkd_batches_hold_the_studys_tokens_and_left_padded_prompts():
    """The collator gives TRL the study's own tokenisation: whole sequences right-padded with -100 on prompt
    and padding, and the prompts left-padded (what `generate` continues from)."""
    mod = _trl_gkd()
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9], "prompt_len": 2},
        {"input_ids": [1, 2, 3, 4], "labels": [-100, -100, -100, 4], "prompt_len": 3},
    ]
    b = mod.collate(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 0]]
    assert b["labels"].tolist() == [[-100, -100, 7, 8, 9], [-100, -100, -100, 4, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b["prompts"].tolist() == [[0, 5, 6], [1, 2, 3]]
    assert b["prompt_attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert mod.eval_steps(10, 3) == {3, 7, 10} and mod.eval_steps(10, None) == {10}


@pytest.mark.parametrize("atkd", ["off", "on"])
def test_trl_gkd_leaves_a_run_the_workflow_reads(tmp_path, atkd):
    """A short TRL GKD run (on-policy every step) on a tiny world: the checkpoint, a summary whose config
    names the loss (+ATKD: the study's jsd with the split), and the study's metrics.jsonl lines."""
    import json

    from helpers.tiny_world import train_config, write_world

    from atkd.train import train

    mod = _trl_gkd()
    world = write_world(tmp_path / "world")
    base = train(train_config(world, tmp_path / "base", loss="ce", max_steps=2))
    teacher = train(train_config(world, tmp_path / "teacher", loss="ce", max_steps=4))
    settings = {"distill": {"batch_size": 8, "max_steps": 3, "max_length": 64, "eval_points": 2,
                            "log_every": 1},
                "params": {"lmbda": 1.0, "max_new_tokens": 4}, "threads": 1}  # fmt: skip
    if atkd == "on":
        settings["atkd_options"] = {"k": 0.5, "lam": 0.2}
    out = tmp_path / "run"
    mod.main(["--student", str(base), "--teacher", str(teacher), "--data", str(world["train"]),
              "--valid", str(world["valid"]), "--atkd", atkd, "--seed", "1", "--out", str(out),
              "--settings", json.dumps(settings)])  # fmt: skip
    assert (out / "final" / "config.json").is_file() and (out / "final" / "tokenizer.json").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["config"]["lmbda"] == 1.0
    assert summary["config"]["loss"] == {"name": "jsd", "beta": 0.5} | (
        {"atkd": {"k": 0.5, "lam": 0.2}} if atkd == "on" else {}
    )
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "valid_loss" in x] == [2, 3]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]
    assert not (out / "trl").exists()  # TRL's resume checkpoints go once the run is complete
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (out / "final").iterdir():  # as readable as a plain `open` makes them (safetensors: 0600)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_trl_gkd_unknown_params_fail_naming_the_valid_ones(tmp_path):
    mod = _trl_gkd()
    with pytest.raises(SystemExit, match=r"unknown params \['lambda'\]; valid: beta, lmbda"):
        mod.main(["--student", "x", "--teacher", "y", "--data", "z", "--out", str(tmp_path),
                  "--settings", '{"params": {"lambda": 0.5}}'])  # fmt: skip


def test_a_stateful_method_that_needs_dense_logits_refuses_a_sparse_cache(taid_module):
    """TAID interpolates logits: under `teacher_cache.topk` the config check fails before any job, and
    passes when the method reads the live teacher."""
    import yaml

    from atkd.config import ConfigError, check_study

    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["plugins"] = [str(ROOT / "examples" / "taid.py")]
    cfg["methods"]["taid"] = {"loss": "fkl", "stateful": {"name": "taid"}, "teachers": ["neox-64x2"]}
    cfg["teacher_cache"] = {"topk": 8}
    with pytest.raises(ConfigError, match=r"methods.taid.stateful: taid needs the teacher's full logits"):
        check_study(cfg)
    cfg["methods"]["taid"]["teacher_cache"] = False
    check_study(cfg)
