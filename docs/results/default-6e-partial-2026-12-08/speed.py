"""How fast was the machine? CPU seconds per job of the rules whose work this run shares with the run
before it (same world, zoo, teachers and documents; only the students' epochs changed), as a ratio.

    python speed.py workflow_time.csv ../default-2026-12-07c/workflow_time.csv > speed.txt

A ratio above 1 means the same work took more CPU seconds here: a slower machine (the project's machine is
shared), not a slower code path.
"""

from __future__ import annotations

import csv
import statistics
import sys

SAME_WORK = ["world", "tokenizer", "student_base", "teacher", "teacher_cache", "teacher_generate", "probe"]


def per_job(path: str) -> dict[str, tuple[int, float]]:
    """rule -> (jobs, CPU seconds per job) from a workflow_time.csv."""
    with open(path) as f:
        return {r["rule"]: (int(r["jobs"]), float(r["cpu_s_per_job"])) for r in csv.DictReader(f)}


def main(here: str, before: str) -> None:
    a, b = per_job(here), per_job(before)
    ratios = []
    print(f"{'rule':<18}{'jobs':>6}{'CPU s/job here':>16}{'before':>10}{'ratio':>8}")
    for rule in SAME_WORK:
        if rule in a and rule in b and a[rule][0] == b[rule][0]:
            ratio = a[rule][1] / b[rule][1]
            ratios.append(ratio)
            print(f"{rule:<18}{a[rule][0]:>6}{a[rule][1]:>16.1f}{b[rule][1]:>10.1f}{ratio:>8.2f}")
    print(f"median ratio over {len(ratios)} rules: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
