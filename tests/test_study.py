"""The study module: which runs exist, what each reads, and what every job is told, from a config alone
(no Snakemake). The workflow's dry runs (tests/test_workflow.py) check the same plans through the rules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from atkd.study import NO_TEACHER, Run, Study, TeacherRef

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())


def study(**changes) -> Study:
    cfg = copy.deepcopy(SMOKE)
    cfg.update(changes)
    return Study(cfg)


def test_runs_are_methods_by_teachers_by_variants_by_seeds():
    s = study(seeds=[1, 2])
    runs = s.runs()
    assert Run("sft", NO_TEACHER, "off", 1) in runs and Run("sft", NO_TEACHER, "on", 1) not in runs
    assert {r.teacher for r in runs if r.method == "kd"} == {"neox-48x2", "neox-64x2"}
    assert {r.atkd for r in runs if r.method == "tkd_only"} == {"off"}
    assert {r.atkd for r in runs if r.method == "kd_k70"} == {"on"}
    assert len(runs) == len(set(runs)) and {r.seed for r in runs} == {1, 2}
    per_seed = 1 + 2 * 2 + 2 * 8 + 1 + 1 + 1 + 2  # sft; kd at two teachers; 8 others +-ATKD; one-variant ones
    assert len(runs) == 2 * per_seed
    assert Run("kd", "neox-64x2", "on", 2).id == "kd/neox-64x2/on/s2"


def test_seed_counts_per_method_and_per_teacher():
    cfg = copy.deepcopy(SMOKE)
    cfg["seeds"] = [1, 2, 3]
    cfg["methods"]["sft"]["seeds"] = 1
    cfg["methods"]["kd"]["seeds"] = {"neox-48x2": 2}
    runs = Study(cfg).runs()
    assert sorted({r.seed for r in runs if r.method == "sft"}) == [1]
    assert sorted({r.seed for r in runs if r.method == "kd" and r.teacher == "neox-48x2"}) == [1, 2]
    assert sorted({r.seed for r in runs if r.method == "kd" and r.teacher == "neox-64x2"}) == [1, 2, 3]


def test_teacher_refs_name_the_teacher_its_early_checkpoint_or_an_assistant():
    s, p = study(), study().paths
    assert s.teacher_ref("kd", "neox-64x2") == TeacherRef("neox-64x2")
    early = s.teacher_ref("kd_early", "neox-64x2")
    assert early.key == "neox-64x2@epoch-0.1" and TeacherRef.parse(early.key) == early
    assert early.model_dir(p) == f"{p.teachers}/neox-64x2/hf/epoch-0.1"
    assert early.done_file(p) == f"{p.teachers}/neox-64x2/train_summary.json"
    ta = s.teacher_ref("kd_ta", "neox-64x2")
    assert ta.key == "neox-64x2@ta-neox-48x2"
    assert ta.model_dir(p) == f"{p.assistants}/neox-64x2/neox-48x2/final"
    assert ta.done_file(p) == f"{p.assistants}/neox-64x2/neox-48x2/train_summary.json"
    assert s.early_epochs("neox-64x2") == [0.1] and s.early_epochs("neox-48x2") == []


def test_distill_plans_read_a_cache_a_generated_file_or_the_live_teacher():
    s = study()
    p = s.paths
    fields, inputs = s.distill_plan("kd", "neox-64x2", "on")  # ground truth: the cache
    assert fields["teacher_cache"] == f"{p.caches}/neox-64x2/gt" and "teacher" not in fields
    assert fields["loss"] == {"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}}
    assert f"{p.caches}/neox-64x2/gt/meta.json" in inputs
    fields, _ = s.distill_plan("seqkd", "neox-64x2", "on")  # every batch from the teacher's answers
    assert fields["train_data"] == f"{p.generated}/neox-64x2/train.jsonl"
    assert fields["teacher_cache"] == f"{p.caches}/neox-64x2/gen" and fields["loss"]["name"] == "fkl"
    fields, inputs = s.distill_plan("seqkd", "neox-64x2", "off")  # CE on the answers: no teacher
    assert "teacher" not in fields and "teacher_cache" not in fields
    fields, inputs = s.distill_plan("gkd", "neox-64x2", "off")  # on-policy half the time: live + cache
    assert fields["teacher"] == f"{p.teachers}/neox-64x2/final" and "teacher_cache" in fields
    assert fields["sampling"]["source"] == "student"
    fields, inputs = s.distill_plan("sft", NO_TEACHER, "off")
    assert set(fields) == {"train_data", "loss"} and len(inputs) == 2
    off = copy.deepcopy(SMOKE)
    off["methods"]["rkd"]["teacher_cache"] = False
    fields, _ = Study(off).distill_plan("rkd", "neox-64x2", "off")
    assert "teacher_cache" not in fields and fields["teacher"] == f"{p.teachers}/neox-64x2/final"


def test_every_evaluated_model_has_its_metadata():
    s = study(evaluation={**SMOKE["evaluation"], "student_base": True})
    p = s.paths
    dirs = s.evaluated_dirs()
    assert dirs[-1] == p.student_base and f"{p.teachers}/neox-64x2" in dirs
    run = Run("kd", "neox-64x2", "on", 1)
    assert (
        s.meta_for_dir(p.run_dir(run))
        == s.run_meta(run)
        == dict(
            run="kd/neox-64x2/on/s1", student="neox-32x2", teacher="neox-64x2", method="kd", atkd="on", seed=1
        )
    )
    assert s.meta_for_dir(p.run_dir(Run("sft", NO_TEACHER, "off", 1)))["teacher"] == ""
    assert s.meta_for_dir(f"{p.teachers}/neox-64x2")["method"] == "teacher"
    assert s.meta_for_dir(p.student_base) == s.base_meta() and s.base_meta()["method"] == "base"


def test_landscapes_follow_their_section():
    cfg = copy.deepcopy(SMOKE)
    cfg["seeds"] = [1, 2, 3]
    cfg["landscape"]["seeds"] = 2
    dirs = Study(cfg).landscape_dirs()
    assert len(dirs) == 2 * 2 and all("/landscape/kd/neox-64x2/" in d for d in dirs)


@pytest.mark.parametrize("name", ["default", "full", "smoke", "paper-pythia", "paper-opt"])
def test_every_shipped_config_gives_a_plan_for_every_run(name):
    s = Study(yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text()))
    for run in s.runs():
        fields, inputs = s.distill_plan(run.method, run.teacher, run.atkd)
        assert "--set" in s.distill_args(run) and inputs[0].endswith("student-base/train_summary.json")
        if run.teacher != NO_TEACHER and fields["loss"]["name"] != "ce":
            assert "teacher" in fields or "teacher_cache" in fields, run


def test_methods_produced_by_a_users_rule():
    """A `rule:` method runs without ATKD unless it lists both variants, is kept out of the study's own
    distillation rule's wildcard, and its rule must declare the run's summary and checkpoint."""
    import re

    cfg = copy.deepcopy(SMOKE)
    cfg["methods"]["trl_gkd"] = {"rule": "trl_gkd", "teachers": ["neox-64x2"]}
    cfg["methods"]["mine"] = {"rule": "mine", "variants": ["off", "on"], "teachers": ["neox-64x2"]}
    s = Study(cfg)
    assert s.rule_methods() == {"trl_gkd": "trl_gkd", "mine": "mine"}
    assert {r.atkd for r in s.runs() if r.method == "trl_gkd"} == {"off"}
    assert {r.atkd for r in s.runs() if r.method == "mine"} == {"off", "on"}
    pattern = re.compile(s.trained_method_pattern())
    assert pattern.fullmatch("kd") and pattern.fullmatch("trl_gkd2") and pattern.fullmatch("mine_x")
    assert not pattern.fullmatch("trl_gkd") and not pattern.fullmatch("mine")
    assert re.compile(Study(SMOKE).trained_method_pattern()).fullmatch("trl_gkd")
    outputs = s.run_outputs("trl_gkd")
    assert (
        outputs["summary"] == f"{s.paths.runs}/trl_gkd/{{teacher}}/{{variant}}/s{{seed}}/train_summary.json"
    )
    assert outputs["checkpoint"].endswith("/s{seed}/final/config.json")


def test_a_rule_methods_settings_carry_the_distill_budget_its_params_and_the_atkd_options():
    cfg = copy.deepcopy(SMOKE)
    cfg["methods"]["peer"] = {"rule": "peer", "variants": ["off", "on"], "params": {"beta": 0.5}}
    s = Study(cfg)
    off, on = s.rule_settings("peer", "off"), s.rule_settings("peer", "on")
    assert off["distill"] == SMOKE["distill"] and off["params"] == {"beta": 0.5} and off["threads"] == 1
    assert "atkd_options" not in off and on["atkd_options"] == SMOKE["atkd_options"]


@pytest.mark.parametrize(
    ("comparison", "message"),
    [
        ({"a": "kd", "b": "nope"}, r"comparisons\[0\].b: unknown method 'nope'"),
        (
            {"a": "kd", "b": "gkd", "teacher": "neox-48x2"},
            r"gkd runs with teachers neox-64x2, not 'neox-48x2'",
        ),
        (
            {"a": "kd", "b": "tkd_only", "teacher": "neox-64x2", "variant": "on"},
            r"tkd_only has no 'on' variant",
        ),
    ],
)
def test_requested_comparisons_are_checked_against_the_methods(comparison, message):
    from atkd.config import ConfigError, check_study

    cfg = copy.deepcopy(SMOKE)
    cfg["comparisons"] = [comparison]
    with pytest.raises(ConfigError, match=message):
        check_study(cfg)
    cfg["comparisons"] = [{"a": "gkd", "b": "kd", "teacher": "neox-64x2", "variant": "both"},
                          {"a": "kd", "b": "sft", "teacher": "neox-64x2"}]  # fmt: skip
    check_study(cfg)


def test_params_belong_to_rule_methods_only():
    from atkd.config import ConfigError, check_study

    cfg = copy.deepcopy(SMOKE)
    cfg["methods"]["kd"]["params"] = {"beta": 0.5}
    with pytest.raises(ConfigError, match=r"methods.kd.params: only a method produced by a rule"):
        check_study(cfg)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(atkd=c.pop("atkd_options")), r"^atkd: renamed atkd_options"),
        (lambda c: c["methods"]["kd"].update(atkd=["off"]), r"^methods.kd.atkd: renamed variants"),
        (lambda c: c["analyses"]["k_sweep"].update(atkd="on"), r"^analyses.k_sweep.atkd: renamed variant"),
        (
            lambda c: c.update(comparisons=[{"a": "kd", "b": "gkd", "atkd": "on"}]),
            r"comparisons\[0\].atkd: renamed",
        ),
    ],
)
def test_the_keys_once_all_called_atkd_fail_naming_their_new_names(change, message):
    """Top-level options, a method's variants, an analysis's or comparison's variant: an old config fails
    before the schema check (which would only call the key unknown), naming the new key."""
    from atkd.config import ConfigError, check_schema

    cfg = copy.deepcopy(SMOKE)
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        check_schema(cfg, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    cfg = copy.deepcopy(SMOKE)
    cfg["methods"]["kd"]["loss"] = {"name": "fkl", "atkd": {"k": 0.5}}  # a loss's split keeps its name
    check_schema(cfg, ROOT / "workflow" / "schemas" / "config.schema.yaml")


def test_the_world_rules_version_param_follows_the_generator(monkeypatch):
    """The `world` rule's `version` param is what reruns it (Snakemake's params trigger) when the package
    generates a different world, so it must follow WORLD_VERSION; real data has its source in the command."""
    import atkd.data.world as world

    before = study().world_version()
    monkeypatch.setattr(world, "WORLD_VERSION", world.WORLD_VERSION + 1)
    after = study().world_version()
    assert before != after and after.endswith(str(world.WORLD_VERSION))
    real = Study(yaml.safe_load((ROOT / "config" / "paper-pythia.yaml").read_text()))
    assert real.world_version() == "real"


def test_line_breaks_route_every_pre_training_job_to_the_jsonl_corpus():
    """With `pretrain_line_breaks` the world job asks for them and the tokenizer, the student base and the
    teachers' bases read pretrain.jsonl / pretrain_valid.jsonl; without, every command is what it was."""
    plain = study()
    assert "pretrain.txt" in plain.tokenizer_command()
    assert "pretrain.jsonl" not in plain.student_base_command()
    broken = study(world={**SMOKE["world"], "pretrain_line_breaks": 0.5})
    assert broken.world_command() == plain.world_command() + " --pretrain-line-breaks 0.5"
    world = broken.paths.world
    assert f"{world}/pretrain.jsonl" in broken.tokenizer_command()
    base = broken.student_base_command()
    assert f"{world}/pretrain.jsonl" in base and f"{world}/pretrain_valid.jsonl" in base
    assert "pretrain.txt" not in base and "pretrain_valid.txt" not in base
    assert broken.pretrain_files == (f"{world}/pretrain.jsonl", f"{world}/pretrain_valid.jsonl")


