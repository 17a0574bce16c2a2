"""`results/REPORT.md`: each finding of the study (F1-F8, PAPER.md) with what this run measured and a
plain verdict. Reads only tidy tables: the per-seed scores (`tables.scores`), the model list and the
probe summaries.

Every comparison is paired over seeds (the same seed gives the same data order and student start for both
arms): mean difference and a two-sided 95% t-interval. Verdict: "supported" if the interval lies above
zero in the claimed direction, "not supported" if it lies on the other side, otherwise "inconclusive at
this scale" (always so with a single seed). Findings whose experiment this run did not include say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from atkd.report.analyses import analysis_scores, f3_lines, f4_lines, f7_lines
from atkd.report.stats import Paired, paired
from atkd.report.tables import AVERAGE, identical_atkd_runs, same_scores

ALTERNATIVES = ("kd_early", "kd_ta", "dkd")  # F8's other remedies, by their default config names


def _series(sc: pd.DataFrame, method: str, teacher: str, atkd: str, task: str = AVERAGE) -> pd.Series:
    sub = sc[
        (sc["method"] == method) & (sc["teacher"] == teacher) & (sc["atkd"] == atkd) & (sc["task"] == task)
    ]
    return sub.set_index("seed")["value"]


def _f1(sc: pd.DataFrame, params: dict[str, float]) -> list[str]:
    lines = ["## F1. A larger teacher can give a worse student", ""]
    found = False
    for method in sorted(set(sc["method"])):
        teachers = sorted(
            {t for t in sc.loc[(sc["method"] == method) & (sc["atkd"] == "off"), "teacher"] if t in params},
            key=params.get,
        )
        if len(teachers) < 2 or method == "teacher":
            continue
        found = True
        means = {t: _series(sc, method, t, "off").mean() for t in teachers}
        largest = teachers[-1]
        best = max(teachers[:-1], key=means.get)
        cmp = paired(_series(sc, method, largest, "off"), _series(sc, method, best, "off"))
        lines.append(
            f"- `{method}` (average score by teacher, smallest first): "
            + ", ".join(f"{t} {means[t]:.4f}" for t in teachers)
        )
        if cmp is not None:
            lines.append(
                f"  - largest teacher ({largest}) minus the best smaller one ({best}): {cmp.text()}; "
                f"the claim (largest is worse) is **{Paired(-cmp.mean, -cmp.high, -cmp.low, cmp.n).verdict}**"
            )
    if not found:
        lines.append("- Not measured: no method was run with two or more teachers.")
    else:
        lines.append(
            "- The best smaller teacher is picked after seeing the mean scores, which tilts each comparison"
            " towards the claim; the interval does not correct for that choice."
        )
    return lines + [""]


def _f2_f3(probes: pd.DataFrame | None, params: dict[str, float]) -> list[str]:
    lines = ["## F2. KD = TKD + UnC x DKD", ""]
    if probes is None or probes.empty:
        return lines + [
            "- Not measured: no probe summaries.",
            "",
            "## F3. DKD is suppressed in large teachers",
            "",
            "- Not measured: no probe summaries.",
            "",
        ]
    wide = probes.pivot_table(index="model", columns="metric", values="value")
    wide = wide.loc[sorted(wide.index, key=lambda m: params.get(m, math.inf))]
    residual = float(wide["identity_max_residual"].max())
    lines.append(
        f"- Largest |KD - TKD - UnC x DKD| over {int(wide['tokens'].sum())} probed tokens: {residual:.2e} "
        f"(float32 logits): **{'supported' if residual < 1e-3 else 'not supported'}** "
        "(an identity; this checks the implementation)."
    )
    lines += ["", "## F3. DKD is suppressed in large teachers (UnC shrinks as teachers grow)", ""]
    lines.append(
        "| teacher | params | mean UnC | share of UnC < 0.1 | KD share of TKD | KD share of UnC x DKD |"
    )
    lines.append("|---|---|---|---|---|---|")
    for model, r in wide.iterrows():
        lines.append(
            f"| {model} | {params.get(model, float('nan')):,.0f} | {r['unc_mean']:.4f} "
            f"| {r['unc_below_0.1']:.3f} | {r['share_tkd']:.3f} | {r['share_unc_dkd']:.3f} |"
        )
    unc = list(wide["unc_mean"])
    falling = all(b < a for a, b in zip(unc, unc[1:]))
    rising = all(b > a for a, b in zip(unc, unc[1:]))
    verdict = "supported" if falling else "not supported" if rising else "inconclusive (not monotone)"
    lines += [
        "",
        f"- Mean teacher UnC by size, smallest first: {', '.join(f'{u:.4f}' for u in unc)}: larger teachers "
        f"are more confident: **{verdict}** (one probe per teacher; no seeds to pair).",
    ]
    return lines


def _f5(sc: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """+ATKD minus without, per method and teacher. A +ATKD student identical (every seed and task) to an
    earlier method's +ATKD student at that teacher is the same objective trained twice (dkd with
    alpha = beta = 1 under ATKD is kd under ATKD): its comparison still counts (its baseline differs), and
    its row and the summary say that it shares its +ATKD side with the other method's row."""
    lines = ["## F5. ATKD improves every baseline", ""]
    lines += ["| method | teacher | +ATKD minus without (average score) | verdict |", "|---|---|---|---|"]
    twins = identical_atkd_runs(sc, order)
    verdicts = []
    shared = 0
    for (method, teacher), _ in sc[sc["atkd"] == "on"].groupby(["method", "teacher"]):
        cmp = paired(_series(sc, method, teacher, "on"), _series(sc, method, teacher, "off"))
        if cmp is None:
            continue
        verdicts.append(cmp.verdict)
        twin = twins.get((method, teacher))
        note = ""
        if twin is not None:
            shared += 1
            note = f" (its +ATKD student is identical to {twin} + ATKD: the same objective)"
        lines.append(f"| {method} | {teacher} | {cmp.text()} | {cmp.verdict}{note} |")
    if not verdicts:
        return lines[:2] + ["- Not measured: no method was run with and without ATKD.", ""]
    n_sup = sum(v == "supported" for v in verdicts)
    n_neg = sum(v.startswith("not supported") for v in verdicts)
    overall = (
        "supported"
        if n_sup == len(verdicts)
        else "not supported"
        if n_neg > 0 and n_sup == 0
        else "inconclusive at this scale"
    )
    note = (
        f" ({shared} of them share their +ATKD student with another row's, so they are not independent)"
        if shared
        else ""
    )
    lines += [
        "",
        f"- {n_sup} of {len(verdicts)} comparisons{note} favour ATKD beyond seed noise, {n_neg} go the other"
        f" way: the claim (consistent gains on every baseline) is **{overall}**.",
        "",
    ]
    return lines


