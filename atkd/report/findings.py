"""`results/REPORT.md`: each finding of the study (F1-F8, docs/study.md) with what this run measured and a
plain verdict, then how many seeds and documents would resolve an effect of 0.02. Reads only tidy tables:
the per-seed scores (`tables.scores`), the per-document scores (doc_scores.csv), the runs' objective keys
(runs.csv), the chance levels (chance.csv), the model list and the probe summaries.

Every comparison of students is paired over seeds (the same seed gives the same data order and student
start for both arms) and documents (the same suites) and rests on atkd.report.stats' hierarchical
bootstrap: the difference of average scores, its 95% percentile interval and the minimal detectable
effect MDE = (z_0.975 + z_0.80) * SE. Verdict: "supported" if the interval lies on the claimed side of
zero, "not supported (opposite direction)" if it lies on the other side, otherwise "inconclusive" with
the effect's size against the MDE. Two students are "the same objective" only when runs.csv gives them
equal objective keys (their resolved training configurations), never because their scores tie. Findings
whose experiment this run did not include say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from atkd.report.analyses import analysis_scores, f3_lines, f4_lines, f7_lines
from atkd.report.stats import FEW_SEEDS, LEVEL, N_BOOT, POWER, Z_MDE, Comparison, Evidence, paired, reading
from atkd.report.tables import AVERAGE, arm_objectives, same_objective, shared_atkd_objectives

ALTERNATIVES = ("kd_early", "kd_ta", "dkd")  # F8's other remedies, by their default config names
MDE_TARGET = 0.02  # the effect the power section sizes the study for


def _series(sc: pd.DataFrame, method: str, teacher: str, atkd: str, task: str = AVERAGE) -> pd.Series:
    sub = sc[
        (sc["method"] == method) & (sc["teacher"] == teacher) & (sc["atkd"] == atkd) & (sc["task"] == task)
    ]
    return sub.set_index("seed")["value"]


def _f1(sc: pd.DataFrame, params: dict[str, float], evidence: Evidence) -> list[str]:
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
        cmp = evidence.compare((method, largest, "off"), (method, best, "off"))
        lines.append(
            f"- `{method}` (average score by teacher, smallest first): "
            + ", ".join(f"{t} {means[t]:.4f}" for t in teachers)
        )
        if cmp is not None:
            lines.append(
                f"  - largest teacher ({largest}) minus the best smaller one ({best}): {cmp.text()}; "
                f"the claim (largest is worse) is **{cmp.verdict_for(-1)}**"
            )
    if not found:
        lines.append("- Not measured: no method was run with two or more teachers.")
    else:
        lines.append(
            "- The best smaller teacher is picked after seeing the mean scores, which tilts each comparison"
            " towards the claim; the interval does not correct for that choice."
        )
    return lines + [""]


def load_reference_probes(tables: Mapping[str, Path | str]) -> pd.DataFrame | None:
    """Other runs' probe tables (tables/probes.csv: one row per model, one column per metric) as one
    wide frame indexed by `model (label)`; None without any."""
    frames = []
    for label, path in tables.items():
        wide = pd.read_csv(path)
        missing = [c for c in ("model", *PROBE_COLUMNS) if c not in wide.columns]
        if missing:
            raise ValueError(f"{path}: not a probes table (tables/probes.csv); missing columns {missing}")
        frames.append(wide.assign(model=wide["model"].astype(str) + f" ({label})").set_index("model"))
    return pd.concat(frames) if frames else None


# the probe metrics F3 shows per teacher
PROBE_COLUMNS = ("unc_mean", "unc_below_0.1", "share_tkd", "share_unc_dkd")


def sparse_lines(rows: pd.DataFrame) -> list[str]:
    """REPORT.md's block on the sparse cache: per teacher and K, each divergence's loss error and
    gradient cosine against the dense teacher (rows of `atkd sparse-accuracy`)."""
    lines = ["## Sparse teacher cache: a top-K teacher against the dense one", ""]
    lines.append(
        "Measured on the probed records (atkd sparse-accuracy): the loss and its gradient in the student"
        " logits against the dense teacher and against the top-K view as the cache stores it. UnC, TKD and"
        " the +ATKD split are exact by construction (docs/losses.md); the rest is approximated."
    )
    lines += [
        "",
        "| teacher | K | bytes per position | tail mass | target in top K | loss | +ATKD | loss rel. error"
        " | gradient cosine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples(index=False):
        lines.append(
            f"| {r.teacher} | {r.k} | {r.bytes_per_position} (dense {r.dense_bytes_per_position})"
            f" | {float(r.tail_mass_mean):.4f} | {float(r.target_in_topk):.3f} | {r.loss} | {r.atkd}"
            f" | {float(r.loss_rel_error):.2e} | {float(r.grad_cosine):.4f} |"
        )
    return lines + [""]


def _epochs(runs: pd.DataFrame | None, method: str, teacher: str) -> set[str]:
    """The training budgets (epochs, as runs.csv writes them) of a method's runs without ATKD at a
    teacher; empty where runs.csv is absent or has no epochs column (written before it had one)."""
    if runs is None or "epochs" not in runs.columns:
        return set()
    own = runs[(runs["method"] == method) & (runs["teacher"] == teacher) & (runs["atkd"] == "off")]
    return set(own["epochs"]) - {""}


def _regime(
    sc: pd.DataFrame,
    reference: str,
    params: dict[str, float],
    evidence: Evidence,
    runs: pd.DataFrame | None = None,
) -> list[str]:
    """Whether the reference KD student sits between a teacher-free baseline (SFT) and its teacher, as in
    the study's regime: paired over the seeds both students have; the teacher is one model, so its side is
    a comparison of means. Where runs.csv gives each run's epochs, the reference is compared only with a
    baseline trained for the same budget (a 4-epoch SFT says nothing about a 2-epoch KD student)."""
    lines = [
        "## Regime: the distilled student between SFT and its teacher",
        "",
        "Means over each arm's seeds; each difference over the seeds both students have.",
        "",
    ]
    students = sc[~sc["method"].isin(["teacher", "base"]) & (sc["atkd"] == "off")]
    free = sorted(set(students.loc[students["teacher"] == "", "method"]))
    distilled = students.loc[students["method"] == reference, "teacher"]
    teachers = sorted({t for t in distilled if t}, key=params.get)
    if not free or not teachers:
        return lines + [f"- Not measured: the run needs `{reference}` and a student without a teacher.", ""]
    for base in free:
        base_mean = _series(sc, base, "", "off").mean()
        base_epochs = _epochs(runs, base, "")
        for t in teachers:
            epochs = _epochs(runs, reference, t)
            if epochs and base_epochs and epochs != base_epochs:
                lines.append(
                    f"- `{reference}` at {t} ({', '.join(sorted(epochs))} epochs) is not compared with"
                    f" `{base}` ({', '.join(sorted(base_epochs))} epochs): their budgets differ"
                )
                continue
            mean = _series(sc, reference, t, "off").mean()
            own = _series(sc, "teacher", t, "off")
            teacher_text = f"its teacher {own.mean():.4f}" if len(own) else "its teacher not scored"
            cmp = evidence.compare((reference, t, "off"), (base, "", "off"))
            line = f"- `{reference}` at {t} {mean:.4f} (`{base}` {base_mean:.4f}, {teacher_text})"
            if cmp is not None:
                verdict = cmp.verdict_for(1)
                line += f"; `{reference}` minus `{base}`: {cmp.text()}: above `{base}` is **{verdict}**"
            if len(own):
                below = "below" if mean < own.mean() else "not below"
                line += f"; {below} its teacher (one model: no interval)"
            lines.append(line)
    if len(teachers) >= 2:
        small, large = teachers[0], teachers[-1]
        cmp = evidence.compare((reference, large, "off"), (reference, small, "off"))
        if cmp is not None:
            said = reading(cmp, "higher at the largest teacher", "lower at the largest teacher")
            lines.append(
                f"- `{reference}` at the largest teacher ({large}) minus at the smallest ({small}):"
                f" {cmp.text()}; does the teacher move the student (no direction claimed)? **{said}**"
            )
    return lines + [""]


def _f2_f3(
    probes: pd.DataFrame | None, params: dict[str, float], reference: pd.DataFrame | None = None
) -> list[str]:
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
    for model, r in [] if reference is None else reference.iterrows():
        size = f"{r['params']:,.0f}" if not pd.isna(r.get("params", math.nan)) else "-"
        lines.append(
            f"| {model} | {size} | {r['unc_mean']:.4f} | {r['unc_below_0.1']:.3f}"
            f" | {r['share_tkd']:.3f} | {r['share_unc_dkd']:.3f} |"
        )
    if reference is not None:
        lines += [
            "",
            f"- Rows with a label in parentheses come from another run (its tables/probes.csv, on its own"
            f" data); the verdict below uses this run's {len(wide)} teacher(s) only.",
        ]
    unc = list(wide["unc_mean"])
    if len(unc) < 2:
        return lines + [
            "",
            f"- Mean teacher UnC: {unc[0]:.4f}. Whether larger teachers are more confident is"
            " **not measured**: this run has one teacher.",
        ]
    falling = all(b < a for a, b in zip(unc, unc[1:]))
    rising = all(b > a for a, b in zip(unc, unc[1:]))
    verdict = "supported" if falling else "not supported" if rising else "inconclusive (not monotone)"
    lines += [
        "",
        f"- Mean teacher UnC by size, smallest first: {', '.join(f'{u:.4f}' for u in unc)}: larger teachers "
        f"are more confident: **{verdict}** (one probe per teacher; no seeds to pair).",
    ]
    return lines


def _f5(
    sc: pd.DataFrame, order: Sequence[str], evidence: Evidence, objectives: Mapping[Any, frozenset[str]]
) -> list[str]:
    """+ATKD minus without, per method and teacher. A +ATKD student whose objective key (runs.csv) is that
    of an earlier method's +ATKD student at that teacher is the same objective trained twice: its
    comparison still counts (its baseline differs), and its row and the summary say that it shares its
    +ATKD side with the other method's row. Tied scores alone never mark anything."""
    lines = ["## F5. ATKD improves every baseline", ""]
    lines += ["| method | teacher | +ATKD minus without (average score) | verdict |", "|---|---|---|---|"]
    twins = shared_atkd_objectives(objectives, order)
    verdicts = []
    shared = 0
    for (method, teacher), _ in sc[sc["atkd"] == "on"].groupby(["method", "teacher"]):
        cmp = evidence.compare((method, teacher, "on"), (method, teacher, "off"))
        if cmp is None:
            continue
        verdicts.append(cmp.verdict)
        twin = twins.get((method, teacher))
        note = ""
        if twin is not None:
            shared += 1
            note = f" (same objective as {twin} + ATKD: equal keys in runs.csv)"
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
        f"- {n_sup} of {len(verdicts)} comparisons{note} favour ATKD beyond the 95% interval, {n_neg} go the"
        f" other way: the claim (consistent gains on every baseline) is **{overall}**.",
    ]
    if not objectives:
        lines.append("- No runs.csv: which +ATKD students share an objective is not known here.")
    return lines + [""]


