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
def judge_server():
    """A local OpenAI-compatible chat endpoint (tests/test_llm_judge.py's fake judge) for the session;
    yields its base URL. Its key variable is set for the workflow's subprocesses."""
    import os
    import threading
    from http.server import ThreadingHTTPServer

    from test_llm_judge import SECRET, Behaviour, make_handler

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Behaviour()))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    before = os.environ.get("ATKD_TEST_JUDGE_KEY")
    os.environ["ATKD_TEST_JUDGE_KEY"] = SECRET
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()
    if before is None:
        os.environ.pop("ATKD_TEST_JUDGE_KEY", None)
    else:
        os.environ["ATKD_TEST_JUDGE_KEY"] = before


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, judge_server):
    """The smoke workflow run once locally (`snakemake all --cores 2`), with the README's plugin example,
    an instruction set from outside the world and an LLM judge (a local HTTP endpoint) added:
    (directory, config path, completed process). The end-to-end test checks it; the SLURM test compares
    its own run with it."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    code, example = readme_example()
    plugin = tmp_path / example["plugins"][0]
    plugin.write_text(code)
    base = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    outside = tmp_path / "outside.jsonl"  # an instruction set in the study's format, from outside the world
    outside.write_text(
        '{"instruction": "Name a colour.", "output": "Red."}\n{"instruction": "Say hi.", "output": "Hi!"}\n'
    )
    judge = {"url": judge_server, "model": "fake-judge", "api_key_env": "ATKD_TEST_JUDGE_KEY"}
    evaluation = {**base["evaluation"], "instruct_sets": {"outside": str(outside)}, "judge": judge}
    methods = {**base["methods"], **example["methods"]}
    cfg = smoke_config(tmp_path, plugins=[str(plugin)], methods=methods, evaluation=evaluation)
    out = snakemake("all", "--cores", "2", "--configfile", str(cfg), timeout=1800)
    return tmp_path, cfg, out
