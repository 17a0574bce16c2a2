"""Sampling sources of the distillation loop: ground truth, teacher-generated files, on-policy student."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.tiny_world import train_config
from safetensors.torch import load_file

import atkd.train.loop as loop
from atkd.data.jsonl import read_jsonl
from atkd.models import build_model, load_tokenizer, save_model
from atkd.train import train
from atkd.train.data import IGNORE_INDEX, Example, encode_record, load_examples
from atkd.train.generate import generate_file
from atkd.train.sampling import (
    SamplingConfig,
    check_aligned,
    cut_at_eos,
    generate,
    generation_seed,
    parse_sampling,
    prompt_ids,
    student_batch,
    use_source,
    with_response,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(world):
    return load_tokenizer(world["tokenizer"])


@pytest.fixture(scope="module")
def model(tok):
    return build_model(
        "neox-32x2", len(tok), seed=0, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )


@pytest.fixture(scope="module")
def examples(world, tok):
    return load_examples(world["train"], tok, 128)


def force_eos(model, eos: int) -> torch.nn.Module:
    """Make EOS the most likely next token everywhere: the final norm outputs a constant vector h (its
    bias), and only EOS's output embedding row is aligned with it."""
    with torch.no_grad():
        model.gpt_neox.final_layer_norm.weight.zero_()
        h = torch.ones_like(model.gpt_neox.final_layer_norm.bias)
        model.gpt_neox.final_layer_norm.bias.copy_(h)
        model.get_output_embeddings().weight.zero_()
        model.get_output_embeddings().weight[eos] = 10 * h
    return model


# ------------------------------------------------------------------------------------------- config
def test_parse_sampling_forms_and_errors():
    assert parse_sampling(None) == SamplingConfig(source="ground_truth")
    assert parse_sampling("student").source == "student"
    cfg = parse_sampling({"source": "student", "lam": 0.5, "max_new_tokens": 8})
    assert (cfg.lam, cfg.max_new_tokens, cfg.mixes) == (0.5, 8, True)
    assert not parse_sampling({"source": "teacher", "lam": 0}).mixes
    with pytest.raises(ValueError, match="unknown source 'teachr'; valid: ground_truth, teacher, student"):
        parse_sampling("teachr")
    with pytest.raises(ValueError, match="unknown key.* lambda; valid: lam, max_new_tokens"):
        parse_sampling({"source": "student", "lambda": 0.5})
    for bad in ({"lam": 1.5}, {"lam": -0.1}, {"max_new_tokens": 0}, {"temperature": -1}, {"lam": True}):
        with pytest.raises(ValueError, match="sampling\\."):
            parse_sampling({"source": "student", **bad})


def test_use_source_is_a_deterministic_bernoulli_per_step():
    half = SamplingConfig("student", lam=0.5)
    draws = [use_source(half, seed=3, step=s) for s in range(4000)]
    assert draws == [use_source(half, seed=3, step=s) for s in range(4000)]  # a function of (seed, step)
    assert 0.46 < sum(draws) / len(draws) < 0.54
    assert draws != [use_source(half, seed=4, step=s) for s in range(4000)]
    assert all(use_source(SamplingConfig("student", lam=1.0), 0, s) for s in range(100))
    assert not any(use_source(SamplingConfig("student", lam=0.0), 0, s) for s in range(100))
    assert not any(use_source(SamplingConfig("ground_truth", lam=1.0), 0, s) for s in range(100))
    assert len({generation_seed(0, s) for s in range(100)}) == 100


# ----------------------------------------------------------------------------------- building examples
def test_prompt_and_response_masking(examples, tok):
    ex = examples[0]
    prompt = prompt_ids(ex)
    assert 0 < len(prompt) < len(ex.input_ids) and ex.labels[len(prompt)] != IGNORE_INDEX
    new = with_response(prompt, [5, 6, tok.eos_token_id], max_length=512)
    assert new.input_ids == prompt + (5, 6, tok.eos_token_id)
    assert new.labels == (IGNORE_INDEX,) * len(prompt) + (5, 6, tok.eos_token_id)
    cut = with_response(prompt, [5, 6, 7], max_length=len(prompt) + 2)
    assert cut.input_ids == prompt + (5, 6) and cut.labels[-2:] == (5, 6)
    assert cut_at_eos([4, 9, 2, 9, 3], eos_token_id=9) == [4, 9]
    assert cut_at_eos([4, 5], eos_token_id=9) == [4, 5]


