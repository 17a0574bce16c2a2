"""The training loop: label masking, gradient accumulation, determinism, exact resume, KD with a teacher."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from helpers.tiny_world import records, train_config
from safetensors.torch import load_file

from atkd.data.template import format_prompt
from atkd.losses import DIVERGENCES, build_loss, sparse_from_logits
from atkd.models import build_model, load_model, load_tokenizer, save_model
from atkd.models.tokenizer import iter_texts
from atkd.train import TrainConfig, forward_backward, train
from atkd.train.config import config_diff, load_config_file
from atkd.train.data import (
    BUCKET_WINDOW,
    IGNORE_INDEX,
    Example,
    batch_indices,
    collate,
    encode_record,
    epoch_order,
    load_examples,
    load_text,
    pack,
    padding_share,
    target_mask,
)
from atkd.train.optim import lr_lambda
from atkd.train.run import targets_only
from atkd.train.step import check_fused_head, check_packing, model_inputs
from atkd.train.teacher_cache import TeacherCache, build_teacher_cache, cache_bytes_per_row

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(world):
    return load_tokenizer(world["tokenizer"])


def weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- data


def test_labels_mask_prompt_and_train_eos(tok):
    rec = {"instruction": "Add 2 and 3.", "input": "numbers", "output": "5"}
    ex = encode_record(rec, tok, max_length=512)
    n_prompt = len(
        tok(format_prompt(rec["instruction"], rec["input"]), add_special_tokens=False)["input_ids"]
    )
    assert ex.labels[:n_prompt] == (IGNORE_INDEX,) * n_prompt
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    assert ex.input_ids[-1] == tok.eos_token_id and ex.labels[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[n_prompt:-1]) == "5"
    batch = collate(
        [ex, encode_record({"instruction": "Name a fruit.", "output": "apple"}, tok, 512)], tok.pad_token_id
    )
    pad = batch["attention_mask"] == 0
    assert pad.any() and (batch["labels"][pad] == IGNORE_INDEX).all()
    assert (batch["input_ids"][pad] == tok.pad_token_id).all()
    assert encode_record(rec, tok, max_length=n_prompt) is None  # no room for a target: dropped


def test_plain_text_blocks_train_every_token(world, tok):
    blocks = load_text(world["text"], tok, block_size=16)
    assert all(len(b.input_ids) <= 16 and b.labels == b.input_ids for b in blocks)
    stream = [t for b in blocks for t in b.input_ids]
    assert stream.count(tok.eos_token_id) == 40  # one EOS after each document
    assert load_examples(world["train"], tok, 512)[0].labels[0] == IGNORE_INDEX


def test_jsonl_text_corpus_keeps_line_breaks_inside_documents(world, tok, tmp_path):
    lines = [ln for ln in world["text"].read_text(encoding="utf-8").splitlines() if ln.strip()]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": ln}) + "\n" for ln in lines), encoding="utf-8")
    assert load_examples(corpus, tok, 16) == load_text(world["text"], tok, 16)  # the same documents
    assert [t for _, t in zip(range(3), iter_texts([corpus]))] == lines[:3]  # the tokenizer reads them too

    corpus.write_text(json.dumps({"text": "Tom sings.\nTom sings."}) + "\n", encoding="utf-8")
    stream = [t for b in load_examples(corpus, tok, 64) for t in b.input_ids]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert stream == tok("Tom sings.\nTom sings.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert any(stream[i : i + len(newline)] == newline for i in range(len(stream)))  # one document, not two

    corpus.write_text(json.dumps({"text": "Tom sings."}) + "\n" + json.dumps({"txt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"corpus.jsonl:2: .*text"):
        load_examples(corpus, tok, 64)


def test_data_order_is_a_seeded_epoch_stream():
    a = batch_indices(10, seed=1, position=0, batch_size=10)
    assert sorted(a) == list(range(10))
    assert batch_indices(10, 1, 0, 25)[:10] == a and sorted(batch_indices(10, 1, 10, 10)) == list(range(10))
    assert batch_indices(10, 1, 7, 6) == batch_indices(10, 1, 0, 13)[7:]
    assert batch_indices(10, 2, 0, 10) != a


def stream(n, seed, start, stop, batch_size, lengths):
    """Stream positions [start, stop) of a run, read step by step as the loop does."""
    out = []
    for pos in range(start, stop, batch_size):
        out.extend(batch_indices(n, seed, pos, batch_size, lengths))
    return out[: stop - start]


def test_bucketed_order_is_a_seeded_permutation_of_similar_lengths():
    n, bs = 1003, 8  # n % bs = 3: batches straddle epochs, so later epochs begin mid-batch
    assert n > 2 * BUCKET_WINDOW * bs  # several windows per epoch
    rng = np.random.default_rng(0)
    lengths = tuple(int(x) for x in rng.integers(5, 200, size=n))
    epochs = 3
    whole = stream(n, 7, 0, epochs * n, bs, lengths)
    for e in range(epochs):  # every example exactly once per epoch
        assert sorted(whole[e * n : (e + 1) * n]) == list(range(n))
        assert whole[e * n : (e + 1) * n] == epoch_order(n, 7, e, lengths, bs)
    assert whole == stream(n, 7, 0, epochs * n, bs, list(lengths))  # a function of (seed, position)
    assert whole != stream(n, 8, 0, epochs * n, bs, lengths)
    assert whole[:n] != epoch_order(n, 7, 0)  # not the random order
    for pos in (bs * 50, bs * 125, bs * 251, bs * 300):  # resume mid-epoch, across an epoch boundary
        assert batch_indices(n, 7, pos, bs, lengths) == whole[pos : pos + bs]
    batches = [whole[i : i + bs] for i in range(0, len(whole) - bs + 1, bs)]
    straddling = {(e * n) // bs for e in range(1, epochs)}  # batches holding the end of one epoch
    for k, b in enumerate(batches):  # ... and the start of the next; all others: one sorted window
        if k not in straddling:
            assert [lengths[i] for i in b] == sorted(lengths[i] for i in b), k
    random_batches = [batch_indices(n, 7, i, bs) for i in range(0, epochs * n - bs + 1, bs)]
    assert padding_share(batches, lengths) < 0.1 < 0.3 < padding_share(random_batches, lengths)
    # the batches are shuffled: the first window's worth does not run from short to long
    firsts = [lengths[b[0]] for b in batches[:BUCKET_WINDOW]]
    assert firsts != sorted(firsts)
    # fewer examples than a batch: still a permutation per epoch
    assert sorted(stream(5, 0, 0, 5, 8, (3, 1, 4, 1, 5))) == list(range(5))
    assert sorted(stream(5, 0, 10, 15, 8, (3, 1, 4, 1, 5))) == list(range(5))


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_lambda(s, warmup=4, total=20, min_ratio=0.1) for s in range(21)]
    assert lrs[:4] == sorted(lrs[:4]) and lrs[3] < 1.0 and lrs[4] == pytest.approx(1.0)
    assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[20] == pytest.approx(0.1)


# ------------------------------------------------------------------------------------ one optimizer step


@pytest.mark.parametrize("spec", ["ce", "fkl"])
def test_grad_accumulation_equals_one_batch(tok, spec):
    examples = [encode_record(r, tok, 512) for r in records(5, seed=7)]
    lengths = [len(e.input_ids) for e in examples]
    assert len(set(lengths)) > 1
    student = build_model("neox-32x2", len(tok), seed=0)
    teacher = build_model("neox-48x2", len(tok), seed=1).eval() if spec != "ce" else None
    loss_fn = build_loss(spec)

    def grads(groups):
        student.zero_grad(set_to_none=True)
        stats = forward_backward(student, [collate(g, tok.pad_token_id) for g in groups], loss_fn, teacher)
        return stats, {n: p.grad.clone() for n, p in student.named_parameters()}

    one_stats, one = grads([examples])
    acc_stats, acc = grads([examples[:4], examples[4:]])  # micro-batches of 4 and 1, different padding
    assert acc_stats["target_tokens"] == one_stats["target_tokens"]
    assert acc_stats["loss"] == pytest.approx(one_stats["loss"], rel=1e-5)
    for name in one:
        torch.testing.assert_close(acc[name], one[name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("spec", ["ce", "fkl", {"name": "rkl", "atkd": {}}])
@pytest.mark.parametrize("teacher_from", ["live", "logits"])
def test_fused_head_step_equals_the_unfused_one(tok, spec, teacher_from):
    examples = [encode_record(r, tok, 512) for r in records(4, seed=5)]
    batches = [collate(examples[:3], tok.pad_token_id), collate(examples[3:], tok.pad_token_id)]
    student = build_model("neox-32x2", len(tok), seed=0).double()
    teacher = build_model("neox-48x2", len(tok), seed=1).double().eval() if spec != "ce" else None
    if teacher is not None and teacher_from == "logits":  # as a teacher cache hands them over
        for b in batches:
            with torch.no_grad():
                t_out = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            b["teacher_logits"] = t_out.logits[:, :-1]
        teacher = None
    loss_fn = build_loss(spec)
    check_fused_head(student)
    out = {}
    for fused in (False, True):
        student.zero_grad(set_to_none=True)
        stats = forward_backward(student, batches, loss_fn, teacher, fused=fused)
        out[fused] = stats, {n: p.grad.clone() for n, p in student.named_parameters()}
    assert out[True][0]["loss"] == pytest.approx(out[False][0]["loss"], rel=1e-10)
    for name, grad in out[False][1].items():
        torch.testing.assert_close(out[True][1][name], grad, rtol=1e-8, atol=1e-12, msg=name)


@pytest.mark.parametrize("atkd", [None, {"k": 0.5, "lam": 0.2}])
@pytest.mark.parametrize("name", ["ce", *sorted(DIVERGENCES)])
def test_targets_only_step_equals_the_full_logits_one(world, tok, name, atkd):
    """Logits at the target positions only (`targets_only`) give the loss, counts and gradient of the full
    logits, for every registered loss with and without +ATKD, on a packed batch and a padded one, with a
    live teacher and with cached teacher rows `[1, N, V]` (float64)."""
    if name == "ce" and atkd:
        pytest.skip("+ATKD needs a teacher")
    examples = load_examples(world["train"], tok, 512)
    part = [examples[i] for i in batch_indices(len(examples), 2, 30, 10)]
    loss_fn = build_loss({"name": name, **({"atkd": atkd} if atkd else {})})
    teacher = None
    if loss_fn.config.needs_teacher:
        teacher = build_model("neox-48x2", len(tok), seed=1).double().eval()
    packed, _ = pack(part, tok.pad_token_id)
    for batch in (packed, collate(part, tok.pad_token_id)):
        for teacher_from in ("live", "rows") if teacher is not None else ("none",):
            out = {}
            for only in (False, True):
                b, live = dict(batch), teacher
                if teacher_from == "rows":  # what a teacher cache hands each head
                    with torch.no_grad():
                        t = teacher(**model_inputs(batch)).logits[:, :-1]
                    b["teacher_logits"] = t[target_mask(batch)][None] if only else t
                    live = None
                student = build_model("neox-32x2", len(tok), seed=0).double()
                stats = forward_backward(student, [b], loss_fn, live, targets_only=only)
                out[only] = stats, {n: p.grad for n, p in student.named_parameters()}
            (full, g_full), (only, g_only) = out[False], out[True]
            assert only["target_tokens"] == full["target_tokens"] and only["tokens"] == full["tokens"]
            assert only["loss"] == pytest.approx(full["loss"], rel=1e-9)
            assert ("ce" in only) == ("ce" in full) == (teacher is not None)
            assert only.get("ce", 0.0) == pytest.approx(full.get("ce", 0.0), rel=1e-9)
            for n, grad in g_full.items():
                torch.testing.assert_close(g_only[n], grad, rtol=1e-7, atol=1e-10, msg=n)


def test_targets_only_is_chosen_where_the_loss_is_the_same(world, tmp_path):
    """Runs take the targets-only head unless the loss needs the rows (+ATKD split per sequence), a
    stateful method reads the logits, or the head is fused."""
    cfg = TrainConfig(**train_config(world, tmp_path, loss="fkl"))
    assert targets_only(cfg, build_loss("fkl"), [], torch.device("cpu"), sharded=False)
    per_sequence = build_loss({"name": "fkl", "atkd": {"split": "sequence"}})
    assert not targets_only(cfg, per_sequence, [], torch.device("cpu"), sharded=False)
    assert not targets_only(cfg, build_loss("fkl"), [], torch.device("cpu"), sharded=True)
    fused = TrainConfig(**train_config(world, tmp_path, loss="fkl", fused_head=True))
    assert not targets_only(fused, build_loss("fkl"), [], torch.device("cpu"), sharded=False)


def test_packed_batches_refuse_a_per_sequence_atkd_split(world, reference_run, tmp_path):
    """A packed row holds several examples, so a per-sequence +ATKD split would rank per row: refused."""
    loss = {"name": "fkl", "atkd": {"split": "sequence"}}
    cfg = train_config(world, tmp_path, loss=loss, batching="packed", teacher=str(reference_run[1]))
    with pytest.raises(ValueError, match="split: sequence"):
        train(TrainConfig(**cfg))


def test_bucketed_batches_give_the_loss_of_each_sequence_alone(world, tok):
    """Padding changes nothing: per-example and total losses of bucketed (micro-)batches equal those of
    every sequence run alone, unpadded (float64, a plain log-softmax reference)."""
    examples = load_examples(world["train"], tok, 512)
    lengths = [len(e.input_ids) for e in examples]
    student = build_model("neox-32x2", len(tok), seed=0).double()
    teacher = build_model("neox-48x2", len(tok), seed=1).double().eval()

    def alone(model, ex):  # logits [T-1, V] of one unpadded sequence, aligned with its shifted labels
        with torch.no_grad():
            return model(input_ids=torch.tensor([ex.input_ids])).logits[0, :-1]

    def reference(i, spec):  # sum over the example's targets
        labels = torch.tensor(examples[i].labels[1:])
        keep = labels != IGNORE_INDEX
        logp = torch.log_softmax(alone(student, examples[i]), -1)[keep]
        if spec == "ce":
            return float(-logp.gather(1, labels[keep, None]).sum())
        p_t = torch.softmax(alone(teacher, examples[i]), -1)[keep]
        return float((p_t * (p_t.log() - logp)).sum())

    idx = batch_indices(len(examples), 0, 16, 16, lengths)
    micro = [collate([examples[i] for i in idx[j : j + 8]], tok.pad_token_id) for j in (0, 8)]
    assert any((b["attention_mask"] == 0).any() for b in micro)  # some padding is left to ignore
    for spec in ("ce", "fkl"):
        loss_fn = build_loss(spec)
        want = [reference(i, spec) for i in idx]
        got = []
        for b in micro:
            with torch.no_grad():
                logits = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                t_logits = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            for r in range(len(b["input_ids"])):
                row = slice(r, r + 1)
                t_row = t_logits[row, :-1] if spec != "ce" else None
                got.append(float(loss_fn(logits[row, :-1], t_row, b["labels"][row, 1:], num_tokens=1)))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        n_targets = sum(examples[i].num_targets for i in idx)
        stats = forward_backward(student, micro, loss_fn, teacher if spec != "ce" else None)
        student.zero_grad(set_to_none=True)
        assert stats["target_tokens"] == n_targets
        assert stats["loss"] * n_targets == pytest.approx(sum(want), rel=1e-9)
        assert stats["tokens"] == sum(lengths[i] for i in idx)


@pytest.mark.parametrize(
    "spec", ["ce", "fkl", {"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}}, {"name": "tvd", "chunk_size": 7}]
)
def test_packed_batches_give_the_loss_and_gradient_of_padded_ones(world, tok, spec):
    """Packing changes nothing but the layout: a random batch packed into rows gives the loss, token
    counts and gradient of the same examples right-padded (+ATKD too: its batch-level split sees the
    same tokens), student and live teacher alike (float64)."""
    examples = load_examples(world["train"], tok, 512)
    longest = max(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    idx = [i for i in batch_indices(len(examples), 4, 40, 12) if i != longest][:11] + [longest]
    part = [examples[i] for i in idx]
    batch, order = pack(part, tok.pad_token_id)
    assert sorted(order) == list(range(12)) and batch["input_ids"].shape[0] < 12  # fewer rows
    assert int(batch["token_mask"].sum()) == sum(len(e.input_ids) for e in part)
    loss_fn = build_loss(spec)
    teacher = None
    if loss_fn.config.needs_teacher:
        teacher = build_model("neox-48x2", len(tok), seed=1).double().eval()
    out = {}
    for name, b in (("padded", collate(part, tok.pad_token_id)), ("packed", batch)):
        student = build_model("neox-32x2", len(tok), seed=0).double()
        stats = forward_backward(student, [b], loss_fn, teacher)
        out[name] = stats, {n: p.grad for n, p in student.named_parameters()}
    (padded, g_padded), (packed, g_packed) = out["padded"], out["packed"]
    assert packed["target_tokens"] == padded["target_tokens"] == sum(e.num_targets for e in part)
    assert packed["tokens"] == padded["tokens"]
    assert packed["loss"] == pytest.approx(padded["loss"], rel=1e-9)
    for name, grad in g_padded.items():
        torch.testing.assert_close(g_packed[name], grad, rtol=1e-7, atol=1e-10, msg=name)


def test_packed_examples_do_not_predict_across_their_boundary():
    """Every packed example keeps its own labels after its first token (plain text included, whose every
    token is a target) and restarts its positions; padding comes last in a row, at position 0."""
    texts = [Example(tuple(range(10, 10 + n)), tuple(range(10, 10 + n))) for n in (6, 4, 9, 2, 3)]
    batch, order = pack(texts, 0, width=9)
    assert [len(texts[k].input_ids) for k in order] == [9, 6, 3, 4, 2]  # rows: 9 | 6 3 | 4 2 + pad
    r = list(range(9))
    assert batch["position_ids"].tolist() == [r, r[:6] + r[:3], r[:4] + r[:2] + [0, 0, 0]]
    n = IGNORE_INDEX
    assert batch["labels"].tolist() == [
        [n, *range(11, 19)],
        [n, *range(11, 16), n, 11, 12],
        [n, 11, 12, 13, n, 11, n, n, n],
    ]
    assert batch["token_mask"].tolist() == [[1] * 9, [1] * 9, [1] * 6 + [0] * 3]
    assert batch["input_ids"][2, 6:].tolist() == [0, 0, 0]


def test_packing_is_checked_against_each_sequence_alone(tok):
    """check_packing accepts our models and rejects one whose attention would mix packed examples."""
    model = build_model("neox-32x2", len(tok), seed=0)
    check_packing(model)

    class Mixing(torch.nn.Module):  # the model, but blind to the position ids (one causal mask per row)
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, position_ids=None, use_cache=None, **kw):
            return self.inner(input_ids=input_ids, **kw)

    with pytest.raises(ValueError, match="packed examples attend to each other"):
        check_packing(Mixing(model))


def test_teacher_cache_rows_follow_bucketed_indices(world, tok, reference_run, tmp_path):
    """The cache is read per example: a bucketed batch gets each example's own teacher logits."""
    _, teacher = reference_run
    cache_dir = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "c", dtype="float32")
    cache = TeacherCache(cache_dir)
    examples = load_examples(world["train"], tok, 512)
    idx = batch_indices(len(examples), 3, 24, 8, [len(e.input_ids) for e in examples])
    batch = collate([examples[i] for i in idx], tok.pad_token_id)
    aligned = cache.aligned(idx, batch)
    model = load_model(teacher)
    for r, i in enumerate(idx):
        n = len(examples[i].input_ids)
        keep = torch.tensor(examples[i].labels[1:]) != IGNORE_INDEX
        with torch.no_grad():
            own = model(input_ids=torch.tensor([examples[i].input_ids])).logits[0, :-1]
        torch.testing.assert_close(aligned[r, : n - 1][keep], own[keep], rtol=1e-5, atol=1e-5)
        assert (aligned[r, n - 1 :] == 0).all()
    # the targets-only head reads the same rows without the zeros, in the batch's row-major order
    torch.testing.assert_close(cache.rows(idx), aligned[target_mask(batch)][None], rtol=0, atol=0)


