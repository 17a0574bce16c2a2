"""Evaluate a model on the world's suites through lm-evaluation-harness, in-process, into tidy files.

How a task gets its data: the committed YAMLs in `atkd/eval/tasks/` are one template per task kind
(generation, multiple_choice) whose `custom_dataset` is `utils.load_suite`. For each run,
`evaluate` writes `<out>/tasks/atkd_<suite>.yaml`: `include:` of the kind's template plus the task name,
`dataset_kwargs` (the absolute suite and few-shot paths, which lm-eval passes to `load_suite`), the
few-shot count and the generation settings. A TaskManager indexes only that folder. So the run folder
records exactly what was evaluated, and `lm_eval --include_path <out>/tasks --tasks atkd_<suite>` repeats
it outside Python. (Why `custom_dataset` and not `dataset_path: json`: records are read by the project's
strict JSONL reader, so a bad line fails with file:line, and the nested, per-record different `judge` /
`answer_dist` fields travel as JSON text instead of going through Arrow's schema inference.)

Outputs in `out_dir`, each written atomically (temp file + os.replace), `metrics.csv` last, so its presence
means the run finished:
    tasks/atkd_<suite>.yaml   the run's task configs
    generations.jsonl         per document: task, id, prompt (exactly what the model saw), answer,
                              reference, scores
    doc_scores.csv            per document: [meta columns...], task, doc, metric, value for the metrics
                              that may score a task (`doc_score_rows`; their mean is metrics.csv's value)
    lm_eval_results.json      lm-eval's aggregate results and task configs (provenance)
    metrics.csv               tidy rows: [meta columns...], task, metric, value, n
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from atkd.data.jsonl import dumps_jsonl
from atkd.data.suites import GENERATION_SUITES, SUITE_NAMES, UNDERSTANDING_SUITES
from atkd.fsutil import atomic_write_text

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
TASK_PREFIX = "atkd_"
# Task kind of every suite: the template YAML it uses.
SUITE_KIND: dict[str, str] = {
    **{name: "generation" for name in GENERATION_SUITES},
    "mmlu": "multiple_choice",
    "drop": "multiple_choice",
    "bbh": "multiple_choice",
}
# The one number per suite that tables report (the others are extra rows of metrics.csv).
PRIMARY_METRIC: dict[str, str] = {
    "generation": "judge_ratio",
    "multiple_choice": "acc_norm",
}
# The metrics that may score a task in the report's tables, in the order the report prefers them when
# the config does not say (atkd.report.tables): the study's judge ratio (the synthetic world's
# programmatic judge, or the LLM judge on real instruction sets), then accuracy, exact match, Rouge-L.
# `doc_scores.csv` holds the per-document scores of each of these that a task has.
PRIMARY_PREFERENCE = ("judge_ratio", "llm_judge_ratio", "acc_norm", "acc", "exact_match", "rougeL")
METRIC_COLUMNS = ("task", "metric", "value", "n")
DOC_COLUMNS = ("task", "doc", "metric", "value")
DEFAULT_MAX_NEW_TOKENS = 256  # the study's greedy budget
DEFAULT_FEWSHOT_SEED = 1234  # lm-eval's default; fixed so that few-shot prompts do not change with `seed`


def primary_metric(suite: str) -> str:
    """The metric that stands for `suite` in tables (judge ratio or accuracy)."""
    return PRIMARY_METRIC[SUITE_KIND[suite]]


def validate_suites(suites: Sequence[str]) -> list[str]:
    """The suites in order, without duplicates; unknown names raise ValueError listing the valid ones."""
    if isinstance(suites, str):
        suites = [suites]
    missing_kind = [s for s in SUITE_NAMES if s not in SUITE_KIND]
    if missing_kind:  # a suite added to atkd.data.suites without an evaluation kind here
        raise RuntimeError(f"suites without an evaluation task kind: {missing_kind}")
    unknown = [s for s in suites if s not in SUITE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown suite(s) {', '.join(map(repr, unknown))}; valid suites: {', '.join(SUITE_NAMES)}"
        )
    if not suites:
        raise ValueError(f"no suites given; valid suites: {', '.join(SUITE_NAMES)}")
    return list(dict.fromkeys(suites))


def suite_files(world_dir: str | Path, suite: str) -> tuple[Path, Path | None]:
    """(test file, few-shot pool or None) of a suite in a world directory; raises if a file is missing."""
    root = Path(world_dir).resolve() / "suites"
    test = root / f"{suite}.jsonl"
    fewshot = root / f"{suite}.fewshot.jsonl" if SUITE_KIND[suite] != "generation" else None
    for path in (test, fewshot):
        if path is not None and not path.is_file():
            raise FileNotFoundError(
                f"suite file not found: {path} (is {world_dir} a world made by `atkd world`?)"
            )
    return test, fewshot


def _template(kind: str) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(TASKS_DIR / f"{kind}.yaml", resolve_func=False)


def task_config(
    suite: str,
    world_dir: str | Path,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = 0.0,
    num_fewshot: int | None = None,
) -> dict[str, Any]:
    """The run-time task YAML of one suite (as a dict): the kind's template, the data paths, the few-shot
    count (`num_fewshot`, default the suite's own from `atkd.data.suites`), and the generation settings.

    `max_new_tokens` caps generation suites; `temperature` > 0 samples them (MiniLLM/DistiLLM protocol).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    kind = SUITE_KIND[suite]
    if num_fewshot is not None and (kind == "generation" or num_fewshot < 0):
        raise ValueError(
            f"num_fewshot for {suite!r}: only understanding suites take few-shot examples, as a count >= 0"
            f" (got {num_fewshot})"
        )
    test, fewshot = suite_files(world_dir, suite)
    cfg: dict[str, Any] = {
        "include": str(TASKS_DIR / f"{kind}.yaml"),
        "task": TASK_PREFIX + suite,
        "dataset_kwargs": {"path": str(test), "kind": kind},
    }
    if fewshot is not None:
        cfg["dataset_kwargs"]["fewshot_path"] = str(fewshot)
    if kind != "generation":
        shots = UNDERSTANDING_SUITES[suite]["num_fewshot"] if num_fewshot is None else num_fewshot
        cfg["num_fewshot"] = int(shots)
    if kind != "multiple_choice":
        gen = dict(_template(kind)["generation_kwargs"])
        gen["max_gen_toks"] = (
            min(int(gen["max_gen_toks"]), max_new_tokens) if kind != "generation" else max_new_tokens
        )
        if kind == "generation" and temperature > 0:
            gen.update(do_sample=True, temperature=float(temperature))
        cfg["generation_kwargs"] = gen
    return cfg


_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_GLOB_CHARS = re.compile(r"[*?\[]")

InstructSetsSpec = Mapping[str, str | Path] | Sequence[str | Path] | str | Path | None


def resolve_instruct_sets(sets: InstructSetsSpec, base: str | Path | None = None) -> dict[str, Path]:
    """The config's outside instruction sets as {name: absolute path}, without reading them.

    Accepted forms: {name: path}; a path or glob pattern (`data/instruct-eval/*.jsonl`); or a
    list of paths and patterns. Files named by pattern or list are named by their stem (`self-inst.jsonl`
    -> `self-inst`), with `eval` appended where the stem is a built-in suite's name (`dolly.jsonl` ->
    `dollyeval`, the study's DollyEval), so they never clash with the synthetic suites. Relative paths
    are resolved from `base` (default: the working directory: where Snakemake runs, or its
    `--directory`). A path that names an existing file is that file even if it holds glob characters
    (`proj[1]/x.jsonl`). A pattern that matches nothing and two files with the same name fail here.
    """
    root = Path(base) if base is not None else Path.cwd()
    if sets is None:
        return {}
    if isinstance(sets, Mapping):
        named = []
        for name, path in sets.items():
            if _GLOB_CHARS.search(str(path)) and not _absolute(root, path).is_file():
                raise ValueError(
                    f"{name}: {path!r} is a pattern; a named set is one file (list patterns instead:"
                    " `instruct_sets: [dir/*.jsonl]` names each file by its stem)"
                )
            named.append((str(name), _absolute(root, path)))
    else:
        entries = [sets] if isinstance(sets, (str, Path)) else list(sets)
        named = []
        for entry in entries:
            if not isinstance(entry, (str, Path)):
                raise ValueError(f"expected a path or a glob pattern, got {entry!r}")
            for path in _expand(root, entry):
                named.append((path.stem + "eval" if path.stem in SUITE_NAMES else path.stem, path))
    out: dict[str, Path] = {}
    for name, path in named:
        if name in out and out[name] != path:
            raise ValueError(
                f"two instruction sets are named {name!r}: {out[name]} and {path} (name them: {{name: path}})"
            )
        out[name] = path
    return out


def _absolute(root: Path, path: str | Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else root / p).resolve()


def _expand(root: Path, entry: str | Path) -> list[Path]:
    text = str(Path(entry).expanduser())
    if not _GLOB_CHARS.search(text) or _absolute(root, text).is_file():
        path = _absolute(root, text)
        if path.is_dir():
            raise ValueError(f"{text!r} is a directory; name its files, e.g. {text.rstrip('/')}/*.jsonl")
        return [path]
    pattern = Path(text)
    if pattern.is_absolute():
        matches = sorted(Path(pattern.anchor).glob(str(pattern.relative_to(pattern.anchor))))
    else:
        matches = sorted(root.glob(text))
    files = [m.resolve() for m in matches if m.is_file()]
    if not files:
        raise ValueError(f"{text!r} matches no file (relative patterns are resolved from {root})")
    return files


def check_instruct_sets(sets: InstructSetsSpec, base: str | Path | None = None) -> dict[str, Path]:
    """Outside instruction sets (any form `resolve_instruct_sets` accepts): names new and well formed,
    files present and valid (a malformed line fails here with file and line number, before any model is
    loaded). Returns {name: absolute path}."""
    from atkd.eval.tasks.utils import read_docs

    out = resolve_instruct_sets(sets, base)
    for name, path in out.items():
        if not _SET_NAME.fullmatch(name):
            raise ValueError(
                f"instruction set name {name!r} ({path}): use letters, digits, '_' or '-', starting with a"
                " letter (name the set: {name: path})"
            )
        if name in SUITE_NAMES:
            raise ValueError(
                f"instruction set name {name!r} ({path}) is a built-in suite; name it: {{other_name: path}}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"instruction set {name!r}: file not found: {path}")
        read_docs(path, "instruct")
    return out


# The study's benchmarks by their lm-evaluation-harness names (paper profiles; the data comes from the Hub).
STUDY_BENCHMARKS: dict[str, dict[str, Any]] = {
    "mmlu": {"task": "mmlu", "num_fewshot": 5},
    "drop": {"task": "drop", "num_fewshot": 3},
    "bbh": {"task": "bbh_cot_fewshot", "num_fewshot": 3},
}


def benchmark_task_manager(include_path: str | Path | None = None) -> Any:
    """lm-eval's task index: its own tasks (plus an include path); indexing takes seconds, no data."""
    from lm_eval.tasks import TaskManager

    return TaskManager(
        include_path=str(include_path) if include_path else None, include_defaults=include_path is None
    )


def check_benchmarks(
    specs: Mapping[str, Mapping[str, Any]] | None, task_manager: Any = None
) -> dict[str, dict]:
    """Benchmarks {name: {task: lm-eval task or group name, num_fewshot: n}}: every task name must exist in
    lm-eval's index (close matches are suggested); names must not clash with the world's suites."""
    import difflib

    out: dict[str, dict] = {}
    if not specs:
        return out
    known = set((task_manager or benchmark_task_manager()).all_tasks)
    for name, spec in specs.items():
        if not _SET_NAME.fullmatch(name) or name in SUITE_NAMES:
            raise ValueError(
                f"benchmark name {name!r}: a new name of letters, digits, '_' or '-' (not a suite)"
            )
        task = spec.get("task")
        if task not in known:
            near = difflib.get_close_matches(str(task), known, n=5)
            raise ValueError(
                f"benchmark {name!r}: lm-eval has no task {task!r}; close: {', '.join(near) or 'none'}"
            )
        shots = spec.get("num_fewshot", 0)
        if not isinstance(shots, int) or shots < 0:
            raise ValueError(f"benchmark {name!r}: num_fewshot must be an integer >= 0, got {shots!r}")
        out[name] = {"task": task, "num_fewshot": shots}
    return out


def benchmark_rows(
    results: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Tidy rows of the benchmarks' top-level scores (a group's aggregate, not its subtasks); a metric
    under a named lm-eval filter is written `metric[filter]`."""
    rows = []
    for name, spec in specs.items():
        task = spec["task"]
        metrics = results.get("results", {}).get(task) or results.get("groups", {}).get(task) or {}
        n_info = results.get("n-samples", {}).get(task, {})
        n = n_info.get("effective", "") if isinstance(n_info, Mapping) else ""
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or metric.endswith("_stderr") or not isinstance(value, int | float):
                continue
            label = metric if filt == "none" else f"{metric}[{filt}]"
            rows.append({**(meta or {}), "task": name, "metric": label, "value": float(value), "n": n})
    return rows


def seeded_rows(by_seed: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The sampling protocol's tidy rows from each sample seed's rows: every row as `metric@<seed>`, then
    per (task, metric) the mean over seeds as `metric` (the protocol's number; the first seed's n).
    `atkd evaluate` and `atkd judge` both write their sampled scores this way."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for seed, rows in by_seed.items():
        for row in rows:
            groups.setdefault((row["task"], row["metric"]), []).append(row)
            out.append({**row, "metric": f"{row['metric']}@{seed}"})
    for (_, metric), seeded in groups.items():
        out.append({**seeded[0], "metric": metric, "value": sum(r["value"] for r in seeded) / len(seeded)})
    return out


def benchmark_records(
    results: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One generation record per benchmark document, as for the suites: `task` (the config's name),
    `subtask` (lm-eval's, e.g. a subject of MMLU), id, prompt, answer (the chosen option of a
    log-likelihood task, else the generated text after lm-eval's filter), reference (lm-eval's target)
    and the document's numeric scores. Benchmarks' documents differ in shape, so only these fields."""
    owner: dict[str, str] = {}
    children = results.get("group_subtasks", {})

    def claim(task: str, name: str) -> None:
        owner.setdefault(task, name)
        for child in children.get(task, []):
            claim(child, name)

    for name, spec in specs.items():
        claim(spec["task"], name)
    out = []
    for subtask, samples in sorted(results.get("samples", {}).items()):
        for s in sorted(samples, key=lambda s: s["doc_id"]):
            args = [list(a) if isinstance(a, list | tuple) else [a] for a in s.get("arguments", [])]
            resps = s.get("filtered_resps", [])
            metrics = s.get("metrics") or [k for k in s if k not in ("doc_id", "target")]
            scored = {k: float(s[k]) for k in metrics if isinstance(s.get(k), int | float) and k in s}
            rec: dict[str, Any] = {
                **(meta or {}),
                "task": owner.get(subtask, subtask),
                "subtask": subtask,
                "filter": s.get("filter", "none"),
                "id": s["doc_id"],
                "prompt": str(args[0][0]) if args else "",
            }
            target = s.get("target", "")
            options = len(args) > 1 and all(len(a) > 1 and isinstance(a[1], str) for a in args)
            if options:  # a log-likelihood task: the answer is the most likely option, the target its index
                lls = [float(r[0] if isinstance(r, list | tuple) else r) for r in resps]
                best = max(range(len(lls)), key=lls.__getitem__) if lls else None
                rec["answer"] = args[best][1].strip() if best is not None else ""
                scored["loglikelihoods"] = lls
                if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(args):
                    target = args[target][1].strip()
            else:
                first = resps[0] if resps else ""
                rec["answer"] = first if isinstance(first, str) else json.dumps(first, default=str)
            rec["reference"] = target if isinstance(target, str) else json.dumps(target, default=str)
            rec["scores"] = scored
            out.append(rec)
    return out


def instruct_task_config(
    name: str, path: str | Path, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0
) -> dict[str, Any]:
    """The run-time task YAML of an outside instruction set (template `instruct.yaml`)."""
    gen = dict(_template("instruct")["generation_kwargs"])
    gen["max_gen_toks"] = max_new_tokens
    if temperature > 0:
        gen.update(do_sample=True, temperature=float(temperature))
    return {
        "include": str(TASKS_DIR / "instruct.yaml"),
        "task": TASK_PREFIX + name,
        "dataset_kwargs": {"path": str(Path(path).resolve()), "kind": "instruct"},
        "generation_kwargs": gen,
    }


def write_task_yamls(
    suites: Sequence[str],
    world_dir: str | Path,
    tasks_dir: str | Path,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = 0.0,
    num_fewshot: Mapping[str, int] | None = None,
    instruct_sets: Mapping[str, str | Path] | None = None,
) -> list[Path]:
    """Write `tasks_dir/atkd_<suite>.yaml` for each suite (atomically) and remove task YAMLs of earlier
    runs, so the folder describes this run only; returns the paths. Nothing is written if any suite's
    files are missing. `num_fewshot` overrides the few-shot count of named suites; `instruct_sets`
    ({name: JSONL path}) adds outside instruction sets as generation tasks."""
    sets = check_instruct_sets(instruct_sets)
    suites = validate_suites(suites) if suites or not sets else []
    shots = dict(num_fewshot or {})
    if unknown := sorted(set(shots) - set(suites)):
        raise ValueError(
            f"num_fewshot names suites not evaluated in this run: {unknown} (evaluated: {suites})"
        )
    configs = {
        suite: task_config(
            suite,
            world_dir,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            num_fewshot=shots.get(suite),
        )
        for suite in suites
    }
    for name, path in sets.items():
        configs[name] = instruct_task_config(
            name, path, max_new_tokens=max_new_tokens, temperature=temperature
        )
    tasks_dir = Path(tasks_dir)
    paths = []
    for suite, cfg in configs.items():
        path = tasks_dir / f"{cfg['task']}.yaml"
        source = f"file {sets[suite]}" if suite in sets else f"world {Path(world_dir).resolve()}"
        header = f"# Written by atkd.eval.harness: suite {suite!r} of {source}\n"
        atomic_write_text(path, header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        paths.append(path)
    for stale in set(tasks_dir.glob(f"{TASK_PREFIX}*.yaml")) - set(paths):
        stale.unlink()
    return paths


def make_lm(model: str | Path, *, batch_size: int = 8, device: str = "auto") -> HFLM:
    """Load model and tokenizer with `from_pretrained` (local directory or Hub id alike) and wrap them in
    lm-eval's HFLM. `add_bos_token=False`: prompts are tokenised as in training (no special tokens added)."""
    from lm_eval.models.huggingface import HFLM

    from atkd.models import load_model, load_tokenizer, resolve_device

    tokenizer = load_tokenizer(model)
    hf_model = load_model(model, device=resolve_device(device)).eval()
    if hf_model.generation_config.eos_token_id is None:  # generation must stop at EOS
        hf_model.generation_config.eos_token_id = tokenizer.eos_token_id
    return HFLM(pretrained=hf_model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=False)


# ------------------------------------------------------------------------------------- result tables
def _suite_of(task_name: str) -> str:
    return task_name[len(TASK_PREFIX) :] if task_name.startswith(TASK_PREFIX) else task_name


def metric_rows(results: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Tidy rows (meta..., task, metric, value, n) from lm-eval's results (stderr entries dropped)."""
    rows = []
    for task_name, metrics in results["results"].items():
        n = int(results["n-samples"][task_name]["effective"])
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or isinstance(value, str):
                continue
            rows.append(
                {
                    **(meta or {}),
                    "task": _suite_of(task_name),
                    "metric": metric,
                    "value": float(value),
                    "n": n,
                }
            )
    return rows


def generation_records(
    results: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One record per evaluated document: what the model was given, what it answered, and its scores."""
    out = []
    for task_name, samples in results.get("samples", {}).items():
        suite = _suite_of(task_name)
        for s in sorted(samples, key=lambda s: s["doc_id"]):
            doc = s["doc"]
            rec: dict[str, Any] = {
                **(meta or {}),
                "task": suite,
                "id": doc["id"],
                "prompt": s["arguments"][0][0],
            }
            if "choices" in doc and "gold" in doc:
                lls = [float(ll) for ll, _ in s["filtered_resps"]]
                # The answer is the option the primary metric picks: per character when acc_norm is scored.
                per_char = [ll / max(len(c), 1) for ll, c in zip(lls, doc["choices"])]
                score = per_char if "acc_norm" in s else lls
                best = max(range(len(lls)), key=score.__getitem__)
                rec |= {"answer": doc["choices"][best], "reference": doc["choices"][doc["gold"]]}
                rec["scores"] = {k: float(s[k]) for k in ("acc", "acc_norm") if k in s}
                rec["scores"]["loglikelihoods"] = lls
            else:
                rec |= {"answer": s["filtered_resps"][0], "reference": doc["reference"]}
                scores: dict[str, Any] = {k: s[k] for k in ("rougeL", "acc", "exact_match", "f1") if k in s}
                if "judge_ratio" in s:
                    scores["judge"], scores["judge_reference"] = s["judge_ratio"]
                rec["scores"] = scores
            out.append(rec)
    return out


def doc_score_rows(
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
    *,
    rel: float = 1e-6,
) -> list[dict[str, Any]]:
    """Per-document scores (meta..., task, doc, metric, value) of each task's metrics that may score it in
    the report (PRIMARY_PREFERENCE; a benchmark's metric under an lm-eval filter as `metric[filter]`),
    from the generation records, so that the report can resample documents (atkd.report.stats).

    A document's value is its score averaged over sample seeds; for the judge ratio (sum of the answers'
    judge scores / sum of the references') it is the answer's judge score over the mean reference score of
    the task's documents (per sample seed). So in every case the mean over documents is the task's value
    in `rows` (metrics.csv). A metric whose documents disagree with that value (e.g. a benchmark group
    that lm-eval averages by subtask) or differ between sample seeds is left out, with a warning."""
    wanted = {
        (r["task"], r["metric"]): float(r["value"])
        for r in rows
        if "@" not in r["metric"] and r["metric"].split("[")[0] in PRIMARY_PREFERENCE
    }
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["task"], rec.get("sample_seed")), []).append(rec)
    values: dict[tuple[str, str], dict[Any, dict[str, float]]] = {}  # (task, metric) -> seed -> doc -> v
    repeated: set[tuple[str, str]] = set()
    for (task, seed), recs in groups.items():
        refs = [
            float(r["scores"]["judge_reference"]) for r in recs if "judge_reference" in r.get("scores", {})
        ]
        ref_mean = sum(refs) / len(refs) if refs else math.nan
        for rec in recs:
            doc = f"{rec['subtask']}/{rec['id']}" if "subtask" in rec else str(rec["id"])
            filt = rec.get("filter", "none")
            for key, value in rec.get("scores", {}).items():
                if key == "judge":
                    metric, value = "judge_ratio", float(value) / ref_mean
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                else:
                    metric = key if filt == "none" else f"{key}[{filt}]"
                if (task, metric) not in wanted:
                    continue
                docs = values.setdefault((task, metric), {}).setdefault(seed, {})
                if doc in docs:
                    repeated.add((task, metric))
                docs[doc] = float(value)
    out: list[dict[str, Any]] = []
    for (task, metric), by_seed in values.items():
        docs = list(next(iter(by_seed.values())))
        if (task, metric) in repeated or any(set(d) != set(docs) for d in by_seed.values()):
            log.warning("%s %s: documents repeat or differ between seeds: not per document", task, metric)
            continue
        per_doc = {doc: sum(d[doc] for d in by_seed.values()) / len(by_seed) for doc in docs}
        mean, table = sum(per_doc.values()) / len(per_doc), wanted[(task, metric)]
        if abs(mean - table) > rel * max(1.0, abs(table)):
            log.warning(
                "%s %s: document mean %r is not the task's %r: not per document", task, metric, mean, table
            )
            continue
        out += [
            {**(meta or {}), "task": task, "doc": doc, "metric": metric, "value": v}
            for doc, v in per_doc.items()
        ]
    return out


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = dict(meta or {})
    output = ("id", "doc", "prompt", "answer", "reference", "scores")
    clash = [k for k in meta if k in METRIC_COLUMNS or k in output]
    if clash:
        raise ValueError(f"meta keys {clash} clash with the output columns")
    return meta


# ------------------------------------------------------------------------------------------ evaluate
def evaluate(
    model: str | Path,
    world_dir: str | Path | None,
    suites: Sequence[str],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    device: str = "auto",
    seed: int = 0,
    temperature: float = 0.0,
    fewshot_seed: int = DEFAULT_FEWSHOT_SEED,
    sample_seeds: Sequence[int] | None = None,
    num_fewshot: Mapping[str, int] | None = None,
    instruct_sets: Mapping[str, str | Path] | None = None,
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
    benchmark_include_path: str | Path | None = None,
    threads: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate `model` (HF directory or Hub id) on `suites` of the world in `world_dir`; write the run's
    task YAMLs, `generations.jsonl`, `doc_scores.csv`, `lm_eval_results.json` and `metrics.csv` into
    `out_dir`, and return the metric rows.

    `limit` evaluates the first N documents of each suite; `seed` seeds Python, NumPy and torch (it only
    matters when sampling, `temperature` > 0); `sample_seeds` (the MiniLLM/DistiLLM protocol: 10 20 30 40
    50 at temperature 1) samples the generation tasks once per seed, writing `<metric>@<seed>` rows and the
    mean over seeds as `<metric>`, while understanding suites run once; `fewshot_seed` picks the few-shot
    examples and `num_fewshot` ({suite: n}) overrides how many an understanding suite shows; `threads` sets
    torch's intra-op threads for the call (set it to the cores the job really has: oversubscribed CPU
    threads made evaluation ~10x slower on a loaded 2-core machine); `meta` columns (e.g. run, student,
    teacher, method, atkd, seed) are prepended to every output row.
    """
    sets = check_instruct_sets(instruct_sets)
    bench_tm = benchmark_task_manager(benchmark_include_path) if benchmarks else None
    bench = check_benchmarks(benchmarks, bench_tm)
    suites = validate_suites(suites) if suites or not (sets or bench) else []
    meta = _check_meta(meta)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if sample_seeds is not None:
        sample_seeds = list(dict.fromkeys(int(x) for x in sample_seeds))
        if not sample_seeds or not temperature > 0:
            raise ValueError("sample_seeds needs at least one seed and a temperature > 0 (e.g. 1.0)")
    out_dir = Path(out_dir)
    tasks_dir = out_dir / "tasks"
    # Everything that can fail on bad input fails here, before the model is loaded.
    if suites or sets:
        write_task_yamls(
            suites,
            world_dir,
            tasks_dir,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            num_fewshot=num_fewshot,
            instruct_sets=sets,
        )
    suites = [*suites, *sets]

    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    sampled = [t for t in suites if t in sets or SUITE_KIND.get(t) == "generation"] if sample_seeds else []
    plan: list[tuple[list[str], int, int | None]] = []  # (tasks, seed, sample seed or None)
    if once := [t for t in suites if t not in sampled]:
        plan.append((once, seed, None))
    plan += [(sampled, int(s), int(s)) for s in sample_seeds or []]
    if not once and not sampled:
        plan = []

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    outputs, bench_results = [], []
    try:
        lm = make_lm(model, batch_size=batch_size, device=device)
        task_manager = TaskManager(include_path=str(tasks_dir), include_defaults=False) if plan else None
        for tasks, run_seed, sample_seed in plan:
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=[TASK_PREFIX + t for t in tasks],
                task_manager=task_manager,
                limit=limit,
                bootstrap_iters=0,
                log_samples=True,
                random_seed=run_seed,
                numpy_random_seed=run_seed,
                torch_random_seed=run_seed,
                fewshot_random_seed=fewshot_seed,
            )
            if results is None:  # only on non-zero ranks of a distributed run
                return []
            outputs.append((results, sample_seed))
        for shots in sorted({b["num_fewshot"] for b in bench.values()}):
            group = {k: b for k, b in bench.items() if b["num_fewshot"] == shots}
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=sorted({b["task"] for b in group.values()}),
                num_fewshot=shots,
                task_manager=bench_tm,
                limit=limit,
                bootstrap_iters=0,
                log_samples=True,  # the generations file holds every benchmark answer too
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=fewshot_seed,
            )
            if results is None:
                return []
            bench_results.append((results, group))
    finally:
        torch.set_num_threads(previous_threads)
    rows, gens, by_seed = [], [], {}
    for results, sample_seed in outputs:
        if sample_seed is None:
            rows += metric_rows(results, meta)
            gens += generation_records(results, meta)
            continue
        by_seed[sample_seed] = metric_rows(results, meta)
        gens += [{**g, "sample_seed": sample_seed} for g in generation_records(results, meta)]
    rows += seeded_rows(by_seed)
    for results, group in bench_results:
        rows += benchmark_rows(results, group, meta)
        gens += benchmark_records(results, group, meta)
    suites = [*suites, *bench]
    order = {s: i for i, s in enumerate(suites)}
    rows.sort(key=lambda r: order[r["task"]])
    gens.sort(key=lambda r: order[r["task"]])

    atomic_write_text(out_dir / "generations.jsonl", dumps_jsonl(gens))
    docs = doc_score_rows(gens, rows, meta)
    atomic_write_text(out_dir / "doc_scores.csv", _csv_text(docs, [*meta, *DOC_COLUMNS]))
    provenance: dict[str, Any] = {
        "runs": [
            {
                "sample_seed": sample_seed,
                **{
                    k: res.get(k) for k in ("results", "n-shot", "n-samples", "versions", "config", "configs")
                },
            }
            for res, sample_seed in outputs
        ],
        "benchmarks": [
            {k: res.get(k) for k in ("results", "groups", "n-shot", "versions")} for res, _ in bench_results
        ],
    }
    provenance["model"] = str(model)
    provenance["wall_seconds"] = round(time.perf_counter() - start, 3)
    atomic_write_text(
        out_dir / "lm_eval_results.json",
        json.dumps(provenance, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n",
    )
    atomic_write_text(out_dir / "metrics.csv", _csv_text(rows, [*meta, *METRIC_COLUMNS]))
    log.info(
        "evaluated %s on %s in %.1f s -> %s", model, ", ".join(suites), provenance["wall_seconds"], out_dir
    )
    return rows


# ----------------------------------------------------------------------------------------------- CLI
def _meta_item(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
    return key, value


def _instruct_item(item: str) -> tuple[str | None, str]:
    """`NAME=PATH`, or a path or glob pattern whose files are named by their stems."""
    key, sep, value = item.partition("=")
    if sep and _SET_NAME.fullmatch(key):
        return key, value
    return None, item


def _shots_item(item: str) -> tuple[str, int]:
    key, value = _meta_item(item)
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SUITE=N with an integer N, got {item!r}") from None


def _benchmark_item(item: str) -> tuple[str, dict[str, Any]]:
    name, value = _meta_item(item)
    task, _, shots = value.partition(":")
    try:
        return name, {"task": task, "num_fewshot": int(shots or 0)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=TASK[:SHOTS], got {item!r}") from None


def _run_cli(args: argparse.Namespace) -> int:
    named = {name: path for name, path in args.instruct_set if name is not None}
    patterns = [path for name, path in args.instruct_set if name is None]
    try:
        found = {str(k): str(v) for k, v in resolve_instruct_sets(patterns).items()}
    except ValueError as err:
        raise SystemExit(f"atkd evaluate: --instruct-set: {err}") from None
    clash = sorted(set(found) & set(named))
    if clash:
        raise SystemExit(f"atkd evaluate: --instruct-set: two instruction sets are named {clash[0]!r}")
    sets = found | named
    suites = args.suites if args.suites is not None else ([] if sets or args.benchmark else list(SUITE_NAMES))
    if suites and args.world is None:
        raise SystemExit("atkd evaluate: --world is required for the world's suites")
    rows = evaluate(
        args.model,
        Path(args.world) if args.world else None,
        suites,
        Path(args.out),
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        seed=args.seed,
        temperature=args.temperature,
        threads=args.threads,
        meta=dict(args.meta),
        num_fewshot=dict(args.num_fewshot),
        instruct_sets=sets,
        sample_seeds=args.sample_seeds,
        benchmarks=dict(args.benchmark),
    )
    for r in rows:
        print(f"{r['task']:<10} {r['metric']:<12} {r['value']:.4f}  (n={r['n']})")
    print(f"wrote {Path(args.out) / 'metrics.csv'} and {Path(args.out) / 'generations.jsonl'}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd evaluate --model DIR --world DIR --suites ... --out DIR [--limit N] [--meta k=v ...]`."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on the world's suites with lm-evaluation-harness",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", required=True, help="model directory or Hub id (tokenizer alongside)")
    p.add_argument("--world", default=None, help="world directory (from `atkd world`), for its suites")
    p.add_argument(
        "--suites",
        nargs="*",
        default=None,
        choices=SUITE_NAMES,
        metavar="SUITE",
        help=f"default: all ({' '.join(SUITE_NAMES)}), or none when --instruct-set is given",
    )
    p.add_argument(
        "--benchmark",
        nargs="*",
        type=_benchmark_item,
        default=[],
        metavar="NAME=TASK[:SHOTS]",
        help="lm-eval tasks by name, e.g. mmlu=mmlu:5 drop=drop:3 bbh=bbh_cot_fewshot:3 (data from the Hub)",
    )
    p.add_argument(
        "--instruct-set",
        nargs="*",
        type=_instruct_item,
        default=[],
        metavar="NAME=PATH|PATTERN",
        help="outside instruction sets (JSONL: instruction, optional input, output) as generation tasks:"
        " NAME=PATH, or paths / glob patterns (quoted) whose files are named by their stems",
    )
    p.add_argument("--out", required=True, help="output directory (metrics.csv, generations.jsonl, ...)")
    p.add_argument("--limit", type=int, default=None, help="first N documents of each suite")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the study); >0 samples")
    p.add_argument("--device", default="auto", help="auto (a GPU where visible), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sample-seeds",
        nargs="+",
        type=int,
        default=None,
        help="sample the generation tasks once per seed at --temperature (MiniLLM/DistiLLM: 10 20 30 40 50)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--num-fewshot",
        nargs="*",
        type=_shots_item,
        default=[],
        metavar="SUITE=N",
        help="few-shot examples of an understanding suite (default: mmlu=5 drop=3 bbh=3)",
    )
    p.add_argument(
        "--meta",
        nargs="*",
        type=_meta_item,
        default=[],
        metavar="KEY=VALUE",
        help="columns prepended to every row",
    )
    p.set_defaults(func=_run_cli)
