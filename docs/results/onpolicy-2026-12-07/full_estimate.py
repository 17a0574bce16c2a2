"""Predict a config's CPU time from a Snakemake dry run of it and measured per-job CPU seconds.

    snakemake all -n --forceall --configfile config/full.yaml > dry.txt
    python full_estimate.py BENCHMARKS_DIR dry.txt

BENCHMARKS_DIR: a run's results/benchmarks (here: the default run of ../default-2026-12-07b with this
overlay's four distill files added). A distill job takes the mean CPU of its method and variant where
measured, a budget member kd's scaled by its budget (plus a fixed 10 s), any other method kd's; every
other rule its measured mean (a teacher's evaluation that of a student's).
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

BUDGET = {"kd_b05": 0.5, "kd_b2": 2.0, "kd_b4": 4.0}
FIXED_S = 10.0  # per-job cost that does not scale with the budget (imports, loading)


def cpu_s(path: Path) -> float:
    with open(path, newline="") as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["cpu_time"])


def main(bench: Path, dry: str) -> None:
    per_rule: dict[str, list[float]] = defaultdict(list)
    per_method: dict[tuple[str, str], list[float]] = defaultdict(list)
    for f in bench.rglob("*.tsv"):
        parts = f.relative_to(bench).parts
        rule = parts[0].removesuffix(".tsv")
        per_rule[rule].append(cpu_s(f))
        if rule == "distill":
            per_method[(parts[1], parts[3])].append(cpu_s(f))
    rule_mean = {k: statistics.mean(v) for k, v in per_rule.items()}
    method_mean = {k: statistics.mean(v) for k, v in per_method.items()}
    total: Counter[str] = Counter()
    jobs: Counter[str] = Counter()
    source: Counter[str] = Counter()
    for block in re.split(r"^\[.*\]$", dry, flags=re.M):
        m = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        if not m:
            continue
        rule = m.group(1)
        jobs[rule] += 1
        if rule != "distill":
            total[rule] += rule_mean.get("evaluate" if rule == "evaluate_teacher" else rule, 0.0)
            continue
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"wildcards: (.*)", block).group(1)))
        method, variant = wildcards["method"], wildcards["variant"]
        kd = method_mean[("kd", variant)]
        if (method, variant) in method_mean:
            total[rule] += method_mean[(method, variant)]
            source["measured"] += 1
        elif method in BUDGET:
            total[rule] += FIXED_S + (kd - FIXED_S) * BUDGET[method]
            source["kd x budget"] += 1
        else:
            total[rule] += kd
            source["as kd"] += 1
    for rule in sorted(total, key=lambda r: -total[r]):
        print(f"{rule:18s} jobs {jobs[rule]:4d} cpu_min {total[rule] / 60:8.1f}")
    print("distill jobs by source of their CPU time:", dict(source))
    measured = {f"{m}/{v}": round(s) for (m, v), s in sorted(method_mean.items())}
    print("measured CPU s per distill job:", measured)
    cpu_min = sum(total.values()) / 60
    hours = cpu_min / 2 / 0.92 / 60
    print(f"TOTAL cpu_min {cpu_min:.0f}; wall at 2 cores used 92% (the default's): {hours:.1f} h")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]).read_text())
