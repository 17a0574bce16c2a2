# Shared glue: paths, the enumeration of runs, and turning config sections into `atkd` arguments.
# No science here: what a method computes is in atkd/, what it is called with is in the config.

import json
import os
import shlex

from atkd.config import budget_sweep_plan, distill_fields, method_atkd_options, seed_count
from atkd.losses import parse_spec
from atkd.fsutil import epoch_dir_name
from atkd.train.sampling import parse_sampling

RESULTS = config["results"]
FIGURES = config["figures"]
# The training world: the synthetic one (`world:`) or real instruction data (`data:`, paper profiles).
REAL_DATA = "data" in config
WORLD = f"{RESULTS}/data" if REAL_DATA else f"{RESULTS}/world"
DATA_SEED = config["data"].get("seed", 0) if REAL_DATA else config["world"]["seed"]
TOKENIZER = f"{RESULTS}/tokenizer"
TEACHER_DIR = f"{RESULTS}/models/teachers"
ASSISTANT_DIR = f"{RESULTS}/models/assistants"
CACHE_DIR = f"{RESULTS}/caches"
GENERATED_DIR = f"{RESULTS}/generated"
STUDENT_BASE = f"{RESULTS}/models/student-base"
TEACHER_BASE_DIR = f"{RESULTS}/models/teacher-bases"  # teachers' pre-trained bases (`teacher_pretrain:`)
RUNS = f"{RESULTS}/runs"
LOGS = f"{RESULTS}/logs"
JUDGE_CACHE = f"{RESULTS}/judge_cache.sqlite"  # every LLM judgement of the study (atkd judge --cache)
BENCH = f"{RESULTS}/benchmarks"  # Snakemake benchmark files: wall and CPU time, memory per job
# Outside instruction sets (resolved to absolute paths by the Snakefile): inputs, so an edit re-evaluates.
INSTRUCT_SET_FILES = list(config["evaluation"].get("instruct_sets", {}).values())
NO_TEACHER = "none"
# Token probes (`atkd probe`): on by default, over the first `limit` validation records.
PROBES = {"enabled": True, "limit": 200} | config.get("probes", {})
# Loss landscapes (`atkd landscape`, F6) of the students of `methods` x `teachers`, with and without ATKD.
LANDSCAPE = {"methods": [], "teachers": [], "steps": 11, "span": 1.0, "limit": 100, "seed": 0} | config.get(
    "landscape", {}
)
# kd and kd + ATKD at several distillation budgets (`budget_sweep:`), resolved for the report:
# {teacher, unit: epochs|steps, members: {method: budget}}; None without one.
BUDGET_SWEEP = budget_sweep_plan(config)
# How teachers answer the training prompts for teacher-sampled methods (`atkd generate`).
GENERATION = {"max_new_tokens": 128, "temperature": 1.0, "batch_size": 64} | config.get("teacher_generation", {})
ENV = "../envs/atkd.yaml"
# Jobs off the critical path (students, their evaluations and landscapes) run at a lower CPU priority, so
# that with more jobs than cores (`--cores 8` on a 2-core machine) the teachers every student waits for get
# the CPU first. Only the OS scheduler's share changes; on a cluster each job has its own cores.
BACKGROUND = "nice -n 10"

wildcard_constraints:
    method="[A-Za-z0-9_.-]+",
    teacher="[A-Za-z0-9_.-]+",
    atkd="on|off",
    seed="[0-9]+",
    key="[A-Za-z0-9_.@-]+",
    data="gt|gen",
    assistant="[A-Za-z0-9_.-]+",


def needs_teacher(method):
    return config["methods"][method].get("teacher", True)


def method_teachers(method):
    """The teachers a method is run with: every configured teacher unless it names some (`teachers:`)."""
    chosen = config["methods"][method].get("teachers", "all")
    return list(config["teachers"]) if chosen == "all" else list(chosen)


def method_seeds(method, teacher=NO_TEACHER):
    """The seeds a method runs with at `teacher`: all of `seeds`, or the first N (`seeds: N` in the
    method, or `seeds: {teacher: N}` per teacher; a teacher it does not name gets every seed)."""
    return config["seeds"][: seed_count(config["methods"][method], teacher, len(config["seeds"]))]


def runs():
    """Every distilled student of the study: (method, teacher, atkd, seed)."""
    out = []
    for seed in config["seeds"]:
        for method, spec in config["methods"].items():
            if not needs_teacher(method):
                if seed in method_seeds(method):
                    out.append((method, NO_TEACHER, "off", seed))
                continue
            for teacher in method_teachers(method):
                if seed not in method_seeds(method, teacher):
                    continue
                for atkd in spec.get("atkd", ["off", "on"]):
                    out.append((method, teacher, atkd, seed))
    return out


