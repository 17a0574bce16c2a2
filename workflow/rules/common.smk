# Paths and one-line input functions over the study (atkd/study.py, where every decision lives and is
# unit-tested: which runs exist, which teacher or cache each reads, each job's arguments and metadata).

import json
import os
import shlex

from atkd.study import NO_TEACHER, Run, Study, TeacherRef, quote_meta

STUDY = Study(config)
_P = STUDY.paths
RESULTS = _P.results
FIGURES = _P.figures
REAL_DATA = STUDY.real_data  # the training world: the synthetic one (`world:`) or real data (`data:`)
WORLD = _P.world
DATA_SEED = STUDY.data_seed
TOKENIZER = _P.tokenizer
TEACHER_DIR = _P.teachers
ASSISTANT_DIR = _P.assistants
CACHE_DIR = _P.caches
GENERATED_DIR = _P.generated
STUDENT_BASE = _P.student_base
TEACHER_BASE_DIR = _P.teacher_bases
RUNS = _P.runs
LOGS = _P.logs
JUDGE_CACHE = _P.judge_cache
BENCH = _P.bench
# Outside instruction sets (resolved to absolute paths by the Snakefile): inputs, so an edit re-evaluates.
INSTRUCT_SET_FILES = list(config["evaluation"].get("instruct_sets", {}).values())
PROBES = STUDY.probes
LANDSCAPE = STUDY.landscape
BUDGET_SWEEP = STUDY.budget_sweep
GENERATION = STUDY.generation
ENV = "../envs/atkd.yaml"
# Jobs off the critical path (students, their evaluations and landscapes) run at a lower CPU priority, so
# that with more jobs than cores (`--cores 8` on a 2-core machine) the teachers every student waits for get
# the CPU first. Only the OS scheduler's share changes; on a cluster each job has its own cores.
BACKGROUND = "nice -n 10"

wildcard_constraints:
    method="[A-Za-z0-9_.-]+",
    teacher="[A-Za-z0-9_.-]+",
    variant="on|off",
    seed="[0-9]+",
    key="[A-Za-z0-9_.@-]+",
    data="gt|gen",
    assistant="[A-Za-z0-9_.-]+",


def _run(w):
    return Run(w.method, w.teacher, w.variant, int(w.seed))


def runs():
    return [(r.method, r.teacher, r.atkd, r.seed) for r in STUDY.runs()]


def run_dir(method, teacher, atkd, seed):
    return _P.run_dir(Run(method, teacher, atkd, int(seed)))


def teacher_model(key):
    return TeacherRef.parse(key).model_dir(_P)


def teacher_done(key):
    return TeacherRef.parse(key).done_file(_P)


def cache_enabled(method=None):
    return STUDY.cache_enabled(method)


def cache_flags(wildcards):
    return STUDY.cache_flags()


def distill_args(w):
    return STUDY.distill_args(_run(w))


def distill_inputs(w):
    return STUDY.distill_plan(w.method, w.teacher, w.variant)[1]


def resources_for(rule_name):
    return STUDY.resources_for(rule_name)


def train_args(*sections, **fixed):
    return STUDY.train_args(*sections, **fixed)


def train_command(rule_name):
    return STUDY.train_command(rule_name)


def world_command():
    return STUDY.world_command()


def world_version():
    return STUDY.world_version()


def tokenizer_command():
    return STUDY.tokenizer_command()


def student_base_command():
    return STUDY.student_base_command()


def teacher_base_inputs(w):
    return [f"{TEACHER_BASE_DIR}/{w.teacher}/train_summary.json"] if STUDY.teacher_pretrain(w.teacher) else []


def teacher_base_args(w):
    return STUDY.teacher_base_args(w.teacher)


def teacher_command(w):
    return STUDY.teacher_command(w.teacher)


def tuned_teachers():
    return STUDY.tuned_teachers()


def eval_args():
    return STUDY.eval_args()


