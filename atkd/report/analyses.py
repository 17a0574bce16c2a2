"""The training-time analyses of the study (docs/study.md, analyses 3-6) as tables, one figure and
findings F3 (DKD vs TKD), F4 (TKD on easy vs hard tokens) and F7 (k and lambda).

An analysis is a named group of trained students compared side by side, declared in the config:

    analyses:
      tkd_vs_dkd: {variant: "off", members: {tkd_only: TKD only, dkd_only: DKD only, dkd: TKD + DKD}}

`members` maps a method to its label in this analysis; `variant` says which variant of those methods is
compared. Findings read the analyses below by name and their members by label (the ROLES); an analysis
that is absent from the config, or a role without a member, is reported as not measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from atkd.report.figures import SD_NOTE, colour_of, method_colours, plt, save_figure
from atkd.report.stats import Arm, Evidence
from atkd.report.tables import AVERAGE

# The analyses findings read, and the member labels they look for.
ROLES = {
    "tkd_vs_dkd": ("TKD only", "DKD only"),
    "tkd_placement": ("TKD on none", "TKD on easy", "TKD on hard"),
    "k_sweep": ("k=0.5", "k=0.7"),
    "lam_sweep": ("lam=0.2", "lam=0.9"),
}


def parse_analyses(raw: str | Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Validate `{name: {variant: on|off, members: {method: label}}}` (a mapping or its JSON text)."""
    if raw is None or raw == "":
        return {}
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    out = {}
    for name, spec in data.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("members"), Mapping):
            raise ValueError(f"analyses.{name}: expected {{variant: on|off, members: {{method: label}}}}")
        if extra := [k for k in spec if k not in ("variant", "members")]:
            raise ValueError(f"analyses.{name}.{extra[0]}: unknown key; valid: variant, members")
        variant = spec.get("variant", "off")
        if variant not in ("on", "off"):
            raise ValueError(f"analyses.{name}.variant: expected 'on' or 'off', got {variant!r}")
        labels = list(spec["members"].values())
        if len(set(labels)) != len(labels):
            raise ValueError(f"analyses.{name}.members: labels must be distinct, got {labels}")
        members = {str(m): str(label) for m, label in spec["members"].items()}
        out[name] = {"variant": variant, "members": members}
    return out