# A "teacher key" names the model a run learns from: `T` (teacher T), `T@epoch-E` (T's checkpoint after
# E epochs: the early-stopped teacher) or `T@ta-A` (assistant A, itself distilled from T).
def teacher_key(method, teacher):
    spec = config["methods"][method]
    if "teacher_epochs" in spec:
        return f"{teacher}@{epoch_dir_name(spec['teacher_epochs'])}"
    if "assistant" in spec:
        return f"{teacher}@ta-{spec['assistant']}"
    return teacher


def teacher_model(key):
    """The HF directory of a teacher key."""
    base, _, variant = key.partition("@")
    if not variant:
        return f"{TEACHER_DIR}/{base}/final"
    if variant.startswith("epoch-"):
        return f"{TEACHER_DIR}/{base}/hf/{variant}"
    return f"{ASSISTANT_DIR}/{base}/{variant.removeprefix('ta-')}/final"


def teacher_done(key):
    """The file whose existence says the teacher key's model is complete (the job's declared output)."""
    base, _, variant = key.partition("@")
    if variant.startswith("ta-"):
        return f"{ASSISTANT_DIR}/{base}/{variant.removeprefix('ta-')}/train_summary.json"
    return f"{TEACHER_DIR}/{base}/train_summary.json"


def early_epochs(teacher):
    """Epochs at which teacher `teacher` must also be saved, for the early-stopped-teacher methods."""
    return sorted(
        {
            float(spec["teacher_epochs"])
            for method, spec in config["methods"].items()
            if "teacher_epochs" in spec and needs_teacher(method) and teacher in method_teachers(method)
        }
    )


def sampling_of(method):
    return parse_sampling(config["methods"][method].get("sampling"))


def cache_enabled(method=None):
    """Whether ground-truth batches read a teacher cache: `teacher_cache.enabled`, and for a method its own
    `teacher_cache: false` (a live teacher, e.g. reverse KL under a top-K cache: docs/losses.md)."""
    on = config.get("teacher_cache", {}).get("enabled", True)
    return on and (method is None or config["methods"][method].get("teacher_cache", True))


def cache_flags(wildcards):
    """`atkd teacher-cache` options from `teacher_cache:` (storage dtype; top K for a sparse cache)."""
    opts = config.get("teacher_cache", {})
    topk = opts.get("topk")
    return f"--dtype {opts.get('dtype', 'float16')}" + (f" --topk {topk}" if topk else "")


def distill_plan(method, teacher, atkd):
    """What a distillation run reads: `atkd train` fields and the files they name (its rule's inputs).

    Ground-truth batches read the teacher's logits from a cache; batches from a teacher-generated file
    that is used for every step read a cache computed on that file; sampled (mixed or on-policy) batches
    need the live teacher."""
    loss = loss_spec(method, atkd)
    fields = dict(train_data=f"{WORLD}/train.jsonl", loss=loss)
    if "stateful" in config["methods"][method]:  # e.g. TAID: a registered method around the loss
        fields["stateful"] = config["methods"][method]["stateful"]
    inputs = [f"{STUDENT_BASE}/train_summary.json", f"{WORLD}/manifest.json"]
    if teacher == NO_TEACHER:
        return fields, inputs
    key = teacher_key(method, teacher)
    sampling = sampling_of(method)
    data = "gt"
    live = False
    if sampling.source == "teacher":
        generated = f"{GENERATED_DIR}/{key}/train.jsonl"
        inputs.append(generated)
        if sampling.lam == 1:  # every batch comes from the file: it is this run's training data
            fields["train_data"], data = generated, "gen"
        elif sampling.mixes:
            fields |= dict(sampling=sampling.to_dict(), teacher_data=generated)
            live = True
    elif sampling.mixes:
        fields["sampling"] = sampling.to_dict()
        live = True
    if parse_spec(loss).needs_teacher:
        if live or not cache_enabled(method):
            fields["teacher"] = teacher_model(key)
            inputs.append(teacher_done(key))
        if cache_enabled(method) and (not live or sampling.lam < 1):
            fields["teacher_cache"] = f"{CACHE_DIR}/{key}/{data}"
            inputs.append(f"{CACHE_DIR}/{key}/{data}/meta.json")
    return fields, inputs


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
    """The loss of a run: the method's `loss`, or with +ATKD its `atkd_loss` (if set) plus the ATKD split."""
    m = config["methods"][method]
    spec = m.get("atkd_loss", m["loss"]) if atkd == "on" else m["loss"]
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if atkd == "on":
        spec["atkd"] = method_atkd_options(config, method)
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


