"""Regime conditions on the zoo (world v7), +ATKD off: KD - SFT at the same budget and learning rate,
KD(largest) - KD(smallest), and each arm at twice its budget minus at its budget, paired over seeds and
documents (REPORT.md's hierarchical bootstrap).
Usage: python analyse.py RESULTS_FOLDER (the folder of a finished `snakemake all` of config.yaml)."""

import sys
from pathlib import Path

from atkd.report.stats import Evidence
from atkd.report.tables import load_doc_scores, load_metrics, primary_metrics, scores

r = Path(sys.argv[1] if len(sys.argv) > 1 else "results/regime7")
df = load_metrics(r / "metrics.csv")
prim = primary_metrics(df)
sc = scores(df, prim)
ev = Evidence(sc, prim, load_doc_scores(r / "doc_scores.csv"))
big, small = "neox-208x6", "neox-64x2"
pairs = [
    (("kd", big, "off"), ("sft", "", "off")),
    (("kd", small, "off"), ("sft", "", "off")),
    (("kd", big, "off"), ("kd", small, "off")),
    (("kd_e4", big, "off"), ("sft_e4", "", "off")),
    (("kd_e8", big, "off"), ("sft_e8", "", "off")),
    (("kd_lr5", big, "off"), ("sft_lr5", "", "off")),
    (("kd_lr5_e4", big, "off"), ("sft_lr5_e4", "", "off")),
    (("kd_lr5_e8", big, "off"), ("sft_lr5_e8", "", "off")),
    # convergence: twice the budget minus the budget
    (("kd_e4", big, "off"), ("kd", big, "off")),
    (("kd_e8", big, "off"), ("kd_e4", big, "off")),
    (("kd_lr5_e4", big, "off"), ("kd_lr5", big, "off")),
    (("kd_lr5_e8", big, "off"), ("kd_lr5_e4", big, "off")),
    (("sft_e4", "", "off"), ("sft", "", "off")),
    (("sft_e8", "", "off"), ("sft_e4", "", "off")),
    (("sft_lr5_e4", "", "off"), ("sft_lr5", "", "off")),
    (("sft_lr5_e8", "", "off"), ("sft_lr5_e4", "", "off")),
    # the learning rate at the same budget
    (("kd_lr5", big, "off"), ("kd", big, "off")),
    (("kd_lr5_e4", big, "off"), ("kd_e4", big, "off")),
]
for a, b in pairs:
    c = ev.compare(a, b)
    if c is not None:
        print(f"{a[0]}@{a[1] or '-'} - {b[0]}@{b[1] or '-'}: {c.text()}")
