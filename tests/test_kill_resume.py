"""A training job killed with SIGKILL midway, then rerun, gives the same model and the same metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tiny_world import write_world

from atkd.eval.harness import evaluate

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def train_cmd(world, out):
    fields = dict(
        output_dir=out,
        train_data=world["train"],
        valid_data=world["valid"],
        arch="neox-32x2",
        tokenizer=world["tokenizer"],
        max_steps=40,
        batch_size=8,
        lr=0.003,
        warmup_steps=2,
        checkpoint_every=5,
        log_every=5,
        progress=False,
        seed=3,
        threads=1,
    )
    args = [sys.executable, "-m", "atkd.cli", "train"]
    for key, value in fields.items():
        args += ["--set", f"{key}={value}"]
    return args


def test_sigkill_then_rerun_gives_identical_model_and_metrics(tmp_path):
    world = write_world(tmp_path / "world")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(train_cmd(world, straight), check=True, env=ENV, capture_output=True, timeout=600)

    proc = subprocess.Popen(
        train_cmd(world, killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    ckpts = killed / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.exists() and any(p.name.startswith("step-") for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("the training job finished before it could be killed; make it longer")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "train_summary.json").exists()

    rerun = subprocess.run(train_cmd(world, killed), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(killed / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (killed / "metrics.jsonl").read_text().splitlines()
    assert log, "the resumed run keeps its metrics log"

    # and the evaluation of both (same suites, greedy) is identical
    from atkd.data.world import generate_world

    eval_world = tmp_path / "eval-world"
    generate_world(
        eval_world, seed=0, n_train=200, n_valid=20, n_eval=6, n_entities=40, n_pretrain=20, n_fewshot=6
    )
    rows = []
    for run in (straight, killed):
        evaluate(
            run / "final",
            eval_world,
            ["dolly", "mmlu"],
            run / "eval",
            limit=4,
            max_new_tokens=8,
            batch_size=4,
            threads=1,
        )
        rows.append(pd.read_csv(run / "eval" / "metrics.csv"))
    pd.testing.assert_frame_equal(rows[0], rows[1])