def distill_args(w):
    fields, _ = distill_plan(w.method, w.teacher, w.atkd)
    fixed = dict(
        model=f"{STUDENT_BASE}/final",
        output_dir=run_dir(w.method, w.teacher, w.atkd, w.seed),
        valid_data=f"{WORLD}/valid.jsonl",
        seed=int(w.seed),
        threads=config["threads"],
        progress=False,
        **fields,
    )
    if config.get("plugins"):
        fixed["plugins"] = list(config["plugins"])
    # the `distill` section with the method's `train:` overrides and `budget:` (atkd.config.distill_fields)
    return train_args(distill_fields(config, w.method), **fixed)


def distill_inputs(w):
    return distill_plan(w.method, w.teacher, w.atkd)[1]


def probe_data(w):
    """The files a probe reads: `probes.data`, else the world's validation records."""
    return " ".join(PROBES.get("data") or [f"{WORLD}/valid.jsonl"])


def sparse_ks():
    """The top-K sizes whose accuracy the probes measure: `probes.sparse_k`, else the sparse cache's K
    (none without a sparse cache)."""
    topk = config.get("teacher_cache", {}).get("topk")
    return PROBES.get("sparse_k", [topk] if topk else [])


def sparse_files():
    """Every teacher's sparse-cache accuracy table (when probes run and a K is set)."""
    return [f"{d}/sparse.csv" for d in probe_dirs()] if sparse_ks() else []


def probe_dirs():
    return [f"{RESULTS}/probes/{t}" for t in config["teachers"]] if PROBES["enabled"] else []


def landscape_dirs():
    """One landscape per (method, teacher, atkd, seed) run selected by the `landscape:` section."""
    chosen = set(LANDSCAPE["methods"])
    teachers = set(LANDSCAPE["teachers"]) or set(config["teachers"])
    seeds = config["seeds"][: LANDSCAPE.get("seeds", len(config["seeds"]))]  # `seeds: N`: the first N
    return [
        f"{RESULTS}/landscape/{m}/{t}/{a}/s{s}"
        for m, t, a, s in runs()
        if m in chosen and t in teachers and s in seeds
    ]


def eval_args():
    """The `atkd evaluate` options every evaluated model shares (suites, limit, budgets, few-shot counts)."""
    e = config["evaluation"]
    args = f"--suites {' '.join(e['suites'])} --max-new-tokens {e['max_new_tokens']} --batch-size {e['batch_size']}"
    if e.get("limit"):
        args += f" --limit {e['limit']}"
    if e.get("num_fewshot"):
        args += " --num-fewshot " + " ".join(f"{k}={v}" for k, v in e["num_fewshot"].items())
    if e.get("sampling"):
        seeds = " ".join(str(x) for x in e["sampling"]["seeds"])
        args += f" --temperature {e['sampling'].get('temperature', 1.0)} --sample-seeds {seeds}"
    if e.get("benchmarks"):
        items = [f"{k}={b['task']}:{b.get('num_fewshot', 0)}" for k, b in e["benchmarks"].items()]
        args += " --benchmark " + " ".join(shlex.quote(i) for i in items)
    if e.get("instruct_sets"):
        args += " --instruct-set " + " ".join(shlex.quote(f"{k}={v}") for k, v in e["instruct_sets"].items())
    return args


def teacher_meta(w):
    """Rows of a teacher's own evaluation: method `teacher`, the teacher as both student and teacher."""
    seed = DATA_SEED
    meta = dict(run=f"teacher/{w.teacher}", student=w.teacher, teacher=w.teacher, method="teacher", atkd="off")
    return " ".join(shlex.quote(f"{k}={v}") for k, v in {**meta, "seed": seed}.items())


def student_base_meta():
    """Rows of the student base's own evaluation: method `base` (no teacher; every student's start)."""
    student = config["student"].get("arch") or config["student"].get("model")
    meta = dict(run="base", student=student, teacher="", method="base", atkd="off", seed=DATA_SEED)
    return " ".join(shlex.quote(f"{k}={v}") for k, v in meta.items())


def eval_meta(w):
    student = config["student"].get("arch") or config["student"].get("model")
    teacher = "" if w.teacher == NO_TEACHER else w.teacher
    run = run_id(w.method, w.teacher, w.atkd, w.seed)
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