def test_teacher_cache_batches_stay_within_the_logits_budget(world, reference_run, tmp_path, monkeypatch):
    """Without a batch size the cache takes as many records per pass as keep the float32 logits within
    LOGITS_BUDGET (a 49k vocabulary would need GBs at 64); the rows do not depend on it."""
    import atkd.train.teacher_cache as tc

    _, teacher = reference_run
    wide = build_teacher_cache(
        str(teacher), str(world["train"]), tmp_path / "a", dtype="float32", batch_size=64
    )
    passes = []
    real_collate = tc.collate
    monkeypatch.setattr(tc, "collate", lambda ex, pad: passes.append(len(ex)) or real_collate(ex, pad))
    monkeypatch.setattr(tc, "LOGITS_BUDGET", 1)  # below one record: one record per pass
    narrow = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "b", dtype="float32")
    assert set(passes) == {1}
    a, b = TeacherCache(wide), TeacherCache(narrow)
    np.testing.assert_allclose(a.arrays["logits"], b.arrays["logits"], rtol=1e-5, atol=1e-5)


def step_losses(run):
    """The per-step training losses a run logged (`metrics.jsonl` beside its final checkpoint)."""
    lines = [json.loads(ln) for ln in (run.parent / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def crash_and_resume(cfg, at: int = 3):
    """Train `cfg`, interrupted at step `at`, then again to the end: the weights of the resumed run."""

    def crash(step):
        if step == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=crash)
    return weights(train(cfg))


def test_sparse_cache_holds_the_teachers_top_k_in_batch_order(world, tok, reference_run, tmp_path):
    """A sparse cache (`topk`) gives, for a packed batch, each example's own top-K rows: those of the
    live teacher's distributions (16-bit log-probabilities; target and tail in float32)."""
    _, teacher = reference_run
    cache_dir = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "c", topk=8)
    cache = TeacherCache(cache_dir)
    assert cache.sparse and cache_bytes_per_row(cache.meta) == 8 * 4 + 8
    assert cache.arrays["indices"].dtype == np.uint16 and cache.arrays["logp"].dtype == np.float16
    examples = load_examples(world["train"], tok, 512)
    idx = batch_indices(len(examples), 3, 24, 8)
    batch, order = pack([examples[i] for i in idx], tok.pad_token_id)
    got = cache.aligned([idx[k] for k in order], batch)
    model = load_model(teacher)
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits[:, :-1]  # no KV cache, so packing masks
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    want = sparse_from_logits(logits[mask], batch["labels"][:, 1:][mask], 8)
    live = torch.log_softmax(logits[mask].double(), -1)
    # the cached tokens are a top 8 of the live distribution (near-ties may swap) with its log-probabilities
    torch.testing.assert_close(
        got.logp[mask].double(), live.gather(-1, got.indices[mask]), rtol=1e-3, atol=2e-3
    )
    assert (got.logp[mask].min(-1).values >= live.topk(9).values[:, -1] - 4e-3).all()  # 16-bit rounding
    torch.testing.assert_close(got.target[mask], want.target, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.tail[mask], want.tail, rtol=1e-5, atol=1e-5)
    rows = cache.rows([idx[k] for k in order])  # the targets-only head's [1, N, ...] view: the same rows
    for field in ("indices", "logp", "target", "tail"):
        torch.testing.assert_close(getattr(rows, field), getattr(got, field)[mask][None], rtol=0, atol=0)


