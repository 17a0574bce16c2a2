"""Section 4: students on records 9000-17999 (8 epochs, seeds 1-3, +ATKD off): sft, kd from neox-128x4
(tuned on all 18,000 records, the student's among them) and from neox-128x4h (tuned on records 0-8999
only), paired by seed and document with the report's bootstrap.

    python half.py RESULTS/half-students > half.txt
"""

from __future__ import annotations

import glob
import sys

import pandas as pd

from atkd.report.stats import Evidence
from atkd.report.tables import primary_metrics, scores


def main(folder: str) -> None:
    frames = []
    for name in ("metrics.csv", "doc_scores.csv"):
        d = pd.concat(pd.read_csv(f) for f in sorted(glob.glob(f"{folder}/runs/*/*/off/s*/eval/{name}")))
        frames.append(d.assign(teacher=d["teacher"].fillna("")))
    metrics, docs = frames
    primary = primary_metrics(metrics)
    evidence = Evidence(scores(metrics, primary), primary, docs)
    avg = metrics[[primary.get(t) == m for t, m in zip(metrics["task"], metrics["metric"], strict=True)]]
    for (method, teacher), g in avg.groupby(["method", "teacher"]):
        per_seed = g.groupby("seed")["value"].mean()
        print(f"{method} {teacher or '-'}: {per_seed.mean():.4f} ({len(per_seed)} seeds)")
    for a, b in (
        (("kd", "neox-128x4"), ("sft", "")),
        (("kd", "neox-128x4h"), ("sft", "")),
        (("kd", "neox-128x4h"), ("kd", "neox-128x4")),
    ):
        cmp = evidence.compare((*a, "off"), (*b, "off"))
        print(f"{a[0]} at {a[1]} minus {b[0]}{' at ' + b[1] if b[1] else ''}: {cmp.text()}")


if __name__ == "__main__":
    main(sys.argv[1])
