"""The Snakemake workflow: lint, config validation, planning, and the smoke configuration end to end."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml
from workflow_helpers import ROOT, job_counts, smoke_config, snakemake

from atkd.config import check_study


def test_lint_is_clean():
    out = snakemake("--lint", "--configfile", "config/smoke.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr


@pytest.mark.parametrize("configfile", ["config/default.yaml", "config/smoke.yaml"])
def test_dry_run_plans_every_run(configfile):
    out = snakemake("-n", "all", "--configfile", configfile, "--quiet", "rules")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load((ROOT / configfile).read_text())
    n_teachers = len(cfg["teachers"])
    expected = 0
    for method in cfg["methods"].values():
        teachers = method.get("teachers", "all")
        n = n_teachers if teachers == "all" else len(teachers)
        expected += len(method.get("atkd", ["off", "on"])) * n if method.get("teacher", True) else 1
    expected *= len(cfg["seeds"])
    counts = job_counts(out)
    assert counts["distill"] == expected and counts["evaluate"] == expected
    assert counts["teacher"] == n_teachers and counts["evaluate_teacher"] == n_teachers
    # a teacher's answers (SeqKD) are generated once per teacher, whatever the seeds and ATKD variants
    answering = {
        t
        for m in cfg["methods"].values()
        if m.get("sampling", {}).get("source") == "teacher"
        for t in (cfg["teachers"] if m.get("teachers", "all") == "all" else m["teachers"])
    }
    assert answering and counts["teacher_generate"] == len(answering)


def _set(*path_and_value):
    """A change to a config: set the value at a key path (the last argument is the value)."""
    *path, value = path_and_value

    def apply(cfg, tmp_path):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(tmp_path) if callable(value) else value

    return apply


def _bad_set(tmp_path):
    """An instruction set whose second line has a number where the reference answer should be."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 3}\n')
    return path


CONFIG_ERRORS = [
    (_set("methods", "kd", "loss", "kl"), r"methods.kd.loss: unknown loss name 'kl'; valid: ce, dkd, fkl"),
    (
        _set("teachers", "neox-48x2", "arch", "neox-1x1"),
        r"teachers.neox-48x2: unknown arch 'neox-1x1'; valid: neox-32x2",
    ),
    (_set("methods", "sft", "atkd", ["on"]), "needs a teacher"),
    (
        _set("methods", "rkd", "teachers", ["neox-999x9"]),
        r"methods.rkd.teachers: unknown teacher 'neox-999x9'; valid: neox-48x2",
    ),
    (_set("methods", "kd_ta", "assistant", "tiny"), r"methods.kd_ta.assistant: unknown teacher 'tiny'"),
    (
        _set("methods", "gkd", "sampling", "source", "oracle"),
        r"methods.gkd.sampling.source: unknown source 'oracle'; valid: ground_truth",
    ),
    (_set("methods", "seqkd", "atkd_loss", "ce"), r"methods.seqkd.atkd_loss: .*ce"),
    (_set("methods", "sft", "sampling", {"source": "student"}), r"methods.sft: sampling needs a teacher"),
    (
        _set("evaluation", "instruct_sets", lambda tmp: {"real": str(tmp / "missing.jsonl")}),
        r"evaluation.instruct_sets: .*missing.jsonl",
    ),
    (
        _set("evaluation", "instruct_sets", lambda tmp: {"bad": str(_bad_set(tmp))}),
        r"evaluation.instruct_sets: .*bad\.jsonl:2: field 'output' must be str, got int",
    ),
    (
        _set("evaluation", "instruct_sets", lambda tmp: str(tmp / "sets" / "*.jsonl")),
        r"evaluation.instruct_sets: '.*sets/\*\.jsonl' matches no file",
    ),
    (_set("evaluation", "num_fewshot", {"dolly": 2}), r"evaluation.num_fewshot: 'dolly' .*; valid: mmlu"),
    (
        _set("analyses", "k_sweep", "members", "kdd", "k=0.9"),
        r"analyses.k_sweep.members: unknown method 'kdd'; valid: sft, kd",
    ),
    (
        _set("analyses", "tkd_vs_dkd", "atkd", "on"),
        r"analyses.tkd_vs_dkd: method 'tkd_only' has no atkd='on' run",
    ),
    (
        _set("methods", "kd_k70", "atkd_options", {"k": 0.7, "lam": 0.2, "groups": {}}),
        r"methods.kd_k70.loss: atkd: set lam",
    ),
    (_set("landscape", "methods", ["kdd"]), r"landscape.methods: unknown name 'kdd'; valid: sft, kd"),
]


