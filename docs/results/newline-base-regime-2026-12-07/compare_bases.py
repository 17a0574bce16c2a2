"""The same students (sft; kd at neox-64x2 and neox-208x6; seeds 1-3; +ATKD off) from two student bases,
paired by seed and document with the report's hierarchical bootstrap (atkd.report.stats.Evidence).

    python compare_bases.py ZOO_BASE_RESULTS LINE_BREAK_BASE_RESULTS

Each argument is a results folder with metrics.csv and doc_scores.csv: here the default run of
../default-2026-12-07b and this folder's run (results/newline-base).
"""

from __future__ import annotations

import sys

import pandas as pd

from atkd.report.stats import Evidence, paired_bootstrap
from atkd.report.tables import primary_metrics, scores

TEACHERS = ("neox-64x2", "neox-208x6")


def load(folder: str, base: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """metrics and doc_scores of sft and kd without ATKD, seeds 1-3, methods renamed `<method>@<base>`."""
    out = []
    for name in ("metrics.csv", "doc_scores.csv"):
        d = pd.read_csv(f"{folder}/{name}")
        d["teacher"] = d["teacher"].fillna("")
        d = d[(d["atkd"] == "off") & d["method"].isin(["sft", "kd"]) & d["seed"].isin([1, 2, 3])]
        d = d[d["teacher"].isin(["", *TEACHERS])]
        out.append(d.assign(method=d["method"] + f"@{base}"))
    return out[0], out[1]


def main(zoo_dir: str, lines_dir: str) -> None:
    (mz, dz), (ml, dl) = load(zoo_dir, "zoo"), load(lines_dir, "lines")
    metrics, docs = pd.concat([mz, ml]), pd.concat([dz, dl])
    primary = primary_metrics(metrics)
    evidence = Evidence(scores(metrics, primary), primary, docs)

    def show(label: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        print(f"{label}: {evidence.compare((*a, 'off'), (*b, 'off')).text()}")

    show("sft, line-break base minus zoo base", ("sft@lines", ""), ("sft@zoo", ""))
    for t in TEACHERS:
        show(f"kd at {t}, line-break base minus zoo base", ("kd@lines", t), ("kd@zoo", t))
        show(f"zoo base: kd at {t} minus sft", ("kd@zoo", t), ("sft@zoo", ""))
        show(f"line-break base: kd at {t} minus sft", ("kd@lines", t), ("sft@lines", ""))
    for t in TEACHERS:  # does the base change what distillation adds? (kd - sft), one base minus the other
        pairs = [evidence.arrays((f"kd@{b}", t, "off"), (f"sft@{b}", "", "off")) for b in ("lines", "zoo")]
        gains = [[x - y for x, y in zip(*pair, strict=True)] for pair in pairs]
        cmp = paired_bootstrap(*gains, n_boot=evidence.n_boot, seed=evidence.seed)
        print(f"(kd at {t} minus sft), line-break base minus zoo base: {cmp.text()}")
    for base in ("zoo", "lines"):
        show(f"{base} base: kd at {TEACHERS[1]} minus at {TEACHERS[0]}", (f"kd@{base}", TEACHERS[1]),
             (f"kd@{base}", TEACHERS[0]))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
