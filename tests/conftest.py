"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_plugins import readme_example
from tiny_world import write_world
from workflow_helpers import ROOT, smoke_config, snakemake


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and do not spin-wait when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny instruction world of tests/tiny_world.py (train/valid JSONL, text, tokenizer)."""
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke workflow run once locally (`snakemake all --cores 2`), with the README's plugin example
    and an instruction set from outside the world added: (directory, config path, completed process).
    The end-to-end test checks it; the SLURM test compares its own run with it."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    code, example = readme_example()
    plugin = tmp_path / example["plugins"][0]
    plugin.write_text(code)
    base = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    outside = tmp_path / "outside.jsonl"  # an instruction set in the study's format, from outside the world
    outside.write_text(
        '{"instruction": "Name a colour.", "output": "Red."}\n{"instruction": "Say hi.", "output": "Hi!"}\n'
    )
    evaluation = {**base["evaluation"], "instruct_sets": {"outside": str(outside)}}
    methods = {**base["methods"], **example["methods"]}
    cfg = smoke_config(tmp_path, plugins=[str(plugin)], methods=methods, evaluation=evaluation)
    out = snakemake("all", "--cores", "2", "--configfile", str(cfg), timeout=1800)
    return tmp_path, cfg, out