def test_generation_shapes_eos_and_determinism(model, examples, tok):
    prompts = [prompt_ids(e) for e in examples[:6]]
    kw = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=7)
    before = torch.get_rng_state()
    a = generate(model, prompts, seed=1, batch_size=4, **kw)
    assert torch.equal(torch.get_rng_state(), before)  # the training RNG stream is untouched
    assert a == generate(model, prompts, seed=1, batch_size=4, **kw)
    assert a != generate(model, prompts, seed=2, batch_size=4, **kw)
    assert len(a) == len(prompts)
    for r in a:  # each response ends at its first EOS, or runs to the budget without one
        assert 1 <= len(r) <= 7
        assert (r[-1] == tok.eos_token_id) or (len(r) == 7 and tok.eos_token_id not in r)
        assert tok.eos_token_id not in r[:-1]


def test_batched_left_padded_generation_equals_one_at_a_time(model, examples, tok):
    """Greedy answers do not depend on the other prompts of the batch (left padding, positions, cache)."""
    prompts = [prompt_ids(e) for e in examples[:5]]
    assert len({len(p) for p in prompts}) > 1
    kw = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=6, temperature=0)
    batched = generate(model, prompts, batch_size=5, **kw)
    single = [generate(model, [p], batch_size=1, **kw)[0] for p in prompts]
    assert batched == single