def world_command():
    """`atkd world` (synthetic world) or `atkd data` (real data from the Hub or a file), without the log."""
    if REAL_DATA:
        d = config["data"]
        cmd = f"atkd data --source {shlex.quote(d['source'])} --out {shlex.quote(WORLD)}"
        cmd += f" --n-valid {d.get('n_valid', 500)} --seed {DATA_SEED} --split {shlex.quote(d.get('split', 'train'))}"
        if d.get("limit"):
            cmd += f" --limit {d['limit']}"
        if d.get("fields"):
            cmd += " --fields " + " ".join(shlex.quote(f"{k}={v}") for k, v in d["fields"].items())
        return cmd
    w = config["world"]
    return (
        f"atkd world --out {shlex.quote(WORLD)} --seed {w['seed']} --n-train {w['n_train']}"
        f" --n-valid {w['n_valid']} --n-eval {w['n_eval']} --n-entities {w['n_entities']}"
        f" --n-pretrain {w['n_pretrain']} --n-fewshot {w['n_fewshot']}"
    )


def tokenizer_command():
    """Train our BPE on the world (`vocab_size`) or copy a pre-trained model's tokenizer (`model`)."""
    t = config["tokenizer"]
    if "model" in t:
        return f"atkd tokenizer --from-model {shlex.quote(t['model'])} --out {shlex.quote(TOKENIZER)}"
    return (
        f"atkd tokenizer --train {shlex.quote(WORLD)}/train.jsonl {shlex.quote(WORLD)}/pretrain.txt"
        f" --vocab-size {t['vocab_size']} --out {shlex.quote(TOKENIZER)}"
    )


def teacher_pretrain(teacher):
    """Pre-training fields of a teacher built from `arch` (`teacher_pretrain:`, then the teacher's own
    `pretrain:`), or None: a teacher given as a checkpoint (`model:`) is already pre-trained."""
    spec = config["teachers"][teacher]
    if "arch" not in spec or "teacher_pretrain" not in config or REAL_DATA:
        return None
    return {**config["teacher_pretrain"], **spec.get("pretrain", {})}


def teacher_base_inputs(w):
    return [f"{TEACHER_BASE_DIR}/{w.teacher}/train_summary.json"] if teacher_pretrain(w.teacher) else []


def tuned_teachers():
    """The teachers fine-tuned here (the others, `finetune: false`, are used as they are: no curves)."""
    return [t for t, spec in config["teachers"].items() if spec.get("finetune", True) is not False]


def teacher_command(w):
    """A teacher's job: its instruction tuning (`atkd train`), or, for a checkpoint used as it is
    (`finetune: false`: an instruction-tuned model), its export to a local folder once (a GGUF file is
    converted there, so later jobs load it quickly)."""
    spec = config["teachers"][w.teacher]
    if spec.get("finetune", True) is False:
        return f"atkd export-model --model {shlex.quote(spec['model'])} --out {TEACHER_DIR}/{w.teacher}"
    return f"{train_command('teacher')} {teacher_train_args(w)}"


def teacher_train_args(w):
    """`atkd train` arguments of a teacher's instruction tuning, from its pre-trained base if it has one."""
    spec = {k: v for k, v in config["teachers"][w.teacher].items() if k not in ("pretrain", "finetune")}
    if teacher_pretrain(w.teacher):
        spec = {k: v for k, v in spec.items() if k != "arch"}
        spec |= dict(model=f"{TEACHER_BASE_DIR}/{w.teacher}/final", tokenizer=TOKENIZER)
    extra = {"save_hf_at_epochs": early_epochs(w.teacher)} if early_epochs(w.teacher) else {}
    return train_args(
        config["teacher_train"],
        spec,
        output_dir=f"{TEACHER_DIR}/{w.teacher}",
        train_data=f"{WORLD}/train.jsonl",
        valid_data=f"{WORLD}/valid.jsonl",
        seed=DATA_SEED,
        threads=config["threads"],
        progress=False,
        **extra,
    )


def teacher_base_args(w):
    """`atkd train` arguments of a teacher's pre-training on the world's plain text."""
    return train_args(
        teacher_pretrain(w.teacher),
        arch=config["teachers"][w.teacher]["arch"],
        output_dir=f"{TEACHER_BASE_DIR}/{w.teacher}",
        train_data=f"{WORLD}/pretrain.txt",
        valid_data=f"{WORLD}/pretrain_valid.txt",
        seed=DATA_SEED,
        threads=config["threads"],
        progress=False,
    )


