"""Regime levers, +ATKD off: KD - SFT at the same budget, KD(largest) - KD(smallest), and each arm at twice
its budget minus at its budget, paired over seeds and documents (REPORT.md's hierarchical bootstrap).
Usage: python analyse.py RESULTS_FOLDER (the folder of a finished `snakemake all` of config.yaml)."""

import sys
from pathlib import Path

from atkd.report.stats import Evidence
from atkd.report.tables import load_doc_scores, load_metrics, primary_metrics, scores

r = Path(sys.argv[1] if len(sys.argv) > 1 else "results/regime")
df = load_metrics(r / "metrics.csv")
prim = primary_metrics(df)
sc = scores(df, prim)
ev = Evidence(sc, prim, load_doc_scores(r / "doc_scores.csv"))
pairs = []
for kd, sft in (("kd", "sft"), ("kd_e4", "sft_e4"), ("kd_n3k", "sft_n3k"), ("kd_n3k_e24", "sft_n3k_e24")):
    for t in sorted(set(sc.loc[sc.method == kd, "teacher"])):
        pairs.append(((kd, t, "off"), (sft, "", "off")))
    ts = sorted(set(sc.loc[sc.method == kd, "teacher"]))
    if "neox-208x6" in ts and "neox-64x2" in ts:
        pairs.append(((kd, "neox-208x6", "off"), (kd, "neox-64x2", "off")))
pairs += [
    (("kd_e4", "neox-208x6", "off"), ("kd", "neox-208x6", "off")),
    (("kd_n3k_e24", "neox-208x6", "off"), ("kd_n3k", "neox-208x6", "off")),
    (("sft_e4", "", "off"), ("sft", "", "off")),
    (("sft_n3k_e24", "", "off"), ("sft_n3k", "", "off")),
]
for a, b in pairs:
    c = ev.compare(a, b)
    if c is not None:
        print(f"{a[0]}@{a[1] or '-'} - {b[0]}@{b[1] or '-'}: {c.text()}")
