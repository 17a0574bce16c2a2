"""KD against SFT, and KD between teachers, in results folders of this study (+ATKD off): paired by seed
and document with the report's hierarchical bootstrap (atkd.report.stats.Evidence).

    python compare.py RESULTS/noise30 [RESULTS/other ...] > compare.txt

Each folder's runs' eval/metrics.csv and eval/doc_scores.csv are read directly; a method is named
`<method>@<folder>`. For each folder: every kd teacher against sft, and the kd teachers against one
another (later-named teacher minus earlier one, teachers in the order of their folder names).
"""

from __future__ import annotations

import glob
import itertools
import sys
from pathlib import Path

import pandas as pd

from atkd.report.stats import Evidence
from atkd.report.tables import primary_metrics, scores


def load(folder: str, evaluation: str = "eval") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every +ATKD-off run's metrics and doc_scores of one folder, methods renamed `<method>@<folder>`."""
    tag = Path(folder).name
    out = []
    for name in ("metrics.csv", "doc_scores.csv"):
        parts = [pd.read_csv(f) for f in sorted(glob.glob(f"{folder}/runs/*/*/off/s*/{evaluation}/{name}"))]
        d = pd.concat(parts, ignore_index=True)
        d["teacher"] = d["teacher"].fillna("")
        out.append(d.assign(method=d["method"] + f"@{tag}"))
    return out[0], out[1]


def main(folders: list[str]) -> None:
    loaded = [load(f) for f in folders]
    metrics = pd.concat([m for m, _ in loaded], ignore_index=True)
    docs = pd.concat([d for _, d in loaded], ignore_index=True)
    primary = primary_metrics(metrics)
    evidence = Evidence(scores(metrics, primary), primary, docs)
    print("Mean score over seeds (average of the primary metrics):")
    avg = metrics[metrics.apply(lambda r: primary.get(r["task"]) == r["metric"], axis=1)]
    per_run = avg.groupby(["method", "teacher", "seed"])["value"].mean()
    for (method, teacher), g in per_run.groupby(level=[0, 1]):
        print(f"  {method:>18} {teacher or '-':>12}  {g.mean():.4f}  ({len(g)} seeds)")
    print()
    for folder in folders:
        tag = Path(folder).name
        kd = metrics[metrics["method"] == f"kd@{tag}"]
        teachers = sorted(set(kd["teacher"]))
        for t in teachers:
            cmp = evidence.compare((f"kd@{tag}", t, "off"), (f"sft@{tag}", "", "off"))
            print(f"{tag}: kd at {t} minus sft: {'not run' if cmp is None else cmp.text()}")
        for a, b in itertools.combinations(teachers, 2):
            cmp = evidence.compare((f"kd@{tag}", b, "off"), (f"kd@{tag}", a, "off"))
            print(f"{tag}: kd at {b} minus at {a}: {'not run' if cmp is None else cmp.text()}")


if __name__ == "__main__":
    main(sys.argv[1:])