def test_kd_runs_from_a_sparse_cache_and_resume_exactly(world, reference_run, tmp_path):
    """KD + ATKD from a top-K cache trains and resumes exactly; with K = V - 1 (nothing in the tail) its
    losses are the dense cache's, up to the cache's 16-bit rounding."""
    _, teacher = reference_run
    vocab = TeacherCache(
        build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "d", dtype="float32")
    ).meta["vocab_size"]
    full = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "s", topk=vocab - 1)
    loss = {"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}}
    kw = dict(loss=loss, max_length=512, max_steps=4, checkpoint_every=2, batching="packed")
    dense = train(train_config(world, tmp_path / "dense", teacher_cache=str(tmp_path / "d"), **kw))
    sparse = train(train_config(world, tmp_path / "sparse", teacher_cache=str(full), **kw))
    a = weights(dense)

    # per-step training losses (weights would differ more: Adam scales up tiny gradients)
    assert step_losses(sparse) == pytest.approx(step_losses(dense), rel=1e-3, abs=1e-5)
    small = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "k4", topk=4)
    resumed = crash_and_resume(train_config(world, tmp_path / "crash", teacher_cache=str(small), **kw))
    assert same_weights(
        resumed, weights(train(train_config(world, tmp_path / "k4run", teacher_cache=str(small), **kw)))
    )
    assert not same_weights(resumed, a)


