"""Data-parallel training with torch.distributed: two CPU processes (gloo) under torchrun reach the
weights of one process on the same global batches, because every micro-batch loss is divided by the
step's global target count and the gradients are summed over processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from atkd.models import load_model
from atkd.train import train

pytestmark = pytest.mark.slow


def config(world, out, **over):
    cfg = dict(
        arch="neox-32x2",
        tokenizer=str(world["tokenizer"]),
        train_data=str(world["train"]),
        output_dir=str(out),
        max_steps=4,
        batch_size=8,
        micro_batch_size=2,
        lr=3e-3,
        seed=3,
        threads=1,
        progress=False,
        checkpoint_every=None,
        log_every=1,
    )
    return cfg | over


def launch(cfg: dict, nproc: int) -> subprocess.CompletedProcess:
    sets = [f"--set={k}={json.dumps(v)}" for k, v in cfg.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "atkd.cli", "train", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("loss", ["ce", "fkl"])
def test_two_processes_train_the_weights_of_one(world, tmp_path, loss):
    extra = {}
    if loss == "fkl":
        teacher = train(config(world, tmp_path / "teacher", arch="neox-48x2", max_steps=2, seed=9))
        extra = {"loss": "fkl", "teacher": str(teacher)}
    one = train(config(world, tmp_path / "one", **extra))
    out = launch(config(world, tmp_path / "two", **extra), nproc=2)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    a, b = load_model(one).state_dict(), load_model(tmp_path / "two" / "final").state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    # one process wrote the log, with the global batch's loss at every step
    log_one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    log_two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_two] == [r["step"] for r in log_one] == [1, 2, 3, 4]
    for r1, r2 in zip(log_one, log_two, strict=True):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4)
        assert r2["target_tokens"] == r1["target_tokens"] and r2["tokens"] == r1["tokens"]


def test_a_global_batch_that_does_not_split_fails_clearly(world, tmp_path):
    out = launch(config(world, tmp_path / "odd", batch_size=3, micro_batch_size=1), nproc=2)
    assert out.returncode != 0 and "must be divisible by the 2 processes" in out.stderr
