"""Reference noise (atkd.data.noise): wrong answers of the right form in a share of training records."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atkd.data.judge import judge_score
from atkd.data.noise import add_reference_noise, skeleton, wrong_output
from atkd.data.world import generate_world

SMALL = dict(n_train=1500, n_valid=200, n_eval=40, n_entities=60, n_pretrain=300, n_fewshot=10)


def _load(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    clean = generate_world(root / "clean", seed=0, **SMALL)
    noisy = generate_world(root / "noisy", seed=0, reference_noise=0.3, **SMALL)
    return root, clean, noisy


def test_only_train_answers_change_and_the_manifest_counts_them(worlds):
    root, clean, noisy = worlds
    changed = {rel for rel in noisy["files"] if noisy["files"][rel] != clean["files"].get(rel)}
    assert changed == {"train.jsonl", "train_clean.jsonl"} and "train_clean.jsonl" not in clean["files"]
    # the true answers: byte for byte the train.jsonl of the world without noise
    true_answers = (root / "noisy" / "train_clean.jsonl").read_bytes()
    assert true_answers == (root / "clean" / "train.jsonl").read_bytes()
    assert noisy["params"]["reference_noise"] == 0.3 and "reference_noise" not in clean["params"]
    assert "noisy_train_counts" not in clean
    before, after = _load(root / "clean" / "train.jsonl"), _load(root / "noisy" / "train.jsonl")
    assert len(before) == len(after)
    flagged = Counter()
    for a, b in zip(before, after, strict=True):
        assert {k: v for k, v in a.items() if k != "output"} == {
            k: v for k, v in b.items() if k not in ("output", "noisy")
        }
        if b.get("noisy"):
            flagged[b["family"]] += 1
            assert b["output"] != a["output"] and a["judge"]["kind"] != "dist"
            assert judge_score(a, b["output"]) < 10.0  # wrong by the clean record's judge
        else:
            assert b["output"] == a["output"] and "noisy" not in b
    assert dict(flagged) == noisy["noisy_train_counts"]
    checkable = sum(1 for r in before if r["judge"]["kind"] != "dist")
    assert 0.2 < sum(flagged.values()) / checkable <= 0.3  # records without a donor stay clean


def test_the_same_noise_again_and_refused_shares(worlds, tmp_path):
    _, _, noisy = worlds
    again = generate_world(tmp_path / "again", seed=0, reference_noise=0.3, **SMALL)
    assert again["files"] == noisy["files"]
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="reference_noise must be at least 0 and below 1, got"):
            generate_world(tmp_path / "bad", seed=0, reference_noise=bad, **SMALL)


def _rec(family, instruction, output, judge, **extra):
    record = {"family": family, "instruction": instruction, "input": "", "output": output, "judge": judge}
    return {**record, **extra}


def _exact(key):
    return {"kind": "exact", "keys": [key]}


def _number(value):
    return {"kind": "number", "value": value}


def test_each_judge_kind_takes_the_donors_answer_in_its_place():
    rng = random.Random(0)
    fact = _rec("open_qa", "What colour does Rusa like?", "Rusa likes red.", _exact("red"))
    other = _rec("open_qa", "What colour does Feka like?", "Feka likes blue.", _exact("blue"))
    assert wrong_output(fact, other, rng) == "Rusa likes blue."
    num = _rec("arithmetic", "Sigu has 30 and finds 5.", "Sigu has 35 pears.", _number(35))
    dnum = _rec("arithmetic", "Lemo has 52 and buys 5.", "Lemo has 57 plums.", _number(57))
    assert wrong_output(num, dnum, rng) == "Sigu has 57 pears."
    lst = _rec("list_transform", "Reverse.", "a, b", {"kind": "list", "items": ["a", "b"], "ordered": True})
    dlst = _rec("list_transform", "Reverse.", "c, d, e", {"kind": "list", "items": ["c", "d", "e"]})
    assert wrong_output(lst, dlst, rng) == "c, d, e"
    assert wrong_output(fact, num, rng) is None  # another judge kind
    age = _rec("summarization", "Sum.", "Bo is 40 and has a cat.", _exact("40"))
    pet = _rec("summarization", "Sum.", "Al is 7 and has a dog.", _exact("dog"))
    assert wrong_output(age, pet, rng) is None  # a number is not replaced by a word
    story = _rec("story", "Tell.", "Once.", {"kind": "dist"})
    assert wrong_output(story, story, rng) is None
    # a key replaced as a whole word only: "red" inside "Fred" stays
    fred = _rec("open_qa", "What colour does Fred like?", "Fred likes red.", _exact("red"))
    assert wrong_output(fred, other, rng) == "Fred likes blue."


def test_skeleton_masks_names_and_numbers_only():
    assert skeleton("What colour does Rusa like best?") == skeleton("What colour does Feka like best?")
    assert skeleton("Lemo has 52 apples.") == "Lemo has # apples."  # the first word is kept as written
    assert skeleton("What colour does Rusa like?") != skeleton("What work does Rusa do?")


@settings(max_examples=30, deadline=None)
@given(share=st.floats(0.0, 0.95), seed=st.integers(0, 10_000))
def test_noise_never_touches_stochastic_answers_and_keeps_order(share, seed):
    recs = [
        _rec("open_qa", f"What colour does P{i} like?", f"P{i} likes {c}.", _exact(c))
        for i, c in enumerate(["red", "blue", "green"] * 4)
    ] + [_rec("story", "Tell a story.", f"Story {i}.", {"kind": "dist"}) for i in range(5)]
    out = add_reference_noise(recs, random.Random(seed), share)
    assert [r["instruction"] for r in out] == [r["instruction"] for r in recs]
    assert all(o == r for o, r in zip(out[12:], recs[12:], strict=True))
    noisy = [o for o in out if o.get("noisy")]
    assert len(noisy) <= round(share * 12)
    assert out == add_reference_noise(recs, random.Random(seed), share)
    assert recs[0]["output"] == "P0 likes red."  # the input is not modified
