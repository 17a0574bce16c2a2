"""Figures of the study, drawn from the tidy score tables only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from atkd.report.tables import AVERAGE  # noqa: E402

TEACHER_METHOD = "teacher"  # rows of a teacher's own evaluation (method column of metrics.csv)
# One colour per method, stable across every figure of the suite.
PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """Colour of each method (in the given, configured order)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    """Save as PNG and PDF (atomically) and close; returns the written paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)
        out.append(path)
    plt.close(fig)
    return out


def teacher_sweep(
    scores: pd.DataFrame,
    models: pd.DataFrame,
    stem: Path,
    methods: Sequence[str],
    task: str = AVERAGE,
    colour_order: Sequence[str] = (),
) -> list[Path]:
    """Student score vs teacher size, one line per method, solid without and dashed with ATKD.

    Error bars are the standard deviation over seeds; methods without a teacher (SFT) are drawn as a
    horizontal band, and the teachers' own scores (method `teacher`), where present, as a grey line.
    """
    params = dict(zip(models["model"], models["params"], strict=False))
    sc = scores[scores["task"] == task]
    colours = method_colours(list(colour_order) or list(methods))  # the same colour in every figure
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    own = sc[sc["method"] == TEACHER_METHOD].groupby("teacher")["value"].mean().reset_index()
    if not own.empty:
        own["params"] = own["teacher"].map(params)
        if own["params"].isna().any():
            raise ValueError(
                f"teacher(s) {sorted(own.loc[own['params'].isna(), 'teacher'])} are not in models.csv"
            )
        own = own.sort_values("params")
        ax.plot(
            own["params"], own["value"], color="#888888", marker="^", ls="-", lw=1, label="teacher itself"
        )
    for method in (m for m in methods if m != TEACHER_METHOD):
        for atkd, style in (("off", "-"), ("on", "--")):
            sub = sc[(sc["method"] == method) & (sc["atkd"] == atkd)]
            if sub.empty:
                continue
            label = f"{method} + ATKD" if atkd == "on" else method
            if (sub["teacher"] == "").all():
                mean, std = sub["value"].mean(), sub["value"].std(ddof=1)
                ax.axhline(mean, color=colours[method], ls=":", lw=1.5, label=f"{label} (no teacher)")
                if pd.notna(std):
                    ax.axhspan(mean - std, mean + std, color=colours[method], alpha=0.12, lw=0)
                continue
            g = sub.groupby("teacher")["value"]
            agg = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1)}).reset_index()
            agg["params"] = agg["teacher"].map(params)
            if agg["params"].isna().any():
                missing = sorted(agg.loc[agg["params"].isna(), "teacher"])
                raise ValueError(f"teacher(s) {missing} are not in models.csv")
            agg = agg.sort_values("params")
            ax.errorbar(
                agg["params"],
                agg["mean"],
                yerr=agg["std"].fillna(0),
                color=colours[method],
                ls=style,
                marker="o" if atkd == "off" else "s",
                capsize=3,
                label=label,
            )
    ax.set_xscale("log")
    ax.set_xlabel("teacher parameters")
    ax.set_ylabel("student score" + (" (average over tasks)" if task == AVERAGE else f" ({task})"))
    ax.set_title("Student quality vs teacher size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, stem)


def unc_density(tokens: pd.DataFrame, models: pd.DataFrame, stem: Path) -> list[Path]:
    """Kernel density of the teacher's per-token UnC (1 - p_target), one line per teacher size."""
    import numpy as np
    from scipy.stats import gaussian_kde

    params = dict(zip(models["model"], models["params"], strict=False))
    names = sorted(set(tokens["model"]), key=lambda m: params.get(m, float("inf")))
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    grid = np.linspace(0, 1, 400)
    for i, name in enumerate(names):
        unc = tokens.loc[tokens["model"] == name, "unc"].to_numpy(dtype=float)
        colour = cmap(i / max(1, len(names) - 1))
        label = f"{name} ({params[name]:,.0f} params)" if name in params else name
        if len(unc) > 1 and np.ptp(unc) > 0:
            ax.plot(grid, gaussian_kde(unc)(grid), color=colour, label=label)
        ax.axvline(float(np.mean(unc)), color=colour, ls=":", lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("teacher UnC = 1 - p(target) per response token")
    ax.set_ylabel("density")
    ax.set_title("Teacher uncertainty by teacher size (dotted: mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, stem)


def landscape_lines(points: pd.DataFrame, stem: Path, methods: Sequence[str]) -> list[Path]:
    """1-D loss landscapes: loss minus the centre loss along the random direction, one line per student
    (solid without ATKD, dashed with), one panel per (method, teacher)."""
    line = points[points["beta"] == 0.0]
    panels = list(line.groupby(["method", "teacher"], sort=True).groups)
    colours = method_colours(list(methods) or sorted({m for m, _ in panels}))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (method, teacher) in zip(axes[0], panels, strict=True):
        sub = line[(line["method"] == method) & (line["teacher"] == teacher)]
        for (atkd, seed), run in sub.groupby(["atkd", "seed"]):
            run = run.sort_values("alpha")
            centre = run.loc[run["alpha"].abs().idxmin(), "loss"]
            label = f"{method}{' + ATKD' if atkd == 'on' else ''} (seed {seed})"
            ax.plot(
                run["alpha"],
                run["loss"] - centre,
                ls="--" if atkd == "on" else "-",
                color=colours.get(method, "#333"),
                alpha=0.6 + 0.4 * (atkd == "on"),
                label=label,
            )
        ax.set_title(f"{method}, teacher {teacher}", fontsize=9)
        ax.set_xlabel("step along a filter-normalised direction")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("loss - loss at the trained weights")
    return save_figure(fig, stem)
