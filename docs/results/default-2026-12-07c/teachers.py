"""The teachers against each other, paired over documents (the report's bootstrap; one evaluation each,
so documents only): does the teacher ladder rise with size?

    python teachers.py RESULTS > teachers.txt    (RESULTS: the run's results/, with doc_scores.csv)
"""

from __future__ import annotations

import sys

from atkd.report.stats import Evidence
from atkd.report.tables import load_doc_scores, load_metrics, primary_metrics, scores

PAIRS = [("neox-208x6", "neox-128x4"), ("neox-208x6", "neox-64x2"), ("neox-128x4", "neox-64x2")]


def main(results: str) -> None:
    metrics = load_metrics(f"{results}/metrics.csv")
    primary = primary_metrics(metrics)
    evidence = Evidence(scores(metrics, primary), primary, load_doc_scores(f"{results}/doc_scores.csv"))
    for a, b in PAIRS:
        cmp = evidence.compare(("teacher", a, "off"), ("teacher", b, "off"))
        print(f"teacher {a} minus {b}: {cmp.text()}")


if __name__ == "__main__":
    main(sys.argv[1])
