# Shared glue: paths, the enumeration of runs, and turning config sections into `atkd` arguments.
# No science here: what a method computes is in atkd/, what it is called with is in the config.

import json
import os
import shlex

RESULTS = config["results"]
FIGURES = config["figures"]
WORLD = f"{RESULTS}/world"
TOKENIZER = f"{RESULTS}/tokenizer"
TEACHER_DIR = f"{RESULTS}/models/teachers"
STUDENT_BASE = f"{RESULTS}/models/student-base"
RUNS = f"{RESULTS}/runs"
LOGS = f"{RESULTS}/logs"
NO_TEACHER = "none"
ENV = "../envs/atkd.yaml"

wildcard_constraints:
    method="[A-Za-z0-9_.-]+",
    teacher="[A-Za-z0-9_.-]+",
    atkd="on|off",
    seed="[0-9]+",


def needs_teacher(method):
    return config["methods"][method].get("teacher", True)


def runs():
    """Every distilled student of the study: (method, teacher, atkd, seed)."""
    out = []
    for seed in config["seeds"]:
        for method, spec in config["methods"].items():
            if not needs_teacher(method):
                out.append((method, NO_TEACHER, "off", seed))
                continue
            for teacher in config["teachers"]:
                for atkd in spec.get("atkd", ["off", "on"]):
                    out.append((method, teacher, atkd, seed))
    return out


def run_dir(method, teacher, atkd, seed):
    return f"{RUNS}/{method}/{teacher}/{atkd}/s{seed}"


def resources_for(rule_name):
    """Per-rule resources from the config (mem_mb, runtime in minutes, gpus, ...)."""
    res = dict(config.get("resources", {}).get("default", {}))
    res.update(config.get("resources", {}).get(rule_name, {}))
    return res


def set_args(**fields):
    """`--set key=value` arguments for `atkd train`, values as JSON (a subset of YAML), shell-quoted."""
    return " ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in fields.items())


def loss_spec(method, atkd):
    spec = config["methods"][method]["loss"]
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if atkd == "on":
        spec["atkd"] = dict(config["atkd"])
    return spec


def train_args(*sections, **fixed):
    """Merge training sections (later wins) plus fixed fields into `atkd train` arguments."""
    fields = {}
    for section in sections:
        fields.update(section)
    fields.update(fixed)
    if "arch" in fields and "tokenizer" not in fields:
        fields["tokenizer"] = TOKENIZER
    return set_args(**fields)


def use_cache(method):
    """Ground-truth methods read the teacher's cached logits instead of running the teacher."""
    return config.get("teacher_cache", {}).get("enabled", True) and needs_teacher(method)


def teacher_input(w):
    if w.teacher == NO_TEACHER:
        return []
    if use_cache(w.method):
        return [f"{TEACHER_DIR}/{w.teacher}/cache/meta.json"]
    return [f"{TEACHER_DIR}/{w.teacher}/train_summary.json"]


def distill_args(w):
    method = config["methods"][w.method]
    fixed = dict(
        model=f"{STUDENT_BASE}/final",
        output_dir=run_dir(w.method, w.teacher, w.atkd, w.seed),
        train_data=f"{WORLD}/train.jsonl",
        valid_data=f"{WORLD}/valid.jsonl",
        loss=loss_spec(w.method, w.atkd),
        seed=int(w.seed),
        threads=config["threads"],
        progress=False,
    )
    if w.teacher != NO_TEACHER and use_cache(w.method):
        fixed["teacher_cache"] = f"{TEACHER_DIR}/{w.teacher}/cache"
    elif w.teacher != NO_TEACHER:
        fixed["teacher"] = f"{TEACHER_DIR}/{w.teacher}/final"
    return train_args(config["distill"], method.get("train", {}), **fixed)


def eval_args():
    """The `atkd evaluate` options every evaluated model shares (suites, limit, budgets, few-shot counts)."""
    e = config["evaluation"]
    args = f"--suites {' '.join(e['suites'])} --max-new-tokens {e['max_new_tokens']} --batch-size {e['batch_size']}"
    if e.get("limit"):
        args += f" --limit {e['limit']}"
    if e.get("num_fewshot"):
        args += " --num-fewshot " + " ".join(f"{k}={v}" for k, v in e["num_fewshot"].items())
    return args


def teacher_meta(w):
    """Rows of a teacher's own evaluation: method `teacher`, the teacher as both student and teacher."""
    seed = config["world"]["seed"]
    meta = dict(run=f"teacher/{w.teacher}", student=w.teacher, teacher=w.teacher, method="teacher", atkd="off")
    return " ".join(shlex.quote(f"{k}={v}") for k, v in {**meta, "seed": seed}.items())


def eval_meta(w):
    student = config["student"].get("arch") or config["student"].get("model")
    teacher = "" if w.teacher == NO_TEACHER else w.teacher
    run = f"{w.method}/{w.teacher}/{w.atkd}/s{w.seed}"
    meta = dict(run=run, student=student, teacher=teacher, method=w.method, atkd=w.atkd, seed=w.seed)
    return " ".join(shlex.quote(f"{k}={v}") for k, v in meta.items())


def parent(path_kind, index=0, up=1):
    """Param function: the directory `up` levels above input/output file `index`."""

    def get(wildcards, input, output):
        path = (input if path_kind == "input" else output)[index]
        for _ in range(up):
            path = os.path.dirname(path)
        return path

    return get
