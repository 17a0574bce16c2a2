"""Evaluation: the eight suites as lm-evaluation-harness tasks, run in-process, written as tidy rows.

Modules: `harness` (`evaluate` and `atkd evaluate`), `registry` (suite kinds, task YAMLs, the task index),
`instruct_sets` (outside instruction sets), `benchmarks` (lm-eval's own tasks by name), `rows` (tidy
result rows), `llm_judge` (`atkd judge`) and `tasks/` (the YAML templates and lm-eval's helpers).
"""

from atkd.eval.harness import evaluate, register_cli
from atkd.eval.registry import PRIMARY_METRIC, SUITE_KIND, primary_metric, validate_suites

__all__ = ["PRIMARY_METRIC", "SUITE_KIND", "evaluate", "primary_metric", "register_cli", "validate_suites"]