def test_tail_caches_rebuild_the_teacher_and_train(world, tok, reference_run, tmp_path):
    """A sparse cache with a tail estimator: a lowrank tail of the teacher's full rank rebuilds the live
    distribution (float16 coefficients aside) and gives rkl the dense cache's losses; a sampled tail stores
    tail tokens only and trains and resumes exactly; the bytes per row count the tail's data."""
    _, teacher = reference_run
    model = load_model(teacher)
    rank = model.config.hidden_size + 1  # centred logits of a head of hidden size d have rank <= d + 1
    dense_dir = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "d", dtype="float32")
    low = TeacherCache(
        build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "lr", topk=4, tail="lowrank",
                            tail_width=rank)
    )  # fmt: skip
    vocab = low.meta["vocab_size"]
    assert low.meta["tail"]["kind"] == "lowrank" and cache_bytes_per_row(low.meta) == 4 * 4 + 8 + 2 * rank
    examples = load_examples(world["train"], tok, 512)
    idx = list(range(6))
    batch, order = pack([examples[i] for i in idx], tok.pad_token_id)
    got = low.rows([idx[k] for k in order])
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    labels = batch["labels"][:, 1:][mask]
    with torch.no_grad():
        live = torch.log_softmax(model(**model_inputs(batch)).logits[:, :-1][mask].double(), -1)
    rebuilt = got.flat().rebuild(labels, vocab, torch.float64)
    assert (rebuilt.exp() - live.exp()).abs().max() < 2e-3  # probabilities, float16 coefficients
    sampled = TeacherCache(
        build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "sm", topk=4, tail="sampled",
                            tail_width=8)
    )  # fmt: skip
    rows = sampled.rows([idx[k] for k in order]).flat()
    drawn = rows.extra.long()
    assert drawn.shape == (len(labels), 8) and cache_bytes_per_row(sampled.meta) == 4 * 4 + 8 + 2 * 8
    assert not (drawn.unsqueeze(-1) == rows.indices.long().unsqueeze(1)).any()  # never a top-K token
    assert not (drawn == labels.unsqueeze(-1)).any()  # nor the target
    rkl = {"name": "rkl", "atkd": {"k": 0.5, "lam": 0.2}}
    kw = dict(loss=rkl, max_length=512, max_steps=4, checkpoint_every=2, batching="packed")
    dense = train(train_config(world, tmp_path / "dense", teacher_cache=str(dense_dir), **kw))
    lowrun = train(train_config(world, tmp_path / "low", teacher_cache=str(tmp_path / "lr"), **kw))
    assert step_losses(lowrun) == pytest.approx(step_losses(dense), rel=1e-2)
    resumed = crash_and_resume(
        train_config(world, tmp_path / "crash", teacher_cache=str(tmp_path / "sm"), **kw)
    )
    whole = weights(train(train_config(world, tmp_path / "smrun", teacher_cache=str(tmp_path / "sm"), **kw)))
    assert same_weights(resumed, whole)
    with pytest.raises(ValueError, match="tail 'lowrank' needs tail_width >= 1"):
        build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "x", topk=4, tail="lowrank")
    with pytest.raises(ValueError, match="tail 'uniform' reads a sparse cache: set topk"):
        build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "x", tail="uniform")