@pytest.mark.parametrize(("change", "message"), CONFIG_ERRORS)
def test_config_errors_name_the_valid_choices(tmp_path, change, message):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    check_study(copy.deepcopy(cfg))  # the smoke config itself is valid
    change(cfg, tmp_path)
    with pytest.raises(ValueError, match=message):
        check_study(cfg)


def test_schema_rejects_unknown_suites_before_any_job(tmp_path):
    # the schema rejects unknown keys and suites before any job runs
    out = snakemake(
        "-n",
        "all",
        "--configfile",
        str(smoke_config(tmp_path, evaluation={"suites": ["squad"], "max_new_tokens": 8, "batch_size": 2})),
    )
    assert out.returncode != 0 and "squad" in out.stdout + out.stderr


def test_smoke_workflow_end_to_end(smoke_run):
    """The whole DAG on the smoke config, in a temporary directory: tidy table, main table, figure; with
    the README's worked plugin example (a user's own module and method) added as written."""
    tmp_path, cfg, out, project = smoke_run
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = tmp_path / "results"
    metrics = pd.read_csv(results / "metrics.csv", keep_default_na=False)
    smoke = yaml.safe_load(cfg.read_text())
    assert set(metrics["task"]) == set(smoke["evaluation"]["suites"]) | {"outside"}
    # the outside set is scored by Rouge-L and by the LLM judge (a `judge` job per evaluated model)
    assert set(metrics.loc[metrics["task"] == "outside", "metric"]) == {"rougeL", "llm_judge_ratio"}
    judged = metrics[metrics["metric"] == "llm_judge_ratio"]
    assert len(judged) == len(set(metrics["run"])) and (judged["value"] > 0).all()
    from test_llm_judge import SECRET  # the judge's key is read from the environment, never written

    assert not [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert set(metrics["method"]) == set(smoke["methods"]) | {"teacher"}  # teachers are evaluated too
    assert set(metrics.loc[metrics["method"] == "teacher", "teacher"]) == set(smoke["teachers"])
    for method, entry in smoke["methods"].items():  # every method ran with its variants (both by default)
        want = set(entry.get("atkd", ["off"] if entry.get("teacher", True) is False else ["off", "on"]))
        assert set(metrics.loc[metrics["method"] == method, "atkd"]) == want, method
    assert metrics.loc[metrics["metric"] != "llm_judge_ratio", "value"].between(0, 1).all()
    main = pd.read_csv(results / "tables" / "main.csv", keep_default_na=False)
    assert {"avg", "outside", *smoke["evaluation"]["suites"]} <= set(main["task"])
    # the README's plugin method (loaded as `plugins: [my_kd.py]` from the project) is in the main table
    assert set(main.loc[main["method"] == "hellinger", "atkd"]) == {"off", "on"}
    for ext in ("png", "pdf"):
        assert (tmp_path / "figures" / f"teacher_sweep.{ext}").stat().st_size > 1000
    # a second invocation finds everything up to date
    again = snakemake("all", "--cores", "2", "--configfile", str(cfg), "-n", timeout=120, cwd=project)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("configfile", ["config/paper-pythia.yaml", "config/paper-opt.yaml"])
def test_paper_profiles_plan_the_full_study(configfile):
    """A dry run of a paper profile: real data, Hub models, instruct sets with the LLM judge, lm-eval
    benchmarks by name; no synthetic world and no teacher cache (live teachers)."""
    out = snakemake("-n", "all", "--configfile", configfile, "--quiet", "rules", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = job_counts(out)
    cfg = yaml.safe_load((ROOT / configfile).read_text())
    evaluated = counts["evaluate"] + counts["evaluate_teacher"]
    assert counts["judge"] == evaluated  # every evaluated model is judged
    assert counts["teacher"] == len(cfg["teachers"]) and "teacher_cache" not in counts
    assert counts["world"] == 1  # `atkd data`: the real training data


def test_launch_runs_training_under_a_multi_process_launcher(tmp_path):
    launcher = "torchrun --standalone --nproc_per_node 2"
    cfg = smoke_config(tmp_path, launch={"distill": launcher})
    out = snakemake("-n", "-p", "all", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert f"{launcher} -m atkd.cli train" in text  # the distillation runs
    assert "atkd train --set" in text  # the teachers, without a launcher