def student_base_command():
    """The student's base model: pre-trained here on the world's plain text, or a pre-trained checkpoint
    used as it is (`student: {model: ..., pretrained: true}`, the study's setting)."""
    s = dict(config["student"])
    if s.pop("pretrained", False):
        layers = f" --layers {','.join(str(i) for i in s['layers'])}" if "layers" in s else ""
        return f"atkd export-model --model {shlex.quote(s['model'])}{layers} --out {shlex.quote(STUDENT_BASE)}"
    args = train_args(
        s,
        output_dir=STUDENT_BASE,
        train_data=f"{WORLD}/pretrain.txt",
        # held-out plain text: the pre-training loss, as the teachers' bases log it
        **({} if REAL_DATA else {"valid_data": f"{WORLD}/pretrain_valid.txt"}),
        seed=DATA_SEED,
        threads=config["threads"],
        progress=False,
    )
    return f"atkd train {args}"


def evaluated_dirs():
    """Every evaluated model's directory: the distilled students, the teachers, and the student base
    (`evaluation.student_base: true`: where every student starts)."""
    dirs = [run_dir(*r) for r in runs()] + [f"{TEACHER_DIR}/{t}" for t in config["teachers"]]
    return dirs + ([STUDENT_BASE] if config["evaluation"].get("student_base") else [])


def evaluation_stages():
    """`eval` (lm-eval: suites, instruct sets by Rouge-L, benchmarks), plus `judge` with an LLM judge."""
    return ["eval", "judge"] if config["evaluation"].get("judge") else ["eval"]


def judge_args(w):
    """`atkd judge` options: endpoint, model, key variable, limits, the instruct sets, the run's meta."""
    j = config["evaluation"]["judge"]
    args = f"--url {shlex.quote(j['url'])} --model {shlex.quote(j['model'])}"
    args += f" --api-key-env {shlex.quote(j.get('api_key_env', 'OPENAI_API_KEY'))}"
    for key, flag in (("rpm", "--rpm"), ("max_retries", "--max-retries"), ("timeout", "--timeout")):
        if key in j:
            args += f" {flag} {j[key]}"
    sets = list(config["evaluation"].get("instruct_sets", {}))
    if sets:
        args += " --tasks {}".format(" ".join(shlex.quote(s) for s in sets))
    # one cache for every judged model: an answer several students share (identical objectives) is paid once
    args += f" --cache {shlex.quote(JUDGE_CACHE)}"
    return f"{args} --meta {judge_meta(w.model_dir)}"


def judge_meta(model_dir):
    """The tidy-row columns of a judged model, the same as its `atkd evaluate` rows."""
    prefix = f"{RUNS}/"
    if model_dir.startswith(prefix):
        method, teacher, atkd, seed = model_dir[len(prefix) :].split("/")
        student = config["student"].get("arch") or config["student"].get("model")
        meta = dict(
            run=f"{method}/{teacher}/{atkd}/{seed}",
            student=student,
            teacher="" if teacher == NO_TEACHER else teacher,
            method=method,
            atkd=atkd,
            seed=seed.removeprefix("s"),
        )
    else:
        teacher = os.path.basename(model_dir)
        meta = dict(run=f"teacher/{teacher}", student=teacher, teacher=teacher, method="teacher", atkd="off")
        meta["seed"] = DATA_SEED
    return " ".join(shlex.quote(f"{k}={v}") for k, v in meta.items())


def train_command(rule_name):
    """`atkd train`, or under the multi-process launcher the `launch` section names for it (e.g.
    `{distill: "torchrun --standalone --nproc_per_node 4"}`: one process per GPU, data parallel)."""
    launcher = config.get("launch", {}).get(rule_name)
    return f"{launcher} -m atkd.cli train" if launcher else "atkd train"


def run_id(method, teacher, atkd, seed):
    """A distilled student's `run` column in the tidy tables (metrics.csv, doc_scores.csv, runs.csv)."""
    return f"{method}/{teacher}/{atkd}/s{seed}"


def doc_score_files():
    """Every evaluated model's per-document scores (`atkd evaluate` writes them next to metrics.csv)."""
    return [f"{d}/eval/doc_scores.csv" for d in evaluated_dirs()]


def run_summaries():
    """{run id: train_summary.json} of every distilled student: runs.csv's objective keys come from them."""
    return {run_id(*r): f"{run_dir(*r)}/train_summary.json" for r in runs()}