def test_the_world_command_names_qa_documents_and_reference_noise_only_when_asked():
    """Without `n_pretrain_qa` the world job's command is what it was (an existing results folder keeps
    its world); with it, `atkd world` adds them."""
    plain = study().world_command()
    assert "--n-pretrain-qa" not in plain and plain.endswith(f"--n-fewshot {SMOKE['world']['n_fewshot']}")
    assert study(world={**SMOKE["world"], "n_pretrain_qa": 0}).world_command() == plain
    assert (
        study(world={**SMOKE["world"], "n_pretrain_qa": 500}).world_command()
        == plain + " --n-pretrain-qa 500"
    )
    assert study(world={**SMOKE["world"], "reference_noise": 0}).world_command() == plain
    noisy = study(world={**SMOKE["world"], "reference_noise": 0.3}).world_command()
    assert noisy == plain + " --reference-noise 0.3"


def test_disjoint_records_for_teacher_and_student_reach_their_commands():
    """A teacher tuned on the first N records (`train_limit` on the teacher) and a method distilled on the
    records after them (`train: {train_offset: N}`) get those fields on their `atkd train` commands."""
    cfg = copy.deepcopy(SMOKE)
    teacher = next(iter(cfg["teachers"]))
    cfg["teachers"][teacher] = {**cfg["teachers"][teacher], "train_limit": 32}
    cfg["methods"]["kd"] = {**cfg["methods"]["kd"], "train": {"train_offset": 32, "train_limit": 16}}
    s = Study(cfg)
    run = next(r for r in s.runs() if r.method == "kd" and r.teacher == teacher)
    assert "--set train_offset=32" in s.distill_args(run) and "--set train_limit=16" in s.distill_args(run)
    assert "--set train_limit=32" in s.teacher_train_args(teacher)
    sft = next(r for r in s.runs() if r.method == "sft")
    assert "train_offset" not in s.distill_args(sft)