def test_kd_step_with_teacher_decreases_loss(tok):
    batch = collate([encode_record(r, tok, 512) for r in records(8, seed=3)], tok.pad_token_id)
    student = build_model("neox-32x2", len(tok), seed=0)
    teacher = build_model("neox-48x2", len(tok), seed=1).eval().requires_grad_(False)
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    loss_fn = build_loss({"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}})
    losses = []
    for _ in range(5):
        opt.zero_grad()
        stats = forward_backward(student, [batch], loss_fn, teacher)
        losses.append(stats["loss"])
        opt.step()
    assert losses[-1] < losses[0] and "ce" in stats
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())


# ------------------------------------------------------------------------------------------- full runs


@pytest.fixture(scope="module")
def reference_run(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    final = train(train_config(world, out, valid_data=str(world["valid"]), save_hf_at=[3]))
    return out, final


def test_run_outputs_and_metrics(reference_run):
    out, final = reference_run
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["final_model"] == str(final)
    assert summary["valid_loss"] is not None and summary["tokens_per_s"] > 0
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in lines if "loss" in r]
    assert [r["step"] for r in train_lines] == list(range(1, 7))
    assert {"step", "loss", "lr", "tokens", "tokens_per_s", "elapsed"} <= set(train_lines[0])
    assert not (out / "checkpoints").exists()  # removed once complete
    assert load_model(out / "hf" / "step-00000003").config.hidden_size == 32
    assert load_tokenizer(final).pad_token_id is not None


def test_same_seed_same_weights_other_seed_differs(world, reference_run, tmp_path):
    _, final = reference_run
    again = train(train_config(world, tmp_path / "again", valid_data=str(world["valid"])))
    assert same_weights(weights(final), weights(again))
    other = train(train_config(world, tmp_path / "other", seed=1))
    assert not same_weights(weights(final), weights(other))


def test_resume_after_crash_gives_identical_weights(world, reference_run, tmp_path):
    _, final = reference_run
    cfg = train_config(world, tmp_path / "crash", valid_data=str(world["valid"]))

    def crash(step):
        if step == 5:  # step 5 is done in memory but its state is lost: resume must redo it from step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=crash)
    assert [p.name for p in (tmp_path / "crash" / "checkpoints").iterdir()] == ["step-00000004"]
    assert not (tmp_path / "crash" / "train_summary.json").exists()
    with (tmp_path / "crash" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')  # a line cut short by the kill
    resumed = train(cfg)
    assert same_weights(weights(final), weights(resumed))
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "crash" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6, 6]  # no duplicated lines from the lost step; the last is validation
    assert train(cfg) == resumed  # complete: a rerun is a no-op
    with pytest.raises(ValueError, match="lr"):
        train({**cfg, "lr": 1e-3})


def test_resume_restores_rng_state_with_dropout(world, tok, tmp_path):
    model = build_model("neox-32x2", len(tok), seed=4)
    model.config.hidden_dropout = model.config.attention_dropout = 0.2
    save_model(model, tmp_path / "init", tok)
    start = load_model(tmp_path / "init")
    assert start.config.hidden_dropout == 0.2
    cfg = train_config(world, tmp_path / "full", arch=None, model=str(tmp_path / "init"), tokenizer=None)
    full = weights(train(cfg))

    def crash(step):
        if step == 3:
            raise KeyboardInterrupt

    cfg["output_dir"] = str(tmp_path / "crash")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=crash)
    assert same_weights(full, weights(train(cfg)))
    cfg["output_dir"], cfg["seed"] = str(tmp_path / "seed1"), 1  # same init, other dropout masks and order
    assert not same_weights(full, weights(train(cfg)))


