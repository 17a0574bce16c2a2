"""Paired comparisons of students: the statistics every verdict of REPORT.md rests on.

A comparison of arm A with arm B (e.g. kd + ATKD vs kd at one teacher) has, per suite t, a score
x[s, d] for every seed s (training run) and document d of both arms. Students of a comparison are
evaluated on the same documents (the suites are fixed files), so the arms pair by seed and by
(task, document id), and only the differences d_t[s, d] = A_t[s, d] - B_t[s, d] matter. The statistic
is the difference of the average scores (the mean over suites of the suite mean, then over seeds):

    delta = (1/T) sum_t mean_{s, d} d_t[s, d]

Its uncertainty comes from a hierarchical paired bootstrap (`paired_bootstrap`): each of B replicates
draws S seeds with replacement (one draw for both arms and every suite) and, in each suite, D_t
documents with replacement (one draw for both arms and every seed: seeds and documents are crossed),
and recomputes delta. Reported: delta, the 95% percentile interval of the replicates, the bootstrap
standard error SE (their standard deviation) and the minimal detectable effect

    MDE = (z_0.975 + z_0.80) * SE = (1.960 + 0.842) * SE = 2.80 * SE,

the true effect that a two-sided test at the 5% level detects with 80% power. `Components` splits the
variance of delta into a seed part and, per suite, a document part and a residual (seed x document)
part, so that the MDE can be predicted for other numbers of seeds and documents (`Components.mde`,
`Components.seeds_for`).

A suite without per-document scores enters with one column, its per-seed score (seeds only). With one
seed only documents are resampled: seed-to-seed variation is then not measured, and `Comparison.text`
says so. Seed and document weights are rescaled (Rao and Wu, 1988) so that each part's variance is
unbiased (a plain bootstrap's is (n - 1)/n of it: half with two seeds). One known bias remains: as seeds
and documents are drawn independently, it counts the seed x document residual up to three times (too
wide where that residual dominates, e.g. 0/1 accuracies of two similar students). With few seeds the
percentile interval still rests on few distinct seed values (`Comparison.scale` says so). The variance
components (`Components`, two-way ANOVA) are unbiased: plan with
them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

N_BOOT = 2000  # bootstrap replicates
BOOT_SEED = 13  # fixed: the same scores always give the same interval
LEVEL = 0.95  # two-sided interval, and the test level of the MDE
POWER = 0.80
Z_MDE = NormalDist().inv_cdf(1 - (1 - LEVEL) / 2) + NormalDist().inv_cdf(POWER)  # 2.8016

Arm = tuple[str, str, str]  # (method, teacher, atkd): one student configuration, over seeds


@dataclass(frozen=True)
class Components:
    """Variance components of a paired difference of average scores, from a (seeds x documents) table per
    suite: `seed_var`, the variance of the suite-averaged seed effect (nan with one seed); per suite
    `doc_var`, the variance of the document effect, and `resid_var`, the seed x document residual;
    `docs` per suite (1: a suite without per-document scores, whose noise is in the seed part). The
    variance of delta with S seeds and D_t documents is

        seed_var / S + (1/T^2) sum_t (doc_var_t / D_t + resid_var_t / (S D_t)).
    """

    seeds: int
    docs: tuple[int, ...]
    seed_var: float
    doc_var: tuple[float, ...]
    resid_var: tuple[float, ...]

    def _parts(self, docs: int | None) -> tuple[float, float]:
        """(the part that does not shrink with seeds, the part that shrinks as 1/S) at `docs` per suite."""
        t = len(self.docs)
        fixed, per_seed = 0.0, self.seed_var
        for n, dv, rv in zip(self.docs, self.doc_var, self.resid_var, strict=True):
            m = n if docs is None or n == 1 else docs
            fixed += dv / m / t**2
            per_seed += rv / m / t**2
        return fixed, per_seed

    def variance(self, seeds: int | None = None, docs: int | None = None) -> float:
        """Predicted variance of delta with `seeds` seeds and `docs` documents per suite (default: as
        measured); nan when the seed part is unknown (one seed)."""
        s = self.seeds if seeds is None else int(seeds)
        if s < 1 or (docs is not None and docs < 1):
            raise ValueError(f"need seeds >= 1 and docs >= 1, got {seeds} and {docs}")
        fixed, per_seed = self._parts(docs)
        return fixed + per_seed / s

    def mde(self, seeds: int | None = None, docs: int | None = None) -> float:
        """Predicted MDE = Z_MDE * sqrt(variance) with `seeds` seeds and `docs` documents per suite."""
        return Z_MDE * math.sqrt(self.variance(seeds, docs))

    def seeds_for(self, target: float, docs: int | None = None) -> int | None:
        """The fewest seeds whose predicted MDE is at most `target` at `docs` documents per suite; None
        when no number of seeds reaches it (the document part alone is larger) or with one seed."""
        if math.isnan(self.seed_var):
            return None
        fixed, per_seed = self._parts(docs)
        room = (target / Z_MDE) ** 2 - fixed
        if room <= 0:
            return None
        s = max(1, math.ceil(per_seed / room))
        while s > 1 and self.mde(s - 1, docs) <= target:  # guard against rounding in the division
            s -= 1
        return s


def variance_components(diffs: Sequence[np.ndarray]) -> Components:
    """Estimate `Components` from per-suite (seeds x documents) differences: two-way ANOVA without
    replication per suite (mean squares of documents and residual), and the seed part from the spread of
    the suite-averaged per-seed means less their residual noise; negative estimates are set to 0."""
    seeds = diffs[0].shape[0]
    docs, doc_var, resid_var = [], [], []
    for d in diffs:
        n = d.shape[1]
        docs.append(n)
        if n == 1:
            doc_var.append(0.0)
            resid_var.append(0.0)
        elif seeds == 1:  # document and residual parts cannot be told apart: all counts as documents
            doc_var.append(float(d[0].var(ddof=1)))
            resid_var.append(0.0)
        else:
            grand, rows, cols = d.mean(), d.mean(axis=1), d.mean(axis=0)
            ms_doc = seeds * float(((cols - grand) ** 2).sum()) / (n - 1)
            resid = d - rows[:, None] - cols[None, :] + grand
            ms_res = float((resid**2).sum()) / ((seeds - 1) * (n - 1))
            doc_var.append(max(0.0, (ms_doc - ms_res) / seeds))
            resid_var.append(ms_res)
    t = len(diffs)
    if seeds >= 2:
        per_seed = np.mean([d.mean(axis=1) for d in diffs], axis=0)
        noise = sum(r / n for r, n in zip(resid_var, docs, strict=True)) / t**2
        seed_var = max(0.0, float(per_seed.var(ddof=1)) - noise)
    else:
        seed_var = math.nan
    return Components(seeds, tuple(docs), seed_var, tuple(doc_var), tuple(resid_var))


FEW_SEEDS = 5  # below this many seeds the seed-to-seed spread rests on too few values


@dataclass(frozen=True)
class Comparison:
    """A paired comparison A - B: the estimate of delta, its 95% percentile interval, the bootstrap
    standard error, the seeds and documents it rests on and the variance components (`mde_for`)."""

    estimate: float
    low: float
    high: float
    se: float
    seeds: int
    docs: int  # documents resampled, over the suites with per-document scores
    suites: int
    seeds_only: int  # suites without per-document scores (their per-seed score stands in)
    components: Components

    @property
    def mde(self) -> float:
        """The minimal detectable effect, (z_0.975 + z_0.80) * SE."""
        return Z_MDE * self.se

    def mde_for(self, seeds: int, docs: int | None = None) -> float:
        """The MDE predicted for `seeds` seeds and `docs` documents per suite (planning: `Components`)."""
        return self.components.mde(seeds, docs)

    @property
    def resampled(self) -> bool:
        """Whether anything varies between replicates (not so with one seed and no per-document scores)."""
        return self.seeds > 1 or self.docs > 0

    def verdict_for(self, direction: int = 1) -> str:
        """The verdict on the claim that the effect has the sign of `direction` (+1: A > B, -1: A < B):
        supported when the interval lies on that side of 0, not supported when on the other side, else
        inconclusive (with the effect's size against the MDE)."""
        if not self.resampled:
            return "inconclusive: one seed and no per-document scores (nothing to resample)"
        low, high = (self.low, self.high) if direction > 0 else (-self.high, -self.low)
        if low > 0:
            return "supported"
        if high < 0:
            return "not supported (opposite direction)"
        if abs(self.estimate) < self.mde:
            return f"inconclusive: |effect| {abs(self.estimate):.4f} is below the MDE {self.mde:.4f}"
        return "inconclusive: the 95% interval contains 0"

    @property
    def verdict(self) -> str:
        """The verdict on the claim A > B."""
        return self.verdict_for(1)

    def scale(self) -> str:
        """What the comparison rests on, e.g. `5 seeds x 800 docs`, with what it could not resample."""
        text = f"{self.seeds} seed{'s' * (self.seeds != 1)}"
        if self.docs:
            text += f" x {self.docs} docs"
        notes = []
        if self.seeds == 1:
            notes.append("documents only: seed-to-seed variation not measured")
        elif self.seeds < FEW_SEEDS:
            notes.append(f"only {self.seeds} seeds: the interval's seed part rests on {self.seeds} values")
        if self.seeds_only == self.suites:
            notes.append("no per-document scores: seeds only")
        elif self.seeds_only:
            notes.append(f"{self.seeds_only} of {self.suites} suites without per-document scores")
        return text + "".join(f"; {n}" for n in notes)

    def text(self) -> str:
        """`+0.0123 [95% CI -0.0040, +0.0290], MDE 0.0231 (5 seeds x 800 docs)`."""
        return (
            f"{self.estimate:+.4f} [95% CI {self.low:+.4f}, {self.high:+.4f}], MDE {self.mde:.4f}"
            f" ({self.scale()})"
        )


@functools.lru_cache(maxsize=32)
def _weights(n: int, n_boot: int, seed: int, stream: int) -> np.ndarray:
    """B x n bootstrap weights: each row the counts of n draws with replacement, divided by n, with the
    deviations from 1/n scaled by sqrt(n / (n - 1)) (the rescaled bootstrap of Rao and Wu, 1988): a plain
    bootstrap's variance of a mean is (n - 1)/n of the unbiased one, half of it with two seeds; rescaled,
    it is unbiased (weights may then be negative; the statistic is linear in them). Cached, so
    comparisons of the same shape share their draws (common random numbers; deterministic)."""
    rng = np.random.default_rng([seed, stream, n])
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    if n > 1:
        w = 1.0 / n + (w - 1.0 / n) * np.sqrt(n / (n - 1))
    w.flags.writeable = False
    return w


def bootstrap_differences(
    diffs: Sequence[np.ndarray], *, n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL
) -> Comparison:
    """The hierarchical bootstrap of delta from per-suite (seeds x documents) paired differences (rows:
    the same seeds in every suite). A replicate is sum_t (w_b . D_t v_bt) / T with w_b the seed weights
    (shared by every suite) and v_bt suite t's document weights (shared by every seed): vectorised over
    replicates, B x S x D_t operations per suite."""
    diffs = [np.asarray(d, dtype=float) for d in diffs]
    if not diffs:
        raise ValueError("a comparison needs at least one suite")
    shapes = [d.shape for d in diffs]
    if any(len(s) != 2 or 0 in s for s in shapes) or len({s[0] for s in shapes}) != 1:
        raise ValueError(f"expected (seeds x documents) arrays with one number of seeds, got {shapes}")
    if not all(np.isfinite(d).all() for d in diffs):
        raise ValueError("scores must be finite (a missing document or seed?)")
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    seeds = shapes[0][0]
    w = _weights(seeds, n_boot, seed, 0)
    reps = np.zeros(n_boot)
    for t, d in enumerate(diffs):
        if d.shape[1] == 1:
            reps += w @ d[:, 0]
        else:
            v = _weights(d.shape[1], n_boot, seed, t + 1)
            reps += np.einsum("bs,bs->b", w, v @ d.T)
    reps /= len(diffs)
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    with_docs = [d.shape[1] for d in diffs if d.shape[1] > 1]
    return Comparison(
        estimate=float(np.mean([d.mean() for d in diffs])),
        low=float(low),
        high=float(high),
        se=float(reps.std(ddof=1)),
        seeds=seeds,
        docs=sum(with_docs),
        suites=len(diffs),
        seeds_only=len(diffs) - len(with_docs),
        components=variance_components(diffs),
    )


def paired_bootstrap(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> Comparison:
    """Compare arm A with arm B: per suite one (seeds x documents) array per arm, rows the same seeds and
    columns the same documents in both (the pairing); see the module docstring for the statistic."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"the arms have {len(a)} and {len(b)} suites")
    diffs = []
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"suite {t}: the arms' arrays differ in shape, {x.shape} and {y.shape}")
        diffs.append(x - y)
    return bootstrap_differences(diffs, n_boot=n_boot, seed=seed, level=level)


def paired(a: pd.Series, b: pd.Series, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Comparison | None:
    """A - B over the seeds both have (Series indexed by seed), bootstrapping seeds only (for one number
    per seed, e.g. a sharpness or an average score without per-document scores); None if no overlap."""
    both = a.index.intersection(b.index).sort_values()
    if len(both) == 0:
        return None
    x = a.loc[both].to_numpy(dtype=float)[:, None]
    y = b.loc[both].to_numpy(dtype=float)[:, None]
    return paired_bootstrap([x], [y], n_boot=n_boot, seed=seed)


class Evidence:
    """The scores comparisons are drawn from: every arm's per-seed task scores (`tables.scores`) and,
    where given, its per-document scores of each task's primary metric (doc_scores.csv). A task without
    per-document scores for both arms enters with its per-seed score (seeds only)."""

    def __init__(
        self,
        per_seed: pd.DataFrame,
        primary: Mapping[str, str],
        docs: pd.DataFrame | None = None,
        *,
        n_boot: int = N_BOOT,
        seed: int = BOOT_SEED,
    ) -> None:
        self.tasks = sorted(primary)
        self.n_boot, self.seed = n_boot, seed
        sub = per_seed[per_seed["task"].isin(self.tasks)]
        self._suite = {
            arm: g.pivot(index="seed", columns="task", values="value").reindex(columns=self.tasks).dropna()
            for arm, g in sub.groupby(["method", "teacher", "atkd"])
        }
        self._docs = pd.DataFrame() if docs is None else docs
        self._groups: dict[tuple[str, str, str, str], np.ndarray] = {}
        self._pivots: dict[tuple[str, str, str, str], pd.DataFrame] = {}
        if docs is not None and len(docs):
            keep = np.zeros(len(docs), dtype=bool)
            for task, metric in primary.items():
                keep |= ((docs["task"] == task) & (docs["metric"] == metric)).to_numpy()
            self._docs = docs[keep].reset_index(drop=True)
            self._groups = self._docs.groupby(["method", "teacher", "atkd", "task"]).indices

    def has_arm(self, arm: Arm) -> bool:
        """Whether `arm` (method, teacher, atkd) has per-seed scores."""
        return arm in self._suite

    @property
    def has_docs(self) -> bool:
        """Whether any per-document scores were given."""
        return bool(self._groups)

    def _doc_table(self, arm: Arm, task: str) -> pd.DataFrame | None:
        key = (*arm, task)
        if key not in self._pivots:
            rows = self._groups.get(key)
            if rows is None:
                return None
            part = self._docs.iloc[rows]
            self._pivots[key] = part.pivot(index="seed", columns="doc", values="value")
        return self._pivots[key]

    def arrays(
        self, a: Arm, b: Arm, seeds: Sequence[int] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
        """Per task the paired (seeds x documents) arrays of arms `a` and `b` over the seeds both have
        (every task scored; only those in `seeds` if given), documents by id; None if no seed is shared."""
        sa, sb = self._suite.get(a), self._suite.get(b)
        if sa is None or sb is None:
            return None
        seeds = sorted(set(sa.index) & set(sb.index) & set(sa.index if seeds is None else seeds))
        if not seeds:
            return None
        xa, xb = [], []
        for task in self.tasks:
            da, db = self._doc_table(a, task), self._doc_table(b, task)
            if da is not None and db is not None and set(seeds) <= set(da.index) & set(db.index):
                pa, pb = da.loc[seeds], db.loc[seeds]
                docs = pa.columns.intersection(pb.columns)
                docs = docs[(pa[docs].notna().all() & pb[docs].notna().all()).to_numpy()]
                if len(docs):
                    xa.append(pa[docs].to_numpy())
                    xb.append(pb[docs].to_numpy())
                    continue
            xa.append(sa.loc[seeds, [task]].to_numpy())
            xb.append(sb.loc[seeds, [task]].to_numpy())
        return xa, xb

    def compare(self, a: Arm, b: Arm) -> Comparison | None:
        """The paired comparison a - b of two arms (method, teacher, atkd); None without shared seeds."""
        arrays = self.arrays(a, b)
        if arrays is None:
            return None
        return paired_bootstrap(*arrays, n_boot=self.n_boot, seed=self.seed)


def reading(
    cmp: Comparison, above: str = "A above B", below: str = "A below B", none: str = "no difference"
) -> str:
    """What the interval says, with no direction claimed; `above`, `below` and `none` name the outcomes
    (the convergence check reads them as a budget's gain)."""
    if not cmp.resampled:
        return "not resolved: one seed and no per-document scores"
    if cmp.low > 0:
        return f"{above} (the 95% interval excludes 0)"
    if cmp.high < 0:
        return f"{below} (the 95% interval excludes 0)"
    if abs(cmp.estimate) < cmp.mde:
        return f"{none} resolved: |effect| {abs(cmp.estimate):.4f} is below the MDE {cmp.mde:.4f}"
    return f"{none} resolved: the 95% interval contains 0"
