"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch
import yaml
from helpers.tiny_world import write_world
from helpers.workflow import ROOT, smoke_config, snakemake
from test_plugins import readme_example


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and do not spin-wait when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny instruction world of tests/helpers/tiny_world.py (train/valid JSONL, text, tokenizer)."""
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


HAS_TRL = importlib.util.find_spec("trl") is not None
# The worked examples (examples/) added to the smoke study at its larger teacher, one per kind of extension
EXAMPLE_METHODS = {
    "akl": {"loss": "akl", "teachers": ["neox-64x2"]},  # a divergence plugin
    "taid": {"loss": "fkl", "stateful": {"name": "taid"}, "teachers": ["neox-64x2"]},  # a stateful method
    "trl_gkd": {  # a rule: TRL's GKDTrainer, settings as the smoke's gkd
        "rule": "trl_gkd",
        "variants": ["off", "on"],
        "teachers": ["neox-64x2"],
        "params": {"beta": 0.5, "lmbda": 0.5, "max_new_tokens": 16},
    },
}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, judge_server):
    """The smoke workflow run once locally (`snakemake all --cores 2`) the way a user runs it: from a
    project directory holding the `Snakefile`, `workflow/`, `profiles/` and `config/`, with the README's
    plugin example saved as written (`my_kd.py` in the project directory, `plugins: [my_kd.py]`), the
    instruction sets named by a relative glob outside the project (as `../shared/data/instruct-eval/*.jsonl`
    would be) and an LLM judge (a local HTTP endpoint). Returns (directory, config path, completed process,
    project directory). The end-to-end test checks it; the SLURM test compares its own run with it."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Snakefile", project / "Snakefile")
    for folder in ("workflow", "profiles", "config"):
        shutil.copytree(ROOT / folder, project / folder)
    code, example = readme_example()
    (project / example["plugins"][0]).write_text(code)
    sets = tmp_path / "instruct-eval"  # instruction sets in the study's format, from outside the world
    sets.mkdir()
    (sets / "outside.jsonl").write_text(
        '{"instruction": "Name a colour.", "output": "Red."}\n{"instruction": "Say hi.", "output": "Hi!"}\n'
    )
    base = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    judge = {"url": judge_server, "model": "fake-judge", "api_key_env": "ATKD_TEST_JUDGE_KEY"}
    evaluation = {**base["evaluation"], "instruct_sets": "../instruct-eval/*.jsonl", "judge": judge}
    methods = {**base["methods"], **example["methods"], **EXAMPLE_METHODS}
    # the three worked examples of examples/, as a user keeps them: files of the project
    shutil.copy(ROOT / "examples" / "akl.py", project / "akl.py")
    shutil.copy(ROOT / "examples" / "taid.py", project / "taid.py")
    shutil.copytree(ROOT / "examples" / "trl_gkd", project / "trl_gkd")
    extra = {
        "workflow_plugins": ["trl_gkd/rules.smk"],
        "comparisons": [{"a": "trl_gkd", "b": "gkd", "teacher": "neox-64x2"}],
    }
    if not HAS_TRL:  # the rule example needs the `trl` extra (CI installs it)
        del methods["trl_gkd"]
        extra = {}
    cfg = smoke_config(
        tmp_path,
        plugins=[*example["plugins"], "akl.py", "taid.py"],
        methods=methods,
        evaluation=evaluation,
        **extra,
    )
    out = snakemake("all", "--cores", "2", "--configfile", str(cfg), timeout=1800, cwd=project)
    return tmp_path, cfg, out, project