def test_bucketed_run_resumes_exactly_across_epochs(world, tmp_path):
    """batch_size 12 does not divide the 64 examples: epoch 2 begins inside step 6's batch."""
    kw = dict(batch_size=12, micro_batch_size=4, max_steps=9, checkpoint_every=3)
    whole = train(train_config(world, tmp_path / "whole", **kw))
    cfg = train_config(world, tmp_path / "crash", **kw)

    def crash(step):
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=crash)
    assert same_weights(weights(whole), weights(train(cfg)))
    plain = train(train_config(world, tmp_path / "random", batching="random", **kw))
    assert not same_weights(weights(whole), weights(plain))  # the option changes the batches
    assert json.loads((tmp_path / "whole" / "train_summary.json").read_text())["config"]["batching"] == (
        "bucketed"  # the default
    )


def test_packed_kd_run_from_a_cache_trains_the_random_batches_and_resumes(world, reference_run, tmp_path):
    """A KD run with `batching: packed` reads its teacher's cached rows in packed order: it ends where the
    same run with random (padded) batches ends, up to float rounding, and resumes exactly."""
    _, teacher = reference_run
    cache = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "c", dtype="float32")
    kw = dict(teacher_cache=str(cache), loss="fkl", max_length=512, max_steps=5, checkpoint_every=2)
    packed = train(train_config(world, tmp_path / "packed", batching="packed", **kw))
    padded = train(train_config(world, tmp_path / "random", batching="random", **kw))
    a, b = weights(packed), weights(padded)
    assert not same_weights(a, weights(teacher))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-5, msg=name)
    cfg = train_config(world, tmp_path / "crash", batching="packed", **kw)

    def crash(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=crash)
    assert same_weights(a, weights(train(cfg)))


