"""Benchmarks: lm-evaluation-harness's own tasks by name (the paper profiles: mmlu 5-shot, drop 3-shot,
bbh_cot_fewshot 3-shot; their data comes from the Hub), named in a config's `evaluation.benchmarks` or by
`--benchmark`. Their results become tidy rows like the suites' (`atkd.eval.rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atkd.data.suites import SUITE_NAMES
from atkd.eval.instruct_sets import TASK_NAME


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
        if not TASK_NAME.fullmatch(name) or name in SUITE_NAMES:
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