def test_a_teacher_told_the_true_answers_tunes_on_them_and_students_on_the_noisy_file():
    """`references: clean` on a teacher: its `atkd train` reads train_clean.jsonl; the other teachers and
    every student read the world's train.jsonl. The tokenizer of a noisy world is trained on the true
    answers."""
    cfg = copy.deepcopy(SMOKE)
    cfg["world"] = {**cfg["world"], "reference_noise": 0.3}
    told, other = list(cfg["teachers"])[:2]
    cfg["teachers"][told] = {**cfg["teachers"][told], "references": "clean"}
    s = Study(cfg)
    world = s.paths.world
    assert f'train_data="{world}/train_clean.jsonl"' in s.teacher_train_args(told)
    assert "references" not in s.teacher_train_args(told)
    assert f'train_data="{world}/train.jsonl"' in s.teacher_train_args(other)
    run = next(r for r in s.runs() if r.method == "kd" and r.teacher == told)
    assert f"{world}/train.jsonl" in s.distill_args(run) and "train_clean" not in s.distill_args(run)
    # the tokenizer learns the true answers too, so the noise leaves it (and the bases) as they were
    assert f"--train {world}/train_clean.jsonl " in s.tokenizer_command()
    assert f"--train {world}/train.jsonl " in study().tokenizer_command()