def test_train_limit_trains_on_the_first_records_also_from_a_whole_file_cache(world, reference_run, tmp_path):
    """`train_limit: N` is the run on a file of the first N records (same weights); with a teacher cache of
    the whole file it reads the rows of those records (the weights of a cache built on the short file)."""
    _, teacher = reference_run
    lines = world["train"].read_text().splitlines(keepends=True)
    short = tmp_path / "short.jsonl"
    short.write_text("".join(lines[:20]))
    kw = dict(loss="fkl", max_length=512, epochs=2, max_steps=None, batching="packed")
    whole = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "whole", dtype="float32")
    part = build_teacher_cache(str(teacher), str(short), tmp_path / "part", dtype="float32")
    limited = train(train_config(world, tmp_path / "limited", train_limit=20, teacher_cache=str(whole), **kw))
    on_short = train(
        train_config(world, tmp_path / "on_short", train_data=str(short), teacher_cache=str(part), **kw)
    )
    assert json.loads((tmp_path / "limited" / "train_summary.json").read_text())["examples"] == 20
    assert same_weights(weights(limited), weights(on_short))
    full = train(train_config(world, tmp_path / "full", teacher_cache=str(whole), **kw))
    assert not same_weights(weights(limited), weights(full))
    with pytest.raises(ValueError, match=r"train_limit 1000: .*train.jsonl has 64 examples"):
        train(train_config(world, tmp_path / "over", train_limit=1000, teacher_cache=str(whole), **kw))


def test_train_offset_skips_records_also_in_a_whole_file_cache(world, reference_run, tmp_path):
    """`train_offset: K` (with `train_limit: N`) is the run on a file of records K..K+N-1, reading a cache of
    the whole file at those records' rows (the weights of a cache of the short file, to float rounding)."""
    _, teacher = reference_run
    lines = world["train"].read_text().splitlines(keepends=True)
    middle = tmp_path / "middle.jsonl"
    middle.write_text("".join(lines[30:50]))
    kw = dict(loss="fkl", max_length=512, epochs=2, max_steps=None, batching="packed")
    whole = build_teacher_cache(str(teacher), str(world["train"]), tmp_path / "whole", dtype="float32")
    part = build_teacher_cache(str(teacher), str(middle), tmp_path / "part", dtype="float32")
    cfg = train_config(
        world, tmp_path / "offset", train_offset=30, train_limit=20, teacher_cache=str(whole), **kw
    )
    skipped = train(cfg)
    on_middle = train(
        train_config(world, tmp_path / "on_middle", train_data=str(middle), teacher_cache=str(part), **kw)
    )
    assert json.loads((tmp_path / "offset" / "train_summary.json").read_text())["examples"] == 20
    # the two caches batch these records differently, so their logits agree to float rounding (1e-7)
    a, b = weights(skipped), weights(on_middle)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-5, msg=name)
    first = train(train_config(world, tmp_path / "first", train_limit=20, teacher_cache=str(whole), **kw))
    assert not same_weights(weights(skipped), weights(first))
    for offset, limit, said in ((50, 20, "train_offset 50 + train_limit 20"), (64, None, "train_offset 64")):
        with pytest.raises(ValueError, match=re.escape(said) + r": .*train.jsonl has 64 examples"):
            bad = dict(train_offset=offset, train_limit=limit, teacher_cache=str(whole))
            train(train_config(world, tmp_path / f"over{offset}", **bad, **kw))
    with pytest.raises(ValueError, match="train_offset must be a non-negative integer"):
        train(train_config(world, tmp_path / "neg", train_offset=-1, **kw))


