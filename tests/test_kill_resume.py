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
from helpers.tiny_world import write_world
from safetensors.torch import load_file

from atkd.eval.harness import evaluate

pytestmark = pytest.mark.e2e

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


# The README's answer to "Snakemake says the directory is locked" after a killed run: the same command
# once with this flag added, then unchanged.
README_UNLOCK = "--unlock"


def test_killed_workflow_reruns_to_the_same_metrics(smoke_run, tmp_path_factory):
    """The smoke workflow (sft and kd: every rule kind up to the report, in a third of the time) killed
    (process group, SIGKILL) while students train, then the README's command again, unchanged (after
    `snakemake --unlock` if, and only if, Snakemake reports a stale lock, as the README says): the same
    scores, to the bit, as the uninterrupted smoke run's runs of those methods."""
    import yaml
    from helpers.workflow import SNAKEMAKE, assert_same_scores, subset_config

    reference, ref_config, ref_out, project = smoke_run
    assert ref_out.returncode == 0, ref_out.stderr[-3000:]
    tmp = tmp_path_factory.mktemp("killed-workflow")
    methods = ["sft", "kd"]
    cfg = subset_config(yaml.safe_load(ref_config.read_text()), methods)
    cfg["results"], cfg["figures"] = str(tmp / "results"), str(tmp / "figures")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    command = [*SNAKEMAKE, "all", "--cores", "2", "--configfile", str(config)]

    proc = subprocess.Popen(
        command,
        cwd=project,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = tmp / "results" / "runs"
    deadline = time.time() + 1200
    while time.time() < deadline and proc.poll() is None:  # some students done, others under way
        if runs.exists() and any(runs.rglob("train_summary.json")):
            break
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.fail("the workflow finished (or failed) before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp / "results" / "metrics.csv").exists()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=project, env=ENV, capture_output=True, text=True, timeout=1800)

    again = run(*command)
    if again.returncode != 0 and "LockException" in again.stdout + again.stderr:
        unlock = run(*command, README_UNLOCK)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        again = run(*command)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert_same_scores(reference / "results" / "metrics.csv", tmp / "results" / "metrics.csv", methods)
    assert (tmp / "results" / "REPORT.md").is_file()
