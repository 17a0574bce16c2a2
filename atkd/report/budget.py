"""The budget sweep: kd and kd + ATKD at several distillation budgets, at one teacher (REPORT.md block,
figures/budget_sweep.*).

The config declares it as methods that differ only in their budget (`budget:` multipliers of the
`distill` section) and a section naming them; the workflow resolves each member's budget and hands the
report

    {"teacher": "neox-208x6", "unit": "epochs", "members": {"kd_b05": 0.5, "kd": 1.0, "kd_b2": 2.0}}

(atkd.config.budget_sweep_plan). Scores are the per-seed task averages of `tables.scores`; REPORT.md's
comparisons are those of the other findings (atkd.report.stats: with an `Evidence`, a paired bootstrap
over seeds and documents), all made in `compare`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from atkd.report.figures import plt, save_figure
from atkd.report.stats import Evidence, paired, paired_bootstrap, reading
from atkd.report.tables import AVERAGE

UNITS = ("epochs", "steps")


def compare(
    evidence: Evidence | None,
    teacher: str,
    a: tuple[str, float, pd.Series],
    b: tuple[str, float, pd.Series] | None = None,
) -> Any:
    """The sweep's one use of atkd.report.stats. With `b` None: member `a`'s +ATKD effect (its +ATKD arm
    minus its arm without, at `teacher`); else the effect of `a` minus the effect of `b`. A member is
    (method, budget, per-seed effects). With `evidence` the documents are resampled with the seeds (the
    four arms paired by seed and document); without, or if the arms do not share seeds and documents, the
    seeds only, from the per-seed average scores."""
    arms = [((a[0], teacher, "on"), (a[0], teacher, "off"))]
    if b is not None:
        arms.append(((b[0], teacher, "on"), (b[0], teacher, "off")))
    common = sorted(set(a[2].index) & (set(a[2].index) if b is None else set(b[2].index)))
    if evidence is not None and common:
        pairs = [evidence.arrays(*arm, seeds=common) for arm in arms]
        if b is None and pairs[0] is not None:
            return paired_bootstrap(*pairs[0], n_boot=evidence.n_boot, seed=evidence.seed)
        if b is not None and None not in pairs:
            effects = [[x - y for x, y in zip(*pair, strict=True)] for pair in pairs]
            if [e.shape for e in effects[0]] == [e.shape for e in effects[1]]:
                return paired_bootstrap(*effects, n_boot=evidence.n_boot, seed=evidence.seed)
    if b is None:
        return paired(a[2], pd.Series(0.0, index=a[2].index))
    return paired(a[2].loc[common], b[2].loc[common])


def parse_budget_sweep(raw: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate `{teacher, unit: epochs|steps, members: {method: budget}}` (a mapping or its JSON text);
    None or empty: no sweep."""
    if raw is None or raw == "":
        return None
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    if not data:
        return None
    if set(data) != {"teacher", "unit", "members"} or not isinstance(data["members"], Mapping):
        raise ValueError(f"budget_sweep: expected {{teacher, unit, members: {{method: budget}}}}, got {data}")
    if data["unit"] not in UNITS:
        raise ValueError(f"budget_sweep.unit: expected one of {', '.join(UNITS)}, got {data['unit']!r}")
    members = {}
    for method, budget in data["members"].items():
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
            raise ValueError(f"budget_sweep.members.{method}: expected a budget > 0, got {budget!r}")
        members[str(method)] = float(budget)
    if len(members) < 2 or len(set(members.values())) != len(members):
        raise ValueError(f"budget_sweep.members: need two or more distinct budgets, got {members}")
    return {"teacher": str(data["teacher"]), "unit": data["unit"], "members": members}


def budget_scores(per_seed: pd.DataFrame, sweep: Mapping[str, Any]) -> pd.DataFrame:
    """Per-seed average scores of the sweep's runs at its teacher: method, budget, atkd, seed, value."""
    avg = per_seed[(per_seed["task"] == AVERAGE) & (per_seed["teacher"] == sweep["teacher"])]
    sub = avg[avg["method"].isin(list(sweep["members"]))]
    out = sub.assign(budget=sub["method"].map(sweep["members"]))
    return out[["method", "budget", "atkd", "seed", "value"]].sort_values(["budget", "atkd", "seed"])


def _arm(scores: pd.DataFrame, method: str, atkd: str) -> pd.Series:
    sub = scores[(scores["method"] == method) & (scores["atkd"] == atkd)]
    return sub.set_index("seed")["value"].astype(float)


def budget_effects(scores: pd.DataFrame) -> pd.DataFrame:
    """Per member and seed: the score without and with ATKD and the effect (with minus without)."""
    rows = []
    for (method, budget), _ in scores.groupby(["method", "budget"], sort=False):
        off, on = _arm(scores, method, "off"), _arm(scores, method, "on")
        for seed in sorted(off.index.intersection(on.index)):
            rows.append(dict(method=method, budget=budget, seed=seed, off=off[seed], on=on[seed]))
    df = pd.DataFrame(rows, columns=["method", "budget", "seed", "off", "on"])
    return df.assign(effect=df["on"] - df["off"]).sort_values(["budget", "seed"], ignore_index=True)


