"""Evaluation: the eight suites as lm-evaluation-harness tasks, run in-process, written as tidy rows."""

from atkd.eval.harness import (
    PRIMARY_METRIC,
    SUITE_KIND,
    evaluate,
    primary_metric,
    register_cli,
    validate_suites,
)

__all__ = ["PRIMARY_METRIC", "SUITE_KIND", "evaluate", "primary_metric", "register_cli", "validate_suites"]