def eval_meta(w):
    return quote_meta(STUDY.run_meta(_run(w)))


def teacher_meta(w):
    return quote_meta(STUDY.teacher_meta(w.teacher))


def student_base_meta():
    return quote_meta(STUDY.base_meta())


def judge_args(w):
    return STUDY.judge_args(w.model_dir)


def evaluated_dirs():
    return STUDY.evaluated_dirs()


def evaluation_stages():
    return STUDY.evaluation_stages()


def doc_score_files():
    return [f"{d}/eval/doc_scores.csv" for d in STUDY.evaluated_dirs()]


def run_summaries():
    return STUDY.run_summaries()


def probe_dirs():
    return STUDY.probe_dirs()


def probe_data(w):
    return STUDY.probe_data()


def sparse_ks():
    return STUDY.sparse_ks()


def sparse_files():
    return STUDY.sparse_files()


def landscape_dirs():
    return STUDY.landscape_dirs()


def comparisons_flag():
    """`atkd report --comparisons JSON` for the config's `comparisons:`, nothing without any."""
    asked = config.get("comparisons")
    return f"--comparisons {shlex.quote(json.dumps(asked))}" if asked else ""


def rule_runs_flag():
    """`atkd curves --rule-runs DIR...` for the runs users' rules produce (their curves are optional)."""
    dirs = [run_dir(*r) for r in runs() if is_rule_method(r[0])]
    return f"--rule-runs {' '.join(dirs)}" if dirs else ""


def is_rule_method(method):
    return method in STUDY.rule_methods()


def run_outputs(method):
    """The outputs (run summary and checkpoint) that a user's rules declare for `method`'s runs."""
    return STUDY.run_outputs(method)


def run_inputs(method):
    """What such rules may read - the student base, the training data and the run's teacher (done files
    as inputs; the folders themselves through `run_params`)."""
    return dict(
        base=f"{STUDENT_BASE}/train_summary.json",
        data=f"{WORLD}/manifest.json",
        teacher=lambda w: [] if w.teacher == NO_TEACHER else teacher_done(w.teacher),
    )


def run_params(method):
    """Paths for a user's command - student base, training and validation files, teacher, the run's
    folder - and the study's settings for the run as JSON (`Study.rule_settings`)."""
    return dict(
        student_base=f"{STUDENT_BASE}/final",
        train_data=f"{WORLD}/train.jsonl",
        valid_data=f"{WORLD}/valid.jsonl",
        teacher=lambda w: "" if w.teacher == NO_TEACHER else teacher_model(w.teacher),
        run_dir=lambda w: run_dir(method, w.teacher, w.variant, w.seed),
        settings=lambda w: json.dumps(STUDY.rule_settings(method, w.variant), sort_keys=True),
    )


def check_rule_methods(workflow, plugins):
    """Every `rule:` method names a rule of the workflow plugins that declares `run_outputs` (else the
    config check fails here, before any job, naming what is missing)."""
    for method, name in STUDY.rule_methods().items():
        found = next((r for r in workflow.rules if r.name == name), None)
        if found is None:
            raise ValueError(f"methods.{method}.rule: no rule {name!r} in workflow_plugins {plugins}")
        example = dict(teacher=STUDY.teachers[0], variant="off", seed=STUDY.seeds[0])  # a run's concrete paths
        wanted = [v.format(**example) for v in STUDY.run_outputs(method).values()]
        missing = [v for v in wanted if not any(o.match(v) for o in found.output)]
        if missing:
            raise ValueError(
                f"methods.{method}: {name!r} must declare the run's outputs with **run_outputs({method!r})"
                f" in its output section; missing {missing[0]}"
            )


def parent(path_kind, index=0, up=1):
    """Param function: the directory `up` levels above input/output file `index`."""

    def get(wildcards, input, output):
        path = (input if path_kind == "input" else output)[index]
        for _ in range(up):
            path = os.path.dirname(path)
        return path

    return get