def budget_figure(scores: pd.DataFrame, sweep: Mapping[str, Any], stem: Path) -> list[Path]:
    """Two panels against the budget (log scale): the average score without (solid) and with (dashed)
    ATKD, and the ATKD effect (with minus without); means over seeds as lines, each seed as a dot."""
    effects = budget_effects(scores)
    if effects.empty:
        raise ValueError(f"budget sweep: no member has scores with and without ATKD at {sweep['teacher']}")
    unit = sweep["unit"]
    budgets = sorted(set(effects["budget"]))
    names = effects.drop_duplicates("budget").set_index("budget")["method"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.9))
    for arm, ls, marker, label in (("off", "-", "o", "without ATKD"), ("on", "--", "s", "+ ATKD")):
        left.scatter(effects["budget"], effects[arm], color="black", marker=marker, s=10, alpha=0.35)
        mean = effects.groupby("budget")[arm].mean()
        left.plot(mean.index, mean.values, color="black", ls=ls, marker=marker, label=f"{label} (mean)")
    left.set_ylabel("student score (average over tasks)")
    left.set_title("score by budget", fontsize=9)
    left.legend(fontsize=8, frameon=False)
    right.axhline(0.0, color="grey", lw=0.8)
    right.scatter(effects["budget"], effects["effect"], color="black", s=12, alpha=0.4, label="one seed")
    mean = effects.groupby("budget")["effect"].mean()
    right.plot(mean.index, mean.values, color="black", marker="D", label="mean over seeds")
    right.set_ylabel("+ATKD minus without (average score)")
    right.set_title("ATKD effect by budget", fontsize=9)
    right.legend(fontsize=8, frameon=False)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [f"{b:g}\n{names[b]}" for b in budgets], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(f"distillation budget ({unit})")
        ax.grid(alpha=0.3)
    per_member = effects.groupby("budget")["seed"].nunique()
    counts = "/".join(str(per_member[b]) for b in sorted(per_member.index))
    title = f"Budget sweep at teacher {sweep['teacher']}: {counts} seeds by budget; dots: single seeds"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)


def budget_lines(
    scores: pd.DataFrame, sweep: Mapping[str, Any], evidence: Evidence | None = None
) -> list[str]:
    """REPORT.md's budget-sweep block: a row per budget (means, paired +ATKD effect, verdict), then the
    effect at the smallest budget minus at the largest (`compare`, with `evidence` where given)."""
    unit, teacher = sweep["unit"], sweep["teacher"]
    lines = ["## Budget sweep: the ATKD effect against the distillation budget", ""]
    effects = budget_effects(scores)
    missing = [m for m in sweep["members"] if m not in set(effects["method"])]
    if effects.empty:
        return lines + [f"- Not measured: no member has scores with and without ATKD at {teacher}.", ""]
    lines += [
        f"Members at teacher {teacher}: "
        + ", ".join(f"`{m}` {b:g} {unit}" for m, b in sweep["members"].items())
        + ". Average score over tasks; +ATKD minus without paired by seed (and by document where per-document"
        " scores exist), as in F5.",
        "",
        f"| budget ({unit}) | method | without ATKD | + ATKD | +ATKD minus without | verdict |",
        "|---|---|---|---|---|---|",
    ]
    per_budget = {}
    for (budget, method), rows in effects.groupby(["budget", "method"], sort=True):
        rows = rows.set_index("seed")
        per_budget[budget] = (method, budget, rows["effect"])
        cmp = compare(evidence, teacher, per_budget[budget])
        lines.append(
            f"| {budget:g} | {method} | {rows['off'].mean():.4f} | {rows['on'].mean():.4f} | {cmp.text()} "
            f"| {cmp.verdict} |"
        )
    lines.append("")
    if missing:
        lines.append(f"- Not measured: {', '.join(missing)} (no scores with and without ATKD at {teacher}).")
    if len(per_budget) >= 2:
        low, high = min(per_budget), max(per_budget)
        cmp = compare(evidence, teacher, per_budget[low], per_budget[high])
        # Two-sided: does ATKD's effect (signed, +ATKD minus without) differ between the two budgets?
        if cmp.verdict_for(1) == "supported":
            verdict = f"ATKD's effect is larger at {low:g} {unit} (the interval excludes 0)"
        elif cmp.verdict_for(-1) == "supported":
            verdict = f"ATKD's effect is larger at {high:g} {unit} (the interval excludes 0)"
        else:
            verdict = cmp.verdict_for(1)
        lines.append(
            f"- ATKD effect (signed) at {low:g} {unit} minus at {high:g} {unit}: {cmp.text()}: **{verdict}**."
        )
    return lines + convergence_lines(scores, sweep, evidence) + [""]


def convergence_lines(
    scores: pd.DataFrame, sweep: Mapping[str, Any], evidence: Evidence | None = None
) -> list[str]:
    """Convergence along the sweep: each member minus the member of the next smaller budget, without and
    with ATKD, paired by seed (and document, with `evidence`). The default's convergence test: the next
    budget's gain is within its MDE."""
    unit, teacher = sweep["unit"], sweep["teacher"]
    budgets = scores.drop_duplicates("budget").sort_values("budget").set_index("budget")["method"]
    lines = []
    for (low, small), (high, large) in zip(budgets.items(), list(budgets.items())[1:], strict=False):
        for atkd, label in (("off", "without ATKD"), ("on", "with ATKD")):
            a, b = _arm(scores, large, atkd), _arm(scores, small, atkd)
            if not len(a.index.intersection(b.index)):
                continue
            arms = (large, teacher, atkd), (small, teacher, atkd)
            cmp = (None if evidence is None else evidence.compare(*arms)) or paired(a, b)
            said = reading(cmp, "still gaining", "lower at the larger budget", "no gain")
            lines.append(
                f"- Convergence, {label}: `{large}` ({high:g} {unit}) minus `{small}` ({low:g} {unit}):"
                f" {cmp.text()}: **{said}**."
            )
    return lines
