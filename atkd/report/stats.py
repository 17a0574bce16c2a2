"""Paired comparisons over seeds: the one statistic every verdict of REPORT.md rests on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats as st


@dataclass(frozen=True)
class Paired:
    """A paired comparison over seeds: mean of (a - b), its 95% interval, the seeds used."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "inconclusive at this scale (one seed)"
        if self.low > 0:
            return "supported"
        if self.high < 0:
            return "not supported (the opposite direction)"
        return "inconclusive at this scale"

    def text(self) -> str:
        if self.n < 2:
            return f"{self.mean:+.4f} (n=1)"
        return f"{self.mean:+.4f} [95% CI {self.low:+.4f}, {self.high:+.4f}] (n={self.n} seeds)"


def paired(a: pd.Series, b: pd.Series) -> Paired | None:
    """Paired difference a - b over the seeds both have (Series indexed by seed); None if no overlap."""
    both = a.index.intersection(b.index)
    if len(both) == 0:
        return None
    d = (a.loc[both] - b.loc[both]).astype(float)
    mean = float(d.mean())
    if len(d) < 2:
        return Paired(mean, math.nan, math.nan, len(d))
    half = float(st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return Paired(mean, mean - half, mean + half, len(d))