def _f6(flat: pd.DataFrame | None) -> list[str]:
    lines = ["## F6. ATKD students have flatter loss landscapes", ""]
    if flat is None or flat.empty:
        return lines + ["- Not measured: no loss-landscape probe in this run.", ""]
    sharp = flat[flat["metric"] == "sharpness"]
    for (method, teacher), sub in sharp.groupby(["method", "teacher"]):
        on = sub[sub["atkd"] == "on"].set_index("seed")["value"]
        off = sub[sub["atkd"] == "off"].set_index("seed")["value"]
        cmp = paired(on, off)
        if cmp is None:
            continue
        claim = Paired(-cmp.mean, -cmp.high, -cmp.low, cmp.n)  # flatter = lower sharpness
        lines.append(
            f"- `{method}` at {teacher}: sharpness (mean loss rise along a filter-normalised direction) with "
            f"ATKD minus without: {cmp.text()}: flatter with ATKD is **{claim.verdict}**"
        )
    return lines + [""]


def _f8(sc: pd.DataFrame, reference: str) -> list[str]:
    """Reference + ATKD minus each other remedy (without ATKD) at the teachers both have. A remedy whose
    scores are identical to the reference + ATKD ones is the same student: said so, not compared."""
    lines = ["## F8. ATKD beats the other remedies for a large teacher", ""]
    present = [m for m in ALTERNATIVES if m in set(sc["method"])]
    if reference not in set(sc["method"]) or not present:
        return lines + [
            "- Not measured: the run has no early-stopped teacher, teacher assistant or DKD method.",
            "",
        ]
    for alt in present:
        teachers = set(sc.loc[(sc["method"] == alt) & (sc["atkd"] == "off"), "teacher"]) & set(
            sc.loc[(sc["method"] == reference) & (sc["atkd"] == "on"), "teacher"]
        )
        for teacher in sorted(teachers):
            if same_scores(sc, (reference, teacher, "on"), (alt, teacher, "off")):
                lines.append(
                    f"- {reference} + ATKD and `{alt}` at {teacher}: identical scores on every seed and task "
                    "(the same objective): not a comparison"
                )
                continue
            cmp = paired(_series(sc, reference, teacher, "on"), _series(sc, alt, teacher, "off"))
            if cmp is None:
                continue
            note = ""
            if same_scores(sc, (reference, teacher, "on"), (alt, teacher, "on")):
                note = (
                    f" (the same numbers as F5's `{alt}` row: {alt} + ATKD is identical to "
                    f"{reference} + ATKD)"
                )
            lines.append(
                f"- {reference} + ATKD minus `{alt}` at {teacher}: {cmp.text()}: **{cmp.verdict}**{note}"
            )
    return lines + [""]


def report_markdown(
    scores: pd.DataFrame,
    models: pd.DataFrame,
    probes: pd.DataFrame | None = None,
    landscapes: pd.DataFrame | None = None,
    analyses: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    reference: str = "kd",
    tasks: Sequence[str] = (),
    methods: Sequence[str] = (),
) -> str:
    """The text of REPORT.md from per-seed scores (`tables.scores`), models.csv and probe summaries;
    `methods` is the configured method order (which of two identical +ATKD students F5 counts)."""
    params = dict(zip(models["model"], models["params"].astype(float), strict=False))
    seeds = sorted(set(scores.loc[scores["method"] != "teacher", "seed"]))
    lines = [
        "# What this run shows about the study's findings",
        "",
        "Written by `atkd report` from the tidy result files. Scores are the per-task primary metric and"
        f" their average over {len(tasks) or 'the evaluated'} tasks ({', '.join(tasks)}); seeds: {seeds}."
        " Paired differences over seeds with a 95% t-interval; 'inconclusive at this scale' means the"
        " interval contains zero."
        f" With {len(seeds)} seed(s) each interval has {max(len(seeds) - 1, 0)} degree(s) of freedom, and"
        " the many comparisons below are not corrected for multiplicity: at 95% each one that has no real"
        " effect still comes out 'supported' or 'not supported' one time in twenty.",
        "",
    ]
    members = analysis_scores(scores, analyses or {})
    lines += _f1(scores, params)
    lines += _f2_f3(probes, params)
    lines += ["- Students trained with DKD only vs TKD only (average score, paired over seeds):"]
    lines += f3_lines(members) + [""]
    lines += ["## F4. TKD hurts on easy tokens and helps on hard ones", ""]
    lines += f4_lines(members) + [""]
    lines += _f5(scores, [reference, *methods])
    lines += _f6(landscapes)
    lines += ["## F7. Best k = 0.5 and lambda = 0.2", ""]
    lines += f7_lines(members) + [""]
    lines += _f8(scores, reference)
    return "\n".join(lines)
