"""Per suite: mean over seeds of kd (largest teacher) minus sft, each records setting and budget, +ATKD off.

python per_suite.py RESULTS/regime-l18k RESULTS/regime-l6k RESULTS/regime-l3k > per_suite.md
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pandas as pd

from atkd.report.tables import primary_metrics

ORDER = ["dolly", "vicuna", "selfinst", "koala", "wizardlm", "mmlu", "drop", "bbh"]


def main(folders: list[str]) -> None:
    print("| records | epochs | " + " | ".join(ORDER) + " | avg |")
    print("|---|---|" + "---|" * (len(ORDER) + 1))
    for folder in folders:
        tag = Path(folder).name.removeprefix("regime-l")
        m = pd.concat(pd.read_csv(f) for f in glob.glob(f"{folder}/runs/*/*/off/s*/eval/metrics.csv"))
        m["teacher"] = m["teacher"].fillna("")
        primary = primary_metrics(m)
        m = m[[primary.get(t) == x for t, x in zip(m["task"], m["metric"], strict=True)]]
        means = m.groupby(["method", "teacher", "task"])["value"].mean()
        for kd, sft, budget in (("kd", "sft", "1x"), ("kd_b2", "sft_b2", "2x")):
            methods = set(means.index.get_level_values(0))
            if kd not in methods or sft not in methods:
                continue
            d = [means[(kd, "neox-208x6", t)] - means[(sft, "", t)] for t in ORDER]
            epochs = {"18k": 4, "6k": 8, "3k": 8}[tag] * (2 if budget == "2x" else 1)
            cells = " | ".join(f"{x:+.3f}" for x in d)
            print(f"| {tag} | {epochs} | {cells} | {sum(d) / len(d):+.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
