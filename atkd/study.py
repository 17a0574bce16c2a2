"""The study as the workflow runs it: a config parsed once into the runs it holds, where each run reads its
teacher from, and the arguments of every job.

`Study(config)` is all the workflow's rules need (workflow/rules/common.smk wraps its methods in
one-line input functions). It knows no Snakemake, so every decision here is unit-tested in Python:

- which distilled students exist (`runs`): every method x its teachers x its variants (with and without
  ATKD) x its seeds;
- which model a run learns from (`teacher_ref`: the teacher, its early-stopped checkpoint, or a teacher
  assistant) and whether that model's logits come from a cache or a live teacher (`distill_plan`);
- the metadata each evaluated model's tidy rows carry (`eval_meta`, `meta_for_dir`);
- the command line of each job (`atkd train`, `atkd evaluate`, ...).

No science here: what a method computes lives in atkd.losses and atkd.train, what it is called with in
the config.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atkd.config import (
    budget_sweep_plan,
    distill_fields,
    method_atkd_options,
    method_teacher_names,
    method_variants,
    seed_count,
)
from atkd.data.world import CLEAN_TRAIN, pretrain_files
from atkd.fsutil import epoch_dir_name
from atkd.losses import parse_spec
from atkd.train.sampling import SamplingConfig, parse_sampling

NO_TEACHER = "none"  # the teacher slot of a run without one (SFT)


@dataclass(frozen=True)
class Run:
    """One distilled student."""

    method: str
    teacher: str  # a teacher name, or NO_TEACHER
    atkd: str  # "off" or "on"
    seed: int

    @property
    def id(self) -> str:
        """Its `run` column in the tidy tables (metrics.csv, doc_scores.csv, runs.csv)."""
        return f"{self.method}/{self.teacher}/{self.atkd}/s{self.seed}"


@dataclass(frozen=True)
class Paths:
    """Where every result of a study goes, under `results` (figures under `figures`)."""

    results: str
    figures: str
    world: str  # the synthetic world, or the real data (`data:`)

    @property
    def tokenizer(self) -> str:
        return f"{self.results}/tokenizer"

    @property
    def teachers(self) -> str:
        return f"{self.results}/models/teachers"

    @property
    def teacher_bases(self) -> str:  # teachers' pre-trained bases (`teacher_pretrain:`)
        return f"{self.results}/models/teacher-bases"

    @property
    def assistants(self) -> str:
        return f"{self.results}/models/assistants"

    @property
    def student_base(self) -> str:
        return f"{self.results}/models/student-base"

    @property
    def caches(self) -> str:
        return f"{self.results}/caches"

    @property
    def generated(self) -> str:
        return f"{self.results}/generated"

    @property
    def runs(self) -> str:
        return f"{self.results}/runs"

    @property
    def logs(self) -> str:
        return f"{self.results}/logs"

    @property
    def bench(self) -> str:  # Snakemake benchmark files: wall and CPU time, memory per job
        return f"{self.results}/benchmarks"

    @property
    def judge_cache(self) -> str:  # every LLM judgement of the study (atkd judge --cache)
        return f"{self.results}/judge_cache.sqlite"

    def run_dir(self, run: Run) -> str:
        return f"{self.runs}/{run.method}/{run.teacher}/{run.atkd}/s{run.seed}"


@dataclass(frozen=True)
class TeacherRef:
    """The model a run learns from: teacher `teacher` itself, its checkpoint after some epochs (the
    early-stopped teacher, `variant` "epoch-E"), or an assistant distilled from it ("ta-A"). Its `key`
    (`T`, `T@epoch-E`, `T@ta-A`) names it in paths and wildcards."""

    teacher: str
    variant: str = ""

    @property
    def key(self) -> str:
        return f"{self.teacher}@{self.variant}" if self.variant else self.teacher

    @classmethod
    def parse(cls, key: str) -> TeacherRef:
        teacher, _, variant = key.partition("@")
        return cls(teacher, variant)

    def model_dir(self, paths: Paths) -> str:
        """The HF directory of the model."""
        if not self.variant:
            return f"{paths.teachers}/{self.teacher}/final"
        if self.variant.startswith("epoch-"):
            return f"{paths.teachers}/{self.teacher}/hf/{self.variant}"
        return f"{paths.assistants}/{self.teacher}/{self.variant.removeprefix('ta-')}/final"

    def done_file(self, paths: Paths) -> str:
        """The file whose existence says the model is complete (its job's declared output)."""
        if self.variant.startswith("ta-"):
            return f"{paths.assistants}/{self.teacher}/{self.variant.removeprefix('ta-')}/train_summary.json"
        return f"{paths.teachers}/{self.teacher}/train_summary.json"


def quote_meta(meta: Mapping[str, Any]) -> str:
    """`key=value` words for `--meta`, shell-quoted."""
    return " ".join(shlex.quote(f"{k}={v}") for k, v in meta.items())


def set_args(**fields: Any) -> str:
    """`--set key=value` arguments for `atkd train`, values as JSON (a subset of YAML), shell-quoted."""
    return " ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in fields.items())


class Study:
    """A study config (checked: atkd.config.check_study) and everything derived from it."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.real_data = "data" in config  # real instruction data (paper profiles), else the world
        results = config["results"]
        self.paths = Paths(
            results, config["figures"], f"{results}/data" if self.real_data else f"{results}/world"
        )
        self.data_seed = config["data"].get("seed", 0) if self.real_data else config["world"]["seed"]
        self.methods: Mapping[str, Mapping[str, Any]] = config["methods"]
        self.teachers: list[str] = list(config["teachers"])
        self.seeds: list[int] = list(config["seeds"])
        # Token probes (`atkd probe`): on by default, over the first `limit` validation records.
        self.probes = {"enabled": True, "limit": 200} | dict(config.get("probes", {}))
        # Loss landscapes (`atkd landscape`, F6) of the students of `methods` x `teachers`, +-ATKD.
        defaults = {"methods": [], "teachers": [], "steps": 11, "span": 1.0, "limit": 100, "seed": 0}
        self.landscape = defaults | dict(config.get("landscape", {}))
        # kd and kd + ATKD at several budgets, resolved for the report (None without a sweep).
        self.budget_sweep = budget_sweep_plan(config)
        # How teachers answer the training prompts for teacher-sampled methods (`atkd generate`).
        generation = {"max_new_tokens": 128, "temperature": 1.0, "batch_size": 64}
        self.generation = generation | dict(config.get("teacher_generation", {}))
        self.student_name = config["student"].get("arch") or config["student"].get("model")

    # ------------------------------------------------------------------------------------------ runs
    def needs_teacher(self, method: str) -> bool:
        return self.methods[method].get("teacher", True)

    def method_teachers(self, method: str) -> list[str]:
        """Every configured teacher unless the method names some (`teachers:`)."""
        return method_teacher_names(self.config, self.methods[method])

    def method_seeds(self, method: str, teacher: str = NO_TEACHER) -> list[int]:
        """All of `seeds`, or the first N (`seeds: N`, or `seeds: {teacher: N}` per teacher)."""
        return self.seeds[: seed_count(self.methods[method], teacher, len(self.seeds))]

    def variants(self, method: str) -> list[str]:
        """The method's runs without and with ATKD (atkd.config.method_variants)."""
        return method_variants(self.methods[method])

    def rule_methods(self) -> dict[str, str]:
        """{method: the user's rule that produces its runs} (`rule:`, from `workflow_plugins`)."""
        return {m: spec["rule"] for m, spec in self.methods.items() if "rule" in spec}

    def trained_method_pattern(self) -> str:
        """The `method` wildcard of the study's own distillation rule: any name but the rule methods'. The
        pattern sits inside the output path's, so a name ends at `/` there (or at the end, alone)."""
        names = "|".join(re.escape(m) for m in self.rule_methods())
        return f"(?!(?:{names})(?:/|$))[A-Za-z0-9_.-]+" if names else "[A-Za-z0-9_.-]+"

    def run_outputs(self, method: str) -> dict[str, str]:
        """What a rule producing `method`'s runs must declare (Snakemake patterns): the run's summary and
        its checkpoint, at the run's usual path, so a rule that leaves either fails at the end of its job
        naming the missing path."""
        pattern = f"{self.paths.runs}/{method}/{{teacher}}/{{variant}}/s{{seed}}"
        return {"summary": f"{pattern}/train_summary.json", "checkpoint": f"{pattern}/final/config.json"}

    def rule_settings(self, method: str, atkd: str) -> dict[str, Any]:
        """What a user's rule may read to train like the study's own runs: the `distill` settings (with the
        method's budget), the +ATKD options when `atkd` is on, the method's own `params`, torch threads."""
        out: dict[str, Any] = {"distill": distill_fields(self.config, method)}
        if atkd == "on":
            out["atkd_options"] = method_atkd_options(self.config, method)
        out["params"] = dict(self.methods[method].get("params", {}))
        if self.config.get("threads"):
            out["threads"] = self.config["threads"]
        return out

    def runs(self) -> list[Run]:
        """Every distilled student of the study, seed by seed."""
        out = []
        for seed in self.seeds:
            for method in self.methods:
                if not self.needs_teacher(method):
                    if seed in self.method_seeds(method):
                        out.append(Run(method, NO_TEACHER, "off", seed))
                    continue
                for teacher in self.method_teachers(method):
                    if seed in self.method_seeds(method, teacher):
                        out += [Run(method, teacher, atkd, seed) for atkd in self.variants(method)]
        return out

    # ------------------------------------------------------------------------------------- teachers
    def teacher_ref(self, method: str, teacher: str) -> TeacherRef:
        """The model `method` learns from when distilled from `teacher`."""
        spec = self.methods[method]
        if "teacher_epochs" in spec:
            return TeacherRef(teacher, epoch_dir_name(spec["teacher_epochs"]))
        if "assistant" in spec:
            return TeacherRef(teacher, f"ta-{spec['assistant']}")
        return TeacherRef(teacher)

    def early_epochs(self, teacher: str) -> list[float]:
        """Epochs at which `teacher` must also be saved, for the early-stopped-teacher methods."""
        return sorted(
            {
                float(spec["teacher_epochs"])
                for method, spec in self.methods.items()
                if "teacher_epochs" in spec
                and self.needs_teacher(method)
                and teacher in self.method_teachers(method)
            }
        )

    def tuned_teachers(self) -> list[str]:
        """The teachers fine-tuned here (`finetune: false` ones are used as they are)."""
        return [t for t in self.teachers if self.config["teachers"][t].get("finetune", True) is not False]

    def teacher_pretrain(self, teacher: str) -> dict[str, Any] | None:
        """Pre-training fields of a teacher built from `arch` (`teacher_pretrain:`, then its own
        `pretrain:`), or None: a teacher given as a checkpoint (`model:`) is already pre-trained."""
        spec = self.config["teachers"][teacher]
        if "arch" not in spec or "teacher_pretrain" not in self.config or self.real_data:
            return None
        return {**self.config["teacher_pretrain"], **spec.get("pretrain", {})}

    # ------------------------------------------------------------------------------- distillation
    def sampling(self, method: str) -> SamplingConfig:
        return parse_sampling(self.methods[method].get("sampling"))

    def cache_enabled(self, method: str | None = None) -> bool:
        """Whether ground-truth batches read a teacher cache: `teacher_cache.enabled`, and for a method its
        own `teacher_cache: false` (a live teacher, e.g. reverse KL under a top-K cache)."""
        on = self.config.get("teacher_cache", {}).get("enabled", True)
        return on and (method is None or self.methods[method].get("teacher_cache", True))

    def cache_flags(self) -> str:
        """`atkd teacher-cache` options from `teacher_cache:` (storage dtype; top K for a sparse cache)."""
        opts = self.config.get("teacher_cache", {})
        topk = opts.get("topk")
        flags = f"--dtype {opts.get('dtype', 'float16')}" + (f" --topk {topk}" if topk else "")
        if topk and opts.get("tail", "bucket") != "bucket":
            flags += f" --tail {opts['tail']} --tail-width {opts.get('tail_width', 0)}"
            flags += f" --tail-eps {opts.get('tail_eps', 0.0)}"
        return flags

    def loss_spec(self, method: str, atkd: str) -> dict[str, Any]:
        """The method's `loss`, or with +ATKD its `atkd_loss` (if set) plus the ATKD split."""
        m = self.methods[method]
        spec = m.get("atkd_loss", m["loss"]) if atkd == "on" else m["loss"]
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        if atkd == "on":
            spec["atkd"] = method_atkd_options(self.config, method)
        return spec

    def distill_plan(self, method: str, teacher: str, atkd: str) -> tuple[dict[str, Any], list[str]]:
        """What a distillation run reads: `atkd train` fields and the files they name (its job's inputs).

        Ground-truth batches read the teacher's logits from a cache; batches from a teacher-generated file
        used for every step read a cache computed on that file; sampled (mixed or on-policy) batches need
        the live teacher."""
        p = self.paths
        loss = self.loss_spec(method, atkd)
        fields: dict[str, Any] = dict(train_data=f"{p.world}/train.jsonl", loss=loss)
        if "stateful" in self.methods[method]:  # e.g. TAID: a registered method around the loss
            fields["stateful"] = self.methods[method]["stateful"]
        inputs = [f"{p.student_base}/train_summary.json", f"{p.world}/manifest.json"]
        if teacher == NO_TEACHER:
            return fields, inputs
        ref = self.teacher_ref(method, teacher)
        sampling = self.sampling(method)
        data, live = "gt", False
        if sampling.source == "teacher":
            generated = f"{p.generated}/{ref.key}/train.jsonl"
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
            if live or not self.cache_enabled(method):
                fields["teacher"] = ref.model_dir(p)
                inputs.append(ref.done_file(p))
            if self.cache_enabled(method) and (not live or sampling.lam < 1):
                fields["teacher_cache"] = f"{p.caches}/{ref.key}/{data}"
                inputs.append(f"{p.caches}/{ref.key}/{data}/meta.json")
        return fields, inputs

    def train_args(self, *sections: Mapping[str, Any], **fixed: Any) -> str:
        """Training sections merged (later wins) with fixed fields, as `atkd train` arguments."""
        fields: dict[str, Any] = {}
        for section in sections:
            fields.update(section)
        fields.update(fixed)
        if "arch" in fields and "tokenizer" not in fields:
            fields["tokenizer"] = self.paths.tokenizer
        return set_args(**fields)

    def train_command(self, rule: str) -> str:
        """`atkd train`, or under the multi-process launcher the `launch` section names for the rule."""
        launcher = self.config.get("launch", {}).get(rule)
        return f"{launcher} -m atkd.cli train" if launcher else "atkd train"

    def distill_args(self, run: Run) -> str:
        fields, _ = self.distill_plan(run.method, run.teacher, run.atkd)
        fixed = dict(
            model=f"{self.paths.student_base}/final",
            output_dir=self.paths.run_dir(run),
            valid_data=f"{self.paths.world}/valid.jsonl",
            seed=int(run.seed),
            threads=self.config["threads"],
            progress=False,
            **fields,
        )
        if self.config.get("plugins"):
            fixed["plugins"] = list(self.config["plugins"])
        # the `distill` section with the method's `train:` overrides and `budget:`
        return self.train_args(distill_fields(self.config, run.method), **fixed)

    # ----------------------------------------------------------------------------- base models
    def world_version(self) -> str:
        """What makes the `world` rule rerun when the package generates a different world: the synthetic
        world's generator version, or "real" for real data (its source and fields are in the command)."""
        if self.real_data:
            return "real"
        from atkd.data.world import WORLD_VERSION

        return f"synthetic-v{WORLD_VERSION}"

    def world_command(self) -> str:
        """`atkd world` (synthetic world) or `atkd data` (real data from the Hub or a file), no log."""
        world = shlex.quote(self.paths.world)
        if self.real_data:
            d = self.config["data"]
            cmd = f"atkd data --source {shlex.quote(d['source'])} --out {world}"
            cmd += f" --n-valid {d.get('n_valid', 500)} --seed {self.data_seed}"
            cmd += f" --split {shlex.quote(d.get('split', 'train'))}"
            if d.get("limit"):
                cmd += f" --limit {d['limit']}"
            if d.get("fields"):
                cmd += " --fields " + " ".join(shlex.quote(f"{k}={v}") for k, v in d["fields"].items())
            return cmd
        w = self.config["world"]
        breaks = w.get("pretrain_line_breaks")
        return (
            f"atkd world --out {world} --seed {w['seed']} --n-train {w['n_train']}"
            f" --n-valid {w['n_valid']} --n-eval {w['n_eval']} --n-entities {w['n_entities']}"
            f" --n-pretrain {w['n_pretrain']} --n-fewshot {w['n_fewshot']}"
            + (f" --n-pretrain-qa {w['n_pretrain_qa']}" if w.get("n_pretrain_qa") else "")
            + (f" --pretrain-line-breaks {breaks}" if breaks else "")
            + (f" --reference-noise {w['reference_noise']}" if w.get("reference_noise") else "")
        )

    @property
    def pretrain_files(self) -> tuple[str, str]:
        """Paths of the world's pre-training text and its held-out part (`.txt`, or `.jsonl` with line
        breaks: atkd.data.world.pretrain_files)."""
        line_breaks = 0.0 if self.real_data else self.config["world"].get("pretrain_line_breaks", 0.0)
        return tuple(f"{self.paths.world}/{name}" for name in pretrain_files(line_breaks))

    def tokenizer_command(self) -> str:
        """Train our BPE on the world (`vocab_size`) or copy a pre-trained model's tokenizer (`model`)."""
        t, out, world = (
            self.config["tokenizer"],
            shlex.quote(self.paths.tokenizer),
            shlex.quote(self.paths.world),
        )
        if "model" in t:
            return f"atkd tokenizer --from-model {shlex.quote(t['model'])} --out {out}"
        # With reference_noise, on the true answers: the same text as the world without noise, so that
        # the noise does not change the tokenizer (nor the pre-trained bases that depend on it).
        noisy = not self.real_data and self.config["world"].get("reference_noise")
        train = CLEAN_TRAIN if noisy else "train.jsonl"
        return (
            f"atkd tokenizer --train {world}/{train} {shlex.quote(self.pretrain_files[0])}"
            f" --vocab-size {t['vocab_size']} --out {out}"
        )

    def teacher_command(self, teacher: str) -> str:
        """A teacher's job: its instruction tuning (`atkd train`), or for a checkpoint used as it is
        (`finetune: false`) its export to a local folder, once (a GGUF file is converted there)."""
        spec = self.config["teachers"][teacher]
        if spec.get("finetune", True) is False:
            model = shlex.quote(spec["model"])
            early = " ".join(f"{e:g}" for e in self.early_epochs(teacher))
            early = f" --early-epochs {early}" if early else ""
            return f"atkd export-model --model {model}{early} --out {self.paths.teachers}/{teacher}"
        return f"{self.train_command('teacher')} {self.teacher_train_args(teacher)}"

    def teacher_references(self, teacher: str) -> str:
        """The world file a teacher is instruction-tuned on: train.jsonl, or with `references: clean` the
        true answers of its records (train_clean.jsonl, written when the world has reference_noise)."""
        clean = self.config["teachers"][teacher].get("references", "world") == "clean"
        return CLEAN_TRAIN if clean else "train.jsonl"

    def teacher_train_args(self, teacher: str) -> str:
        """`atkd train` arguments of a teacher's instruction tuning, from its pre-trained base if any."""
        p = self.paths
        spec = {
            k: v
            for k, v in self.config["teachers"][teacher].items()
            if k not in ("pretrain", "finetune", "references")
        }
        if self.teacher_pretrain(teacher):
            spec = {k: v for k, v in spec.items() if k != "arch"}
            spec |= dict(model=f"{p.teacher_bases}/{teacher}/final", tokenizer=p.tokenizer)
        early = self.early_epochs(teacher)
        extra = {"save_hf_at_epochs": early} if early else {}
        return self.train_args(
            self.config["teacher_train"],
            spec,
            output_dir=f"{p.teachers}/{teacher}",
            train_data=f"{p.world}/{self.teacher_references(teacher)}",
            valid_data=f"{p.world}/valid.jsonl",
            seed=self.data_seed,
            threads=self.config["threads"],
            progress=False,
            **extra,
        )

    def teacher_base_args(self, teacher: str) -> str:
        """`atkd train` arguments of a teacher's pre-training on the world's plain text."""
        p = self.paths
        return self.train_args(
            self.teacher_pretrain(teacher) or {},
            arch=self.config["teachers"][teacher]["arch"],
            output_dir=f"{p.teacher_bases}/{teacher}",
            train_data=self.pretrain_files[0],
            valid_data=self.pretrain_files[1],
            seed=self.data_seed,
            threads=self.config["threads"],
            progress=False,
        )

    def student_base_command(self) -> str:
        """The student's base: pre-trained here on the world's plain text, or a checkpoint used as it is
        (`pretrained: true`, the study's setting; `layers:` keeps a subset of its layers)."""
        s = dict(self.config["student"])
        base = self.paths.student_base
        if s.pop("pretrained", False):
            layers = f" --layers {','.join(str(i) for i in s['layers'])}" if "layers" in s else ""
            return f"atkd export-model --model {shlex.quote(s['model'])}{layers} --out {shlex.quote(base)}"
        args = self.train_args(
            s,
            output_dir=base,
            train_data=self.pretrain_files[0],
            # held-out plain text: the pre-training loss, as the teachers' bases log it
            **({} if self.real_data else {"valid_data": self.pretrain_files[1]}),
            seed=self.data_seed,
            threads=self.config["threads"],
            progress=False,
        )
        return f"atkd train {args}"

    # ------------------------------------------------------------------------------- evaluation
    def evaluated_dirs(self) -> list[str]:
        """Every evaluated model's directory: the students, the teachers, and the student base
        (`evaluation.student_base: true`)."""
        p = self.paths
        dirs = [p.run_dir(r) for r in self.runs()] + [f"{p.teachers}/{t}" for t in self.teachers]
        return dirs + ([p.student_base] if self.config["evaluation"].get("student_base") else [])

    def evaluation_stages(self) -> list[str]:
        """`eval` (lm-eval), plus `judge` with an LLM judge."""
        return ["eval", "judge"] if self.config["evaluation"].get("judge") else ["eval"]

    def eval_args(self) -> str:
        """The `atkd evaluate` options every evaluated model shares."""
        e = self.config["evaluation"]
        args = f"--suites {' '.join(e['suites'])} --max-new-tokens {e['max_new_tokens']}"
        args += f" --batch-size {e['batch_size']}"
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
            args += " --instruct-set " + " ".join(
                shlex.quote(f"{k}={v}") for k, v in e["instruct_sets"].items()
            )
        return args

    def run_meta(self, run: Run) -> dict[str, Any]:
        """The tidy-row columns of a distilled student."""
        teacher = "" if run.teacher == NO_TEACHER else run.teacher
        return dict(
            run=run.id,
            student=self.student_name,
            teacher=teacher,
            method=run.method,
            atkd=run.atkd,
            seed=run.seed,
        )

    def teacher_meta(self, teacher: str) -> dict[str, Any]:
        """A teacher's own rows: method `teacher`, the teacher as both student and teacher."""
        return dict(
            run=f"teacher/{teacher}",
            student=teacher,
            teacher=teacher,
            method="teacher",
            atkd="off",
            seed=self.data_seed,
        )

    def base_meta(self) -> dict[str, Any]:
        """The student base's own rows: method `base` (no teacher; where every student starts)."""
        return dict(
            run="base", student=self.student_name, teacher="", method="base", atkd="off", seed=self.data_seed
        )

    def meta_for_dir(self, model_dir: str) -> dict[str, Any]:
        """The tidy-row columns of any evaluated model, from its directory (what `atkd judge` labels)."""
        prefix = f"{self.paths.runs}/"
        if model_dir.startswith(prefix):
            method, teacher, atkd, seed = model_dir[len(prefix) :].split("/")
            return self.run_meta(Run(method, teacher, atkd, int(seed.removeprefix("s"))))
        if model_dir == self.paths.student_base:
            return self.base_meta()
        return self.teacher_meta(os.path.basename(model_dir))

    def judge_args(self, model_dir: str) -> str:
        """`atkd judge` options: endpoint, model, key variable, limits, the instruct sets, the meta."""
        j = self.config["evaluation"]["judge"]
        args = f"--url {shlex.quote(j['url'])} --model {shlex.quote(j['model'])}"
        args += f" --api-key-env {shlex.quote(j.get('api_key_env', 'OPENAI_API_KEY'))}"
        for key, flag in (("rpm", "--rpm"), ("max_retries", "--max-retries"), ("timeout", "--timeout")):
            if key in j:
                args += f" {flag} {j[key]}"
        sets = list(self.config["evaluation"].get("instruct_sets", {}))
        if sets:
            args += " --tasks {}".format(" ".join(shlex.quote(s) for s in sets))
        # one cache for every judged model: an answer several students share is paid for once
        args += f" --cache {shlex.quote(self.paths.judge_cache)}"
        return f"{args} --meta {quote_meta(self.meta_for_dir(model_dir))}"

    # ------------------------------------------------------------------------- probes and report
    def probe_dirs(self) -> list[str]:
        return [f"{self.paths.results}/probes/{t}" for t in self.teachers] if self.probes["enabled"] else []

    def probe_data(self) -> str:
        """The files a probe reads: `probes.data`, else the world's validation records."""
        return " ".join(self.probes.get("data") or [f"{self.paths.world}/valid.jsonl"])

    def sparse_ks(self) -> list[int]:
        """Top-K sizes whose accuracy the probes measure: `probes.sparse_k`, else the sparse cache's K."""
        topk = self.config.get("teacher_cache", {}).get("topk")
        return list(self.probes.get("sparse_k", [topk] if topk else []))

    def sparse_files(self) -> list[str]:
        return [f"{d}/sparse.csv" for d in self.probe_dirs()] if self.sparse_ks() else []

    def landscape_dirs(self) -> list[str]:
        """One landscape per run selected by the `landscape:` section (its methods, teachers, seeds)."""
        chosen = set(self.landscape["methods"])
        teachers = set(self.landscape["teachers"]) or set(self.teachers)
        seeds = self.seeds[: self.landscape.get("seeds", len(self.seeds))]
        return [
            f"{self.paths.results}/landscape/{r.method}/{r.teacher}/{r.atkd}/s{r.seed}"
            for r in self.runs()
            if r.method in chosen and r.teacher in teachers and r.seed in seeds
        ]

    def run_summaries(self) -> dict[str, str]:
        """{run id: train_summary.json} of every student: runs.csv's objective keys come from them."""
        return {r.id: f"{self.paths.run_dir(r)}/train_summary.json" for r in self.runs()}

    def resources_for(self, rule: str) -> dict[str, Any]:
        """Per-rule resources from the config (mem_mb, runtime in minutes, gpus, ...)."""
        res = dict(self.config.get("resources", {}).get("default", {}))
        res.update(self.config.get("resources", {}).get(rule, {}))
        return res
