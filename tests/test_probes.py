"""The token probes against a direct float64 computation on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atkd.models import build_model, load_tokenizer, save_model
from atkd.probes import probe_tokens, summarise
from atkd.train.data import collate, load_examples

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(world, tmp_path_factory):
    tok = load_tokenizer(world["tokenizer"])
    out = {}
    for name, arch, seed in (("teacher", "neox-48x2", 1), ("student", "neox-32x2", 2)):
        m = build_model(
            arch, len(tok), seed=seed, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
        )
        out[name] = save_model(m, tmp_path_factory.mktemp(name) / "m", tok)
    return out


def test_probe_matches_direct_computation(world, models):
    tokens = probe_tokens(
        models["teacher"], models["student"], world["train"], name="T", limit=5, batch_size=2
    )
    tok = load_tokenizer(models["student"])
    examples = load_examples(world["train"], tok, 512)[:5]
    batch = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        t = build_logits(models["teacher"], batch)
        s = build_logits(models["student"], batch)
    labels = batch["labels"][:, 1:]
    rows = []
    for b, pos in (labels != -100).nonzero().tolist():
        g = labels[b, pos]
        p, q = t[b, pos].softmax(-1), s[b, pos].softmax(-1)
        unc = 1 - p[g]
        bp, bq = torch.stack([p[g], 1 - p[g]]), torch.stack([q[g], 1 - q[g]])
        mask = torch.ones_like(p, dtype=torch.bool)
        mask[g] = False
        ph, qh = p[mask] / (1 - p[g]), q[mask] / (1 - q[g])
        rows.append(
            (
                b,
                pos + 1,
                float(unc),
                float(1 - q[g]),
                float(-q[g].log()),
                float((bp * (bp / bq).log()).sum()),
                float((ph * (ph / qh).log()).sum()),
                float((p * (p / q).log()).sum()),
            )
        )
    assert len(tokens) == len(rows) == sum(e.num_targets for e in examples)
    for (_, r), ref in zip(tokens.iterrows(), rows, strict=True):
        assert (r["seq"], r["pos"]) == ref[:2]
        assert [r["unc"], r["unc_student"], r["ce_student"], r["tkd"], r["dkd"], r["kd"]] == pytest.approx(
            list(ref[2:]), rel=1e-4, abs=1e-6
        )


def build_logits(model_dir, batch):
    from atkd.models import load_model

    m = load_model(model_dir).eval()
    return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].double()


def test_summary_shares_and_identity(world, models):
    tokens = probe_tokens(models["teacher"], models["student"], world["train"], name="T", limit=4)
    summary = summarise(tokens).set_index("metric")["value"]
    assert summary["tokens"] == len(tokens)
    assert summary["share_tkd"] + summary["share_unc_dkd"] == pytest.approx(1.0, abs=1e-4)
    assert summary["identity_max_residual"] < 1e-4
    assert summary["unc_mean"] == pytest.approx(tokens["unc"].mean())
    assert 0 <= summary["unc_below_0.1"] <= 1
    # The easy/hard halves by teacher UnC, recomputed directly from the token rows.
    order = tokens["unc"].sort_values(ascending=False, kind="stable").index
    n_hard = -(-len(tokens) // 2)
    hard, easy = tokens.loc[order[:n_hard], "ce_student"], tokens.loc[order[n_hard:], "ce_student"]
    assert summary["student_ce_hard"] == pytest.approx(hard.mean())
    assert summary["student_ce_easy"] == pytest.approx(easy.mean())


def test_easy_hard_split_takes_the_most_uncertain_half():
    from atkd.probes.tokens import easy_hard_split

    unc = np.array([0.5, 0.1, 0.9, 0.0, 0.3])
    assert easy_hard_split(unc).tolist() == [True, False, True, False, True]
    assert easy_hard_split(unc, k=0.2).tolist() == [False, False, True, False, False]


def test_landscape_centre_is_the_trained_model_and_directions_are_filter_normalised(world, models):
    from atkd.models import load_model
    from atkd.probes.landscape import landscape, random_direction, summarise
    from atkd.train.loop import evaluate_loss

    model = load_model(models["student"])
    d = random_direction(model, seed=0)
    for name, p in model.named_parameters():
        if p.dim() < 2:
            assert not d[name].any()
        else:
            rows_d, rows_p = d[name].reshape(p.shape[0], -1), p.detach().reshape(p.shape[0], -1)
            torch.testing.assert_close(rows_d.norm(dim=1), rows_p.norm(dim=1))
    df = landscape(models["student"], world["train"], steps=3, span=0.5, limit=4)
    assert len(df) == 3 + 6  # the line, then the rest of the 3 x 3 grid
    tok = load_tokenizer(models["student"])
    direct = evaluate_loss(model.eval(), load_examples(world["train"], tok, 512)[:4], tok.pad_token_id, 16)
    centre = df[(df["alpha"] == 0) & (df["beta"] == 0)]["loss"].item()
    assert centre == pytest.approx(direct, rel=1e-5)
    s = summarise(df).set_index("metric")["value"]
    assert s["loss_centre"] == pytest.approx(centre)
    line = df[df["beta"] == 0]
    assert s["sharpness"] == pytest.approx((line["loss"] - centre).mean())
    # deterministic: the same directions and data give the same numbers
    assert landscape(models["student"], world["train"], steps=3, span=0.5, limit=4).equals(df)
    with pytest.raises(ValueError, match="odd"):
        landscape(models["student"], world["train"], steps=4)


def test_sparse_accuracy_rows_match_the_losses_on_the_probed_records(world, models, tmp_path):
    """`atkd sparse-accuracy`: one row per K x loss x ATKD; its dense loss is the loss library's on the
    same logits; a top-K view that leaves out one token is exact up to float16 and closer than K = 4; the
    bytes are the cache's."""
    from atkd import cli
    from atkd.losses import build_loss
    from atkd.models import load_model
    from atkd.probes.sparse import LOSSES, pooled_logits, sparse_accuracy

    tok = load_tokenizer(models["student"])
    examples = load_examples(world["train"], tok, 512)[:4]
    student, teacher = load_model(models["student"]).eval(), load_model(models["teacher"]).eval()
    s, t, labels = pooled_logits(student, teacher, examples, tok.pad_token_id, 8)
    vocab = t.shape[-1]
    rows = sparse_accuracy(
        models["teacher"], models["student"], [world["train"]], [4, vocab - 1], name="T", limit=4
    )
    assert len(rows) == 2 * len(LOSSES) * 2
    assert rows[0]["positions"] == int((labels != -100).sum())
    for r in rows:
        spec = {"name": r["loss"], **({"atkd": {"k": 0.5, "lam": 0.2}} if r["atkd"] == "on" else {})}
        assert float(r["dense_loss"]) == pytest.approx(float(build_loss(spec)(s, t, labels)), rel=1e-5)
        assert r["bytes_per_position"] == 4 * r["k"] + 8
        if r["k"] == vocab - 1:  # float16 log-probabilities are the only error left (both models are
            # near uniform here, so q - p is small and their rounding shows)
            assert float(r["grad_cosine"]) > 0.99 and float(r["loss_rel_error"]) < 1e-2
    cosine = {(r["k"], r["loss"], r["atkd"]): float(r["grad_cosine"]) for r in rows}
    assert all(cosine[(vocab - 1, name, a)] >= cosine[(4, name, a)] for _, name, a in cosine)
    out = tmp_path / "sparse.csv"
    args = ["sparse-accuracy", "--teacher", str(models["teacher"]), "--student", str(models["student"])]
    args += ["--data", str(world["train"]), "--k", "4", "--name", "T", "--out", str(out), "--limit", "2"]
    assert cli.main(args) == 0 and len(out.read_text().splitlines()) == 1 + len(LOSSES) * 2
    with pytest.raises(ValueError, match=r"k 99999 must be between 1 and the vocabulary"):
        sparse_accuracy(models["teacher"], models["student"], [world["train"]], [99999], name="T", limit=1)
