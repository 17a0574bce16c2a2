"""kd (+ATKD off) at the largest teacher against its distillation budget: 4, 6, 8 and 12 epochs (or the
arms given).

Reads the per-run metric and per-document files of one results folder (the committed default plus the
config-overlay.yaml runs) and compares budgets pairwise with the report's paired hierarchical bootstrap
(atkd.report.stats.Evidence: seeds, then documents within each task), over the seeds both arms have.

    python compare.py RESULTS > compare.txt
    python compare.py RESULTS kd=6 kd_b2=12    (other arms: method=epochs, shortest first)
"""

from __future__ import annotations

import glob
import sys

import pandas as pd

from atkd.report.stats import Evidence
from atkd.report.tables import load_doc_scores, load_metrics, primary_metrics, scores

TEACHER = "neox-208x6"
ARMS = {"kd": 4, "kd_b15": 6, "kd_b2": 8, "kd_b3": 12}  # method -> epochs


def main(results: str, arms: dict[str, int] = ARMS) -> None:
    """Every longer-minus-shorter pair of `arms` (method -> epochs) at TEACHER, +ATKD off."""
    runs = [f"{results}/runs/{m}/{TEACHER}/off" for m in arms]
    metrics = pd.concat(load_metrics(f) for r in runs for f in sorted(glob.glob(f"{r}/s*/eval/metrics.csv")))
    docs = pd.concat(
        load_doc_scores(f) for r in runs for f in sorted(glob.glob(f"{r}/s*/eval/doc_scores.csv"))
    )
    primary = primary_metrics(metrics)
    per_seed = scores(metrics, primary)
    evidence = Evidence(per_seed, primary, docs)
    avg = per_seed[per_seed["task"] == "avg"].groupby("method")["value"].agg(["mean", "count"])
    print(f"kd at {TEACHER}, +ATKD off: average score by budget (mean over seeds)")
    for method, epochs in arms.items():
        mean, n = avg.loc[method, "mean"], avg.loc[method, "count"]
        print(f"  {epochs:>2} epochs ({method}): {mean:.4f} ({n} seeds)")
    print("\nLonger minus shorter budget, paired over the seeds both have:")
    names = list(arms)
    for i, short in enumerate(names):
        for long in names[i + 1 :]:
            cmp = evidence.compare((long, TEACHER, "off"), (short, TEACHER, "off"))
            print(f"  {arms[long]:>2} - {arms[short]:>2} epochs: {cmp.text()}")


if __name__ == "__main__":
    given = {m: int(e) for m, e in (a.split("=") for a in sys.argv[2:])}
    main(sys.argv[1], given or ARMS)
