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

pytestmark = pytest.mark.e2e


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


@pytest.mark.parametrize(
    ("loss", "sharded"), [("ce", False), ("fkl", False), ("ce", True), ("fkl", True)], ids=str
)
def test_two_processes_train_the_weights_of_one(world, tmp_path, loss, sharded):
    """Data parallel (each process a full copy, gradients summed) and sharded (FSDP: each process 1/2 of
    the student's and the live teacher's parameters, gradients and optimizer state) alike."""
    extra = {}
    if loss == "fkl":
        teacher = train(config(world, tmp_path / "teacher", arch="neox-48x2", max_steps=12, lr=1e-2, seed=9))
        extra = {"loss": "fkl", "teacher": str(teacher)}
    one = train(config(world, tmp_path / "one", **extra))
    two = config(world, tmp_path / "two", **extra)
    if sharded:  # also gather a checkpoint and an intermediate HF save from the shards
        two.update(shard=True, checkpoint_every=2, keep_final_checkpoint=True, save_hf_at=[2])
    out = launch(two, nproc=2)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    a, b = load_model(one).state_dict(), load_model(tmp_path / "two" / "final").state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    if sharded:
        mid = load_model(tmp_path / "two" / "hf" / "step-00000002").state_dict()
        assert set(mid) == set(a) and all(mid[k].shape == a[k].shape for k in a)
        state = torch.load(
            tmp_path / "two" / "checkpoints" / "step-00000002" / "state.pt", weights_only=False
        )
        assert set(state["model"]) == set(a)  # a full (gathered) state dict, not a shard
        # resume from that checkpoint (as after a crash at step 3): the same final weights
        (tmp_path / "two" / "train_summary.json").unlink()
        first = load_model(tmp_path / "two" / "final").state_dict()
        again = launch(two, nproc=2)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "resuming" in again.stderr
        resumed = load_model(tmp_path / "two" / "final").state_dict()
        for name in first:
            torch.testing.assert_close(resumed[name], first[name], rtol=1e-6, atol=1e-7, msg=name)
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