def _f6(flat: pd.DataFrame | None) -> list[str]:
    lines = ["## F6. ATKD students have flatter loss landscapes", ""]
    if flat is None or flat.empty:
        return lines + ["- Not measured: no loss-landscape probe in this run.", ""]
    sharp = flat[flat["metric"] == "sharpness"]
    for (method, teacher), sub in sharp.groupby(["method", "teacher"]):
        on = sub[sub["atkd"] == "on"].set_index("seed")["value"]
        off = sub[sub["atkd"] == "off"].set_index("seed")["value"]
        cmp = paired(on, off)  # one sharpness per seed: seeds are resampled, no documents
        if cmp is None:
            continue
        lines.append(
            f"- `{method}` at {teacher}: sharpness (mean loss rise along a filter-normalised direction) with "
            f"ATKD minus without: {cmp.text()}: flatter with ATKD is **{cmp.verdict_for(-1)}**"
        )
    return lines + [""]


def _f8(
    sc: pd.DataFrame, reference: str, evidence: Evidence, objectives: Mapping[Any, frozenset[str]]
) -> list[str]:
    """Reference + ATKD minus each other remedy (without ATKD) at the teachers both have. A remedy whose
    objective key (runs.csv) is that of reference + ATKD is the same student: said so, not compared."""
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
            ref = (reference, teacher, "on")
            if same_objective(objectives, ref, (alt, teacher, "off")):
                lines.append(
                    f"- {reference} + ATKD and `{alt}` at {teacher}: the same objective (equal keys in "
                    "runs.csv): not a comparison"
                )
                continue
            cmp = evidence.compare(ref, (alt, teacher, "off"))
            if cmp is None:
                continue
            note = ""
            if same_objective(objectives, ref, (alt, teacher, "on")):
                note = (
                    f" (the same numbers as F5's `{alt}` row: {alt} + ATKD has the objective of "
                    f"{reference} + ATKD)"
                )
            lines.append(
                f"- {reference} + ATKD minus `{alt}` at {teacher}: {cmp.text()}: **{cmp.verdict}**{note}"
            )
    return lines + [""]