def test_generation_uses_the_kv_cache(model, examples, tok, monkeypatch):
    """After the prompt, every forward pass feeds one new token per row and reads the cached keys and
    values (a generation without the cache would feed the whole sequence again); greedy answers equal
    those of a cache-free generation."""
    prompts = [prompt_ids(e) for e in examples[:3]]
    width = max(len(p) for p in prompts)
    kw = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=5, temperature=0)
    seen = []
    forward = type(model).forward

    def spy(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("past_key_values", kwargs.get("cache"))  # transformers 4 / 5 name it differently
        seen.append((ids.shape[1], None if cache is None else cache.get_seq_length()))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    cached = generate(model, prompts, batch_size=3, **kw)
    assert seen[0][0] == width and len(seen) >= 2
    for step, (length, cached_length) in enumerate(seen[1:]):  # the cache holds prompt + earlier tokens
        assert length == 1 and cached_length == width + step
    monkeypatch.undo()
    prompt_batch = torch.full((3, width), tok.pad_token_id)
    mask = torch.zeros_like(prompt_batch)
    for i, p in enumerate(prompts):
        prompt_batch[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
    plain = model.generate(
        input_ids=prompt_batch,
        attention_mask=mask,
        max_new_tokens=5,
        do_sample=False,
        use_cache=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    assert [cut_at_eos(r, tok.eos_token_id) for r in plain[:, width:].tolist()] == cached


def test_eos_is_kept_as_the_only_target_when_the_model_stops(model, examples, tok):
    fresh = build_model("neox-32x2", len(tok), seed=0, eos_token_id=tok.eos_token_id)
    stopper = force_eos(fresh, tok.eos_token_id)
    out = student_batch(
        stopper,
        examples[:3],
        SamplingConfig("student", max_new_tokens=5),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        max_length=128,
        seed=0,
    )
    for ex, new in zip(examples[:3], out, strict=True):
        assert new.input_ids == prompt_ids(ex) + (tok.eos_token_id,)
        assert [y for y in new.labels if y != IGNORE_INDEX] == [tok.eos_token_id]


def test_student_batch_respects_max_length(model, examples, tok):
    longest = max(len(prompt_ids(e)) for e in examples[:4])
    out = student_batch(
        model,
        examples[:4],
        SamplingConfig("student", max_new_tokens=50, temperature=1.0),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        max_length=longest + 3,
        seed=0,
    )
    assert all(len(e.input_ids) <= longest + 3 and e.num_targets >= 1 for e in out)


# ------------------------------------------------------------------------------- teacher-generated file
@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tok):
    out = tmp_path_factory.mktemp("teacher")
    save_model(build_model("neox-48x2", len(tok), seed=1, eos_token_id=tok.eos_token_id), out, tok)
    return out


def test_generate_file_answers_every_prompt_in_order(world, teacher_dir, tmp_path, tok):
    kw = dict(max_new_tokens=6, seed=0, progress=False)
    out = generate_file(teacher_dir, world["train"], tmp_path / "gen.jsonl", **kw)
    src = list(read_jsonl(world["train"]))
    gen = list(read_jsonl(out))
    assert len(gen) == len(src)
    for s, g in zip(src, gen, strict=True):
        assert (g["instruction"], g.get("input")) == (s["instruction"], s.get("input"))
        assert g["reference"] == s["output"]
        assert isinstance(g["complete"], bool)
    again = generate_file(teacher_dir, world["train"], tmp_path / "gen2.jsonl", **kw)
    assert again.read_text() == out.read_text()  # a function of its arguments
    # An answer cut by the budget is trained without EOS; a finished one with it.
    cut = next(g for g in gen if not g["complete"])
    ex = encode_record(cut, tok, 512)
    assert ex.input_ids[-1] != tok.eos_token_id
    done = encode_record({**cut, "complete": True}, tok, 512)
    assert done.input_ids[-1] == tok.eos_token_id
    check_aligned(load_examples(world["train"], tok, 128), load_examples(out, tok, 128), str(out))


def test_misaligned_teacher_data_is_rejected(world, tok, tmp_path):
    src = load_examples(world["train"], tok, 128)
    with pytest.raises(ValueError, match="examples, but the training data has"):
        check_aligned(src, src[:-1], "gen.jsonl")
    shuffled = [src[1], src[0], *src[2:]]
    with pytest.raises(ValueError, match="gen.jsonl: example 1 has a different prompt"):
        check_aligned(src, shuffled, "gen.jsonl")


def _cfg(world, out, **kw):
    return train_config(
        world, out, **{"max_steps": 4, "batch_size": 4, "micro_batch_size": None, "max_length": 128, **kw}
    )


def test_seqkd_trains_on_the_teacher_file(world, teacher_dir, tmp_path, tok):
    gen = generate_file(teacher_dir, world["train"], tmp_path / "gen.jsonl", max_new_tokens=6, progress=False)
    a = train(_cfg(world, tmp_path / "seqkd", sampling="teacher", teacher_data=str(gen)))
    b = train(_cfg(world, tmp_path / "sft", train_data=str(gen)))  # the same batches as plain CE
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="'teacher_data'"):
        train(_cfg(world, tmp_path / "x", sampling="teacher"))
    with pytest.raises(ValueError, match="'teacher_data'"):
        train(_cfg(world, tmp_path / "y", teacher_data=str(gen)))


# ----------------------------------------------------------------------------------------- on-policy
def _param_sum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def test_on_policy_generation_uses_the_current_student(world, teacher_dir, tmp_path, monkeypatch):
    """Every step's sequences are sampled by the model as updated by all previous steps."""
    at_generation: list[float] = []
    after_step: list[float] = []
    live: dict[str, torch.nn.Module] = {}
    real = loop.student_batch

    def spy(model, *args, **kwargs):
        live["model"] = model
        at_generation.append(_param_sum(model))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(loop, "student_batch", spy)
    cfg = _cfg(
        world,
        tmp_path / "gkd",
        loss={"name": "jsd", "beta": 0.5},
        teacher=str(teacher_dir),
        sampling={"source": "student", "lam": 1.0, "max_new_tokens": 6},
    )
    train(cfg, on_step=lambda step: after_step.append(_param_sum(live["model"])))
    assert len(at_generation) == 4
    assert at_generation[1:] == after_step[:-1]  # step k generates with the weights after step k-1
    assert len(set(at_generation)) == 4  # and those weights really changed between steps
    logged = [json.loads(line) for line in (tmp_path / "gkd" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["sampled"] == 1.0 for r in logged if "loss" in r)


def test_on_policy_mixture_resumes_exactly(world, teacher_dir, tmp_path):
    kw = dict(
        loss="fkl",
        teacher=str(teacher_dir),
        sampling={"source": "student", "lam": 0.5, "max_new_tokens": 5},
        max_steps=6,
    )
    whole = train(_cfg(world, tmp_path / "whole", **kw))

    class Crash(RuntimeError):
        pass

    def crash(step):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(_cfg(world, tmp_path / "resumed", **kw), on_step=crash)
    resumed = train(_cfg(world, tmp_path / "resumed", **kw))
    wa, wb = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    logged = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert {r["sampled"] for r in logged if "loss" in r} == {0.0, 1.0}  # both sources over six steps


def test_sampled_batches_need_a_live_teacher(world, tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        train(_cfg(world, tmp_path / "z", loss="fkl", sampling="student"))


def test_example_type_is_shared():
    assert Example((1, 2), (IGNORE_INDEX, 2)).num_targets == 1