def analysis_scores(sc: pd.DataFrame, analyses: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per-seed average scores of every analysis member: analysis, label, method, atkd, teacher, seed,
    value."""
    avg = sc[sc["task"] == AVERAGE]
    frames = []
    for name, spec in analyses.items():
        for method, label in spec["members"].items():
            sub = avg[(avg["method"] == method) & (avg["atkd"] == spec["variant"])]
            frames.append(sub.assign(analysis=name, label=label))
    columns = ["analysis", "label", "method", "atkd", "teacher", "seed", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def analysis_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seed count of the average score per analysis, member and teacher."""
    g = per_seed.groupby(["analysis", "label", "method", "atkd", "teacher"], sort=False)["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def analysis_figure(
    table: pd.DataFrame, models: pd.DataFrame, stem: Path, colours: Mapping[str, str] | None = None
) -> list[Path]:
    """One panel per analysis: grouped bars from zero (one per member, in config order, in its method's
    colour) for each teacher, smallest teacher first; error bars are the standard deviation over seeds.
    Each panel's legend sits below it, clear of the bars."""
    params = dict(zip(models["model"], models["params"].astype(float), strict=False))
    colours = colours or method_colours(list(dict.fromkeys(table["method"])))
    names = list(dict.fromkeys(table["analysis"]))
    fig, grid = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    axes = list(grid[0])
    for ax, name in zip(axes, names, strict=True):
        sub = table[table["analysis"] == name]
        members = list(dict.fromkeys(zip(sub["label"], sub["method"], strict=True)))
        teachers = sorted(set(sub["teacher"]), key=lambda t: params.get(t, math.inf))
        width = 0.8 / len(members)
        for i, (label, method) in enumerate(members):
            rows = sub[sub["label"] == label].set_index("teacher").reindex(teachers)
            x = [j + (i - (len(members) - 1) / 2) * width for j in range(len(teachers))]
            ax.bar(
                x,
                rows["mean"],
                width,
                yerr=rows["std"].fillna(0),
                capsize=2,
                color=colour_of(colours, method),
                label=label if label == method else f"{label} ({method})",
                gid=f"method={method}",
            )
        ax.set_xticks(range(len(teachers)), teachers, fontsize=8)
        ax.set_xlabel("teacher")
        ax.set_title(f"{name} ({'+ATKD' if sub['atkd'].iloc[0] == 'on' else 'no ATKD'})", fontsize=9)
        high = float((sub["mean"] + sub["std"].fillna(0)).max())
        ax.set_ylim(0, high * 1.08 if high > 0 else 1.0)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    axes[0].set_ylabel("student score (average over tasks)")
    fig.suptitle(f"Analyses: mean student score over seeds; {SD_NOTE}", fontsize=10)
    return save_figure(fig, stem)


def _arm(per_seed: pd.DataFrame, analysis: str, label: str, teacher: str) -> Arm:
    """The (method, teacher, atkd) of an analysis member at a teacher."""
    sub = per_seed[
        (per_seed["analysis"] == analysis) & (per_seed["label"] == label) & (per_seed["teacher"] == teacher)
    ]
    return str(sub["method"].iloc[0]), teacher, str(sub["atkd"].iloc[0])


def _compare(
    per_seed: pd.DataFrame, evidence: Evidence, analysis: str, better: str, worse: str, claim: str
) -> list[str]:
    """`better - worse` at each teacher both were run with (atkd.report.stats: hierarchical paired
    bootstrap over seeds and documents); one line per teacher."""
    sub = per_seed[per_seed["analysis"] == analysis]
    teachers = sorted(
        set(sub.loc[sub["label"] == better, "teacher"]) & set(sub.loc[sub["label"] == worse, "teacher"])
    )
    lines = []
    for teacher in teachers:
        cmp = evidence.compare(
            _arm(per_seed, analysis, better, teacher), _arm(per_seed, analysis, worse, teacher)
        )
        if cmp is not None:
            lines.append(f"- {better} minus {worse} at {teacher}: {cmp.text()}: {claim} is **{cmp.verdict}**")
    return lines


def _absent(per_seed: pd.DataFrame, analysis: str) -> str | None:
    have = set(per_seed.loc[per_seed["analysis"] == analysis, "label"])
    missing = [r for r in ROLES[analysis] if r not in have]
    if missing:
        return (
            f"- Not measured: analysis `{analysis}` lacks {', '.join(repr(m) for m in missing)} in this run."
        )
    return None


def f3_lines(per_seed: pd.DataFrame, evidence: Evidence) -> list[str]:
    """F3's training-time half: DKD-only students beat TKD-only students."""
    gap = _absent(per_seed, "tkd_vs_dkd")
    if gap:
        return [gap]
    return _compare(per_seed, evidence, "tkd_vs_dkd", "DKD only", "TKD only", "DKD matters more than TKD")


def f4_lines(per_seed: pd.DataFrame, evidence: Evidence) -> list[str]:
    """F4: with DKD on every token, adding TKD on easy tokens hurts and on hard tokens helps."""
    gap = _absent(per_seed, "tkd_placement")
    if gap:
        return [gap]
    return _compare(
        per_seed, evidence, "tkd_placement", "TKD on none", "TKD on easy", "TKD on easy tokens hurts"
    ) + _compare(
        per_seed, evidence, "tkd_placement", "TKD on hard", "TKD on none", "TKD on hard tokens helps"
    )


def f7_lines(per_seed: pd.DataFrame, evidence: Evidence) -> list[str]:
    """F7: the sweep means, and paired k=0.5 vs 0.7 and lam=0.2 vs 0.9 (the values the paper compares)."""
    lines = []
    for analysis, (best, worse) in (("k_sweep", ROLES["k_sweep"]), ("lam_sweep", ROLES["lam_sweep"])):
        gap = _absent(per_seed, analysis)
        if gap:
            lines.append(gap)
            continue
        sub = per_seed[per_seed["analysis"] == analysis]
        for teacher, rows in sub.groupby("teacher"):
            means = rows.groupby("label", sort=False)["value"].mean()
            top = means.idxmax()
            lines.append(
                f"- `{analysis}` at {teacher} (mean average score): "
                + ", ".join(f"{label} {v:.4f}" for label, v in means.items())
                + f"; highest: {top}"
            )
        lines += _compare(per_seed, evidence, analysis, best, worse, f"{best} beats {worse}")
    return lines