def _docs_text(docs: Sequence[int]) -> str:
    """Documents per suite, e.g. `100` or `80-100` (suites without per-document scores left out)."""
    with_docs = [n for n in docs if n > 1]
    if not with_docs:
        return "no per-document scores"
    low, high = min(with_docs), max(with_docs)
    return f"{low}" if low == high else f"{low}-{high}"


def _power(sc: pd.DataFrame, reference: str, params: Mapping[str, float], evidence: Evidence) -> list[str]:
    """The power section: for reference + ATKD vs reference at each teacher, the measured MDE, the MDE
    the variance components predict, and the seeds that would bring it to MDE_TARGET at the current
    number of documents (stats.Components.seeds_for)."""
    lines = [f"## Power: seeds and documents to resolve an effect of {MDE_TARGET}", ""]
    arms = sc[(sc["method"] == reference) & (sc["task"] == AVERAGE)]
    teachers = sorted(
        set(arms.loc[arms["atkd"] == "on", "teacher"]) & set(arms.loc[arms["atkd"] == "off", "teacher"]),
        key=lambda t: (params.get(t, math.inf), t),
    )
    rows: list[str] = []
    for teacher in teachers:
        cmp: Comparison | None = evidence.compare((reference, teacher, "on"), (reference, teacher, "off"))
        if cmp is None:
            continue
        c = cmp.components
        docs = _docs_text(c.docs)
        if math.isnan(c.seed_var):
            predicted, seed_sd, need = "-", "-", "unknown: one seed does not measure the seed variance"
        else:
            predicted, seed_sd = f"{c.mde():.4f}", f"{math.sqrt(c.seed_var):.4f}"
            n = c.seeds_for(MDE_TARGET)
            at = "seeds only" if docs == "no per-document scores" else f"at {docs} docs per task"
            if n is None:
                floor = Z_MDE * math.sqrt(c.variance(10**9))
                need = f"not reachable {at} (the documents alone give MDE {floor:.4f})"
            else:
                need = f"{n} ({at})"
        rows.append(f"| {teacher} | {cmp.scale()} | {cmp.mde:.4f} | {predicted} | {seed_sd} | {need} |")
    if not rows:
        return lines + [
            f"- Not measured: `{reference}` was not run with and without ATKD at one teacher.",
            "",
        ]
    lines += [
        f"For {reference} + ATKD minus {reference} at each teacher: MDE = (z_0.975 + z_0.80) x SE ="
        f" {Z_MDE:.2f} x SE, the smallest true difference a two-sided {1 - LEVEL:.0%} test detects with"
        f" {POWER:.0%} power. Measured: SE is the bootstrap standard error. Predicted: from the comparison's"
        " variance components (two-way ANOVA per task, atkd.report.stats.Components), SE^2 = seed_var / S +"
        " (1/T^2) sum_t (doc_var_t / D_t + resid_var_t / (S D_t)) for S seeds and D_t documents of task t;"
        " 'seed SD' is sqrt(seed_var), the seed-to-seed spread of the average score's difference. The"
        " prediction is unbiased; the (rescaled) bootstrap overstates the seed x document residual (it draws"
        " seeds and documents independently), so size the config from the predicted column.",
        "",
        "| teacher | seeds x docs | MDE measured | MDE predicted | seed SD"
        f" | seeds for MDE <= {MDE_TARGET} |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return lines


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
    evidence: Evidence | None = None,
    runs: pd.DataFrame | None = None,
    chance: Mapping[str, float] | None = None,
    reference_probes: pd.DataFrame | None = None,
) -> str:
    """The text of REPORT.md from per-seed scores (`tables.scores`), the comparisons' `evidence` (per-seed
    and per-document scores; default: the per-seed scores only), runs.csv (which students share an
    objective), chance levels, models.csv and probe summaries; `methods` is the configured method order
    (which of two +ATKD students with one objective F5 names)."""
    params = dict(zip(models["model"], models["params"].astype(float), strict=False))
    seeds = sorted(set(scores.loc[~scores["method"].isin(["teacher", "base"]), "seed"]))  # students only
    tasks = list(tasks) or sorted(set(scores["task"]) - {AVERAGE})
    if evidence is None:
        evidence = Evidence(scores, {t: "" for t in tasks})
    objectives = arm_objectives(runs)
    chance = dict(chance or {})
    named = ", ".join(f"{t} (chance {chance[t]:.3f})" if t in chance else t for t in tasks)
    notes = []
    if not evidence.has_docs:
        notes.append(
            " No per-document scores (doc_scores.csv) were given: only seeds are resampled, so each interval"
            " rests on the seed-to-seed spread alone."
        )
    notes.append(
        f" Comparisons of fewer than {FEW_SEEDS} seeds say so: their percentile interval rests on that few"
        " seed values (its variance is rescaled to be unbiased, its shape is coarse); the power section says"
        f" how many seeds an MDE of {MDE_TARGET} needs."
    )
    lines = [
        "# What this run shows about the study's findings",
        "",
        "Written by `atkd report` from the tidy result files. Scores are the per-task primary metric and"
        f" their average over {len(tasks)} tasks ({named}); seeds: {seeds}.",
        "",
        "Every comparison A - B is paired: the same seeds (data order, student start) and the same"
        " documents for both arms. Its estimate is the difference of average scores (the mean over tasks"
        " of the task mean, then over seeds); the 95% interval is the percentile interval of a hierarchical"
        f" bootstrap ({N_BOOT} replicates: seeds drawn with replacement, then documents within each task, one"
        " draw for both arms); MDE = (z_0.975 + z_0.80) x SE = 2.80 x SE, with SE the bootstrap standard"
        " error, is the smallest true effect a two-sided 5% test detects with 80% power. Verdicts:"
        " 'supported' when the interval lies on the claimed side of 0, 'not supported (opposite"
        " direction)' when it lies on the other side, otherwise 'inconclusive' (with |effect| against the"
        " MDE). Each line gives the seeds x documents it rests on." + "".join(notes) + " The many"
        " comparisons below are not corrected for multiplicity: at 95% each one that has no real effect"
        " still comes out 'supported' or 'not supported' one time in twenty.",
        "",
    ]
    members = analysis_scores(scores, analyses or {})
    lines += _regime(scores, reference, params, evidence, runs)
    lines += _f1(scores, params, evidence)
    lines += _f2_f3(probes, params, reference_probes)
    lines += [
        "- Students trained with DKD only vs TKD only (average score, paired over seeds and documents):"
    ]
    lines += f3_lines(members, evidence) + [""]
    lines += ["## F4. TKD hurts on easy tokens and helps on hard ones", ""]
    lines += f4_lines(members, evidence) + [""]
    lines += _f5(scores, [reference, *methods], evidence, objectives)
    lines += _f6(landscapes)
    lines += ["## F7. Best k = 0.5 and lambda = 0.2", ""]
    lines += f7_lines(members, evidence) + [""]
    lines += _f8(scores, reference, evidence, objectives)
    lines += _power(scores, reference, params, evidence)
    return "\n".join(lines)
