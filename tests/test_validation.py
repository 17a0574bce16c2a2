"""Validation during training: `eval_points` evenly spaced validations on the first `valid_limit` records."""

from __future__ import annotations

import json

import pytest
from helpers.tiny_world import train_config

from atkd.models import load_model, load_tokenizer
from atkd.train import TrainConfig, train
from atkd.train.data import load_examples
from atkd.train.loop import evaluate_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_validation_points_on_a_subset(world, tmp_path):
    """`eval_points` spreads that many validations over the run (the last at the end), `valid_limit` keeps
    the first N validation records; each validation line says its epoch and what it took."""
    out = tmp_path / "points"
    cfg = train_config(world, out, valid_data=str(world["valid"]), eval_points=3, valid_limit=4, log_every=3)
    final = train(cfg)
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in lines if "valid_loss" in r]
    assert [r["step"] for r in valid] == [2, 4, 6]  # ceil(6 steps / 3 points) = every 2 steps
    examples = json.loads((out / "train_summary.json").read_text())["examples"]
    assert [r["epoch"] for r in valid] == [round(s * 8 / examples, 4) for s in (2, 4, 6)]
    assert all(r["valid_seconds"] >= 0 for r in valid)
    tok = load_tokenizer(final)
    every = load_examples(world["valid"], tok, 512)
    assert len(every) > 4
    expected = evaluate_loss(load_model(final), every[:4], tok.pad_token_id, 4)
    assert valid[-1]["valid_loss"] == pytest.approx(expected, rel=1e-5)
    whole = evaluate_loss(load_model(final), every, tok.pad_token_id, 4)
    assert valid[-1]["valid_loss"] != pytest.approx(whole)  # the subset, not every record
    assert json.loads((out / "train_summary.json").read_text())["valid_loss"] == valid[-1]["valid_loss"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eval_every": 2, "eval_points": 3}, "eval_every .* or eval_points .*, not both"),
        ({"eval_points": 0}, "eval_points must be a positive integer"),
        ({"valid_limit": 0}, "valid_limit must be a positive integer"),
    ],
)
def test_validation_settings_are_checked(world, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_any(train_config(world, tmp_path, **change))


def test_validation_settings_do_not_change_the_weights(world, tmp_path):
    """Validation fields are cosmetic: a run resumes or counts as done whatever they are."""
    from atkd.train.loop import weight_affecting

    cfg = TrainConfig.from_any(train_config(world, tmp_path, eval_points=3, valid_limit=4)).to_dict()
    assert not {"eval_points", "valid_limit", "eval_every"} & set(weight_affecting(cfg))