def test_runs_saved_before_bucketing_count_as_random():
    old = {"lr": 1e-3}  # a config written before the `batching` field existed
    assert config_diff(old, {"lr": 1e-3, "batching": "bucketed"}) == ["batching"]
    assert config_diff(old, {"lr": 1e-3, "batching": "random"}) == []


def test_kd_run_with_teacher_from_checkpoint(world, reference_run, tmp_path):
    _, teacher = reference_run
    cfg = train_config(
        world,
        tmp_path / "kd",
        arch=None,
        model=str(teacher),
        tokenizer=None,
        teacher=str(teacher),
        loss={"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}},
        max_steps=3,
    )
    final = train(cfg)
    summary = json.loads((tmp_path / "kd" / "train_summary.json").read_text())
    assert summary["train_ce"] is not None and final.is_dir()


def test_teacher_cache_matches_online_teacher(world, reference_run, tmp_path):
    from atkd.cli import main

    _, teacher = reference_run
    args = [
        "teacher-cache",
        "--teacher",
        str(teacher),
        "--train-data",
        str(world["train"]),
        "--batch-size",
        "5",
    ]
    assert main([*args, "--out", str(tmp_path / "c32"), "--dtype", "float32"]) == 0
    assert main([*args, "--out", str(tmp_path / "c16"), "--max-length", "40"]) == 0
    common = dict(
        arch=None, model=str(teacher), tokenizer=None, loss={"name": "fkl", "atkd": {"k": 0.5}}, max_steps=3
    )
    # The cache holds exactly the teacher's logits at the target positions of a collated batch.
    cache = TeacherCache(tmp_path / "c32")
    tok = load_tokenizer(teacher)
    examples = load_examples(world["train"], tok, 512)
    idx = [7, 0, 30, 12]
    batch = collate([examples[i] for i in idx], tok.pad_token_id)
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    with torch.no_grad():
        online = load_model(teacher)(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    aligned = cache.aligned(idx, batch)
    torch.testing.assert_close(aligned[mask], online[:, :-1][mask], rtol=1e-5, atol=1e-5)
    assert (aligned[~mask] == 0).all()
    half = TeacherCache(tmp_path / "c16")
    assert half.arrays["logits"].dtype == np.float16 and half.meta["max_length"] == 40
    train(train_config(world, tmp_path / "cached", teacher_cache=str(tmp_path / "c32"), **common))
    summary = json.loads((tmp_path / "cached" / "train_summary.json").read_text())
    assert summary["teacher"] == str(teacher) and summary["train_ce"] is not None
    with pytest.raises(ValueError, match="max_length"):  # built for another max_length: refused
        train(train_config(world, tmp_path / "stale", teacher_cache=str(tmp_path / "c16"), **common))
    with pytest.raises(ValueError, match="not both"):
        train(
            train_config(
                world, tmp_path / "both", teacher=str(teacher), teacher_cache=str(tmp_path / "c32"), **common
            )
        )


def test_pretraining_on_plain_text(world, tmp_path):
    train(train_config(world, tmp_path / "pt", train_data=str(world["text"]), max_length=32, max_steps=2))
    assert json.loads((tmp_path / "pt" / "train_summary.json").read_text())["examples"] > 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "bogus"),
        ({"model": "x"}, "exactly one"),
        ({"arch": "neox-1x1"}, "neox-1x1"),
        ({"loss": "fkl"}, "needs a 'teacher'"),
        ({"teacher": "somewhere"}, "uses no teacher"),
        ({"loss": {"name": "nope"}}, "nope"),
        ({"micro_batch_size": 3}, "multiple"),
        ({"batching": "sorted"}, "batching must be one of random, bucketed, packed, got 'sorted'"),
    ],
)
def test_config_errors_name_the_field(world, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train(train_config(world, tmp_path / "bad", **change))


def test_cli_train_with_overrides(world, tmp_path):
    from atkd.cli import main

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(json.dumps(train_config(world, tmp_path / "cli", max_steps=2)))
    assert load_config_file(cfg_file, ["lr=0.01", "loss={name: ce}"])["loss"] == {"name": "ce"}
    assert main(["train", "--config", str(cfg_file), "--set", "max_steps=1"]) == 0
    assert json.loads((tmp_path / "cli" / "train_summary.json").read_text())["steps"] == 1
    assert TrainConfig.from_any(train_config(world, tmp_path)).grad_accum == 2
    assert TrainConfig.from_any(train_config(world, tmp_path, lr="2e-3")).lr == 0.002  # YAML 1.1 gives a str
    with pytest.raises(ValueError, match="lr must be a number"):
        TrainConfig.from_any(train_config(world, tmp_path, lr="fast"))
