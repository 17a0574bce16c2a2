"""Issue 26 part 3: rkd and rkd + ATKD trained from the dense cache and from the lowrank sparse cache,
paired over seeds and documents (REPORT.md's hierarchical bootstrap; MDE = 2.80 x SE).
Usage: python analyse.py [DENSE_RESULTS LOWRANK_RESULTS] (the folders of the two finished runs)."""

import sys
from pathlib import Path

import pandas as pd

from atkd.report.stats import Evidence
from atkd.report.tables import load_doc_scores, load_metrics, primary_metrics, scores

dense, lowrank = (
    Path(p)
    for p in (
        sys.argv[1:3] if len(sys.argv) > 2 else ("results/rkd-cache/dense", "results/rkd-cache/lowrank")
    )
)


def arm(folder: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's metrics and per-document scores with its rkd students renamed `name`."""
    df, docs = load_metrics(folder / "metrics.csv"), load_doc_scores(folder / "doc_scores.csv")
    for table in (df, docs):
        table.loc[table["method"] == "rkd", "method"] = name
    return df, docs


(m_d, d_d), (m_l, d_l) = arm(dense, "rkd_dense"), arm(lowrank, "rkd_lowrank")
teacher_rows = m_l["method"] != "rkd_lowrank"  # the teacher's and base's rows are in both runs: keep one
df = pd.concat([m_d, m_l[~teacher_rows]], ignore_index=True)
docs = pd.concat([d_d, d_l[d_l["method"] == "rkd_lowrank"]], ignore_index=True)
prim = primary_metrics(df)
sc = scores(df, prim)
ev = Evidence(sc, prim, docs)
t = "neox-208x6"
for atkd in ("off", "on"):
    for method in ("rkd_dense", "rkd_lowrank"):
        avg = sc[(sc["method"] == method) & (sc["atkd"] == atkd) & (sc["task"] == "avg")]["value"]
        print(f"{method} atkd={atkd}: average score {avg.mean():.4f} over {len(avg)} seeds")
pairs = [
    (("rkd_lowrank", t, "off"), ("rkd_dense", t, "off")),
    (("rkd_lowrank", t, "on"), ("rkd_dense", t, "on")),
    (("rkd_dense", t, "on"), ("rkd_dense", t, "off")),
    (("rkd_lowrank", t, "on"), ("rkd_lowrank", t, "off")),
]
for a, b in pairs:
    c = ev.compare(a, b)
    if c is not None:
        print(f"{a[0]}+{a[2]} - {b[0]}+{b[2]}: {c.text()}")
