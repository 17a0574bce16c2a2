"""The evaluation tasks: each suite's task kind and primary metric, the run-time task YAMLs, and the lm-eval
task index over them.

How a task gets its data: the committed YAMLs in `atkd/eval/tasks/` are one template per task kind
(generation, multiple_choice, instruct) whose `custom_dataset` is `utils.load_suite`. For each run,
`write_task_yamls` writes `<out>/tasks/atkd_<suite>.yaml`: `include:` of the kind's template plus the task
name, `dataset_kwargs` (the absolute suite and few-shot paths, which lm-eval passes to `load_suite`), the
few-shot count and the generation settings. A TaskManager (`task_manager`) indexes only that folder. So
the run folder records exactly what was evaluated, and `lm_eval --include_path <out>/tasks --tasks
atkd_<suite>` repeats it outside Python. (Why `custom_dataset` and not `dataset_path: json`: records are
read by the project's strict JSONL reader, so a bad line fails with file:line, and the nested, per-record
different `judge` / `answer_dist` fields travel as JSON text instead of going through Arrow's schema
inference.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from atkd.data.suites import GENERATION_SUITES, SUITE_NAMES, UNDERSTANDING_SUITES
from atkd.eval.instruct_sets import check_instruct_sets
from atkd.fsutil import atomic_write_text

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
DEFAULT_MAX_NEW_TOKENS = 256  # the study's greedy budget


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


def suite_of(task_name: str) -> str:
    """The suite (or instruction set) an lm-eval task name stands for: `atkd_dolly` -> `dolly`."""
    return task_name[len(TASK_PREFIX) :] if task_name.startswith(TASK_PREFIX) else task_name


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
    chat_tokenizer: str | Path | None = None,
) -> list[Path]:
    """Write `tasks_dir/atkd_<suite>.yaml` for each suite (atomically) and remove task YAMLs of earlier
    runs, so the folder describes this run only; returns the paths. Nothing is written if any suite's
    files are missing. `num_fewshot` overrides the few-shot count of named suites; `instruct_sets`
    ({name: JSONL path}) adds outside instruction sets as generation tasks; `chat_tokenizer` (a tokenizer
    with a chat template: the evaluated model's) prompts every document through that template."""
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
    if chat_tokenizer is not None:
        for cfg in configs.values():
            cfg["dataset_kwargs"]["tokenizer"] = str(chat_tokenizer)
    tasks_dir = Path(tasks_dir)
    paths = []
    for suite, cfg in configs.items():
        path = tasks_dir / f"{cfg['task']}.yaml"
        source = f"file {sets[suite]}" if suite in sets else f"world {Path(world_dir).resolve()}"
        # The header names `atkd evaluate`'s module, which writes these files, as it always has.
        header = f"# Written by atkd.eval.harness: suite {suite!r} of {source}\n"
        atomic_write_text(path, header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        paths.append(path)
    for stale in set(tasks_dir.glob(f"{TASK_PREFIX}*.yaml")) - set(paths):
        stale.unlink()
    return paths


def task_manager(tasks_dir: str | Path) -> Any:
    """lm-eval's task index over a run's task folder only (none of lm-eval's own tasks)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir), include_defaults=False)
