"""KD against SFT on fewer training records (`distill.train_limit`), +ATKD off, on one zoo build: paired by
seed and document with the report's hierarchical bootstrap (atkd.report.stats.Evidence).

    python compare.py RESULTS/regime-l18k RESULTS/regime-l6k RESULTS/regime-l3k > compare.txt
    python compare.py --eval eval-t1 RESULTS/regime-l18k ... > compare_sampled.txt

Each folder is a results folder of one regime config (config-l*.yaml here); its runs' eval/metrics.csv and
eval/doc_scores.csv are read directly (with --eval, another evaluation folder of each run: eval-t1 holds
the five generation suites sampled at temperature 1). A method is named `<method>@<records>` (e.g.
`kd_b2@6k`).
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pandas as pd

from atkd.report.stats import Evidence
from atkd.report.tables import primary_metrics, scores

LARGE, SMALL = "neox-208x6", "neox-64x2"


def load(folder: str, evaluation: str = "eval") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's metrics and doc_scores of one folder, methods renamed `<method>@<records>`."""
    tag = Path(folder).name.removeprefix("regime-l")
    out = []
    for name in ("metrics.csv", "doc_scores.csv"):
        parts = [pd.read_csv(f) for f in sorted(glob.glob(f"{folder}/runs/*/*/off/s*/{evaluation}/{name}"))]
        d = pd.concat(parts, ignore_index=True)
        d["teacher"] = d["teacher"].fillna("")
        out.append(d.assign(method=d["method"] + f"@{tag}"))
    return out[0], out[1]


def main(folders: list[str], evaluation: str = "eval") -> None:
    loaded = [load(f, evaluation) for f in folders]
    metrics = pd.concat([m for m, _ in loaded], ignore_index=True)
    docs = pd.concat([d for _, d in loaded], ignore_index=True)
    primary = primary_metrics(metrics)
    sc = scores(metrics, primary)
    evidence = Evidence(sc, primary, docs)
    print("Mean score over seeds (average of the primary metrics):")
    avg = metrics[metrics.apply(lambda r: primary.get(r["task"]) == r["metric"], axis=1)]
    per_run = avg.groupby(["method", "teacher", "seed"])["value"].mean()
    for (method, teacher), g in per_run.groupby(level=[0, 1]):
        print(f"  {method:>10} {teacher or '-':>10}  {g.mean():.4f}  ({len(g)} seeds)")

    def show(label: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        cmp = evidence.compare((*a, "off"), (*b, "off"))
        print(f"{label}: {'not run' if cmp is None else cmp.text()}")

    print()
    methods = set(metrics["method"])
    for folder in folders:
        tag = Path(folder).name.removeprefix("regime-l")
        for kd, sft in (("kd", "sft"), ("kd_b2", "sft_b2")):
            if f"{kd}@{tag}" in methods and f"{sft}@{tag}" in methods:
                show(f"{tag}: {kd} at {LARGE} minus {sft}", (f"{kd}@{tag}", LARGE), (f"{sft}@{tag}", ""))
        if f"kd_b2@{tag}" in methods:
            show(
                f"{tag}: kd_b2 minus kd at {LARGE} (2x the epochs)",
                (f"kd_b2@{tag}", LARGE),
                (f"kd@{tag}", LARGE),
            )
        if f"sft_b2@{tag}" in methods:
            show(f"{tag}: sft_b2 minus sft (2x the epochs)", (f"sft_b2@{tag}", ""), (f"sft@{tag}", ""))
        if set(metrics.loc[metrics["method"] == f"kd@{tag}", "teacher"]) >= {LARGE, SMALL}:
            show(f"{tag}: kd at {LARGE} minus at {SMALL}", (f"kd@{tag}", LARGE), (f"kd@{tag}", SMALL))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--eval"]:
        main(args[2:], args[1])
    else:
        main(args)
