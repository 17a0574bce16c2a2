"""Figures of the study, drawn from the tidy score tables only."""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from atkd.report.tables import AVERAGE  # noqa: E402

TEACHER_METHOD = "teacher"  # rows of a teacher's own evaluation (method column of metrics.csv)
TEACHER_COLOUR = "#888888"  # the teachers' own scores: a grey that no method gets
# Method colours, in the order methods are configured: tab10 without its grey, the dark and mid shades of
# tab20b, then the light half of tab20 (no greys); more methods get evenly spaced hues. Never wraps.
PALETTE = [
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"),
    *("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"),
    *("#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b", "#ce6dbd"),
    *("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"),
]
SD_NOTE = "error bars: standard deviation over seeds"


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One distinct colour per method (in the given, configured order), the same in every figure.

    `report` builds this once and hands it to every figure; the teacher line keeps TEACHER_COLOUR.
    """
    names = [m for m in dict.fromkeys(methods) if m != TEACHER_METHOD]
    colours = list(PALETTE)
    extra = len(names) - len(colours)
    for i in range(max(extra, 0)):
        rgb = colorsys.hsv_to_rgb(i / extra, 0.7, 0.85 if i % 2 else 0.6)
        colours.append("#" + "".join(f"{round(255 * c):02x}" for c in rgb))
    colours = [c for c in dict.fromkeys(colours) if c != TEACHER_COLOUR]
    if len(colours) < len(names):  # hue collisions after rounding: fail rather than share a colour
        raise ValueError(f"cannot give {len(names)} methods distinct colours")
    return dict(zip(names, colours, strict=False))


def colour_of(colours: Mapping[str, str], method: str) -> str:
    """The colour of `method`; a method missing from the mapping is an error, never a fallback colour."""
    if method not in colours:
        raise KeyError(f"method {method!r} has no colour (not in the method list given to the report)")
    return colours[method]


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
    colours: Mapping[str, str] | None = None,
    twins: Mapping[tuple[str, str], str] | None = None,
) -> list[Path]:
    """Student score vs teacher size, one line per method, solid without and dashed with ATKD; `twins`
    ((method, teacher) -> other method, tables.shared_atkd_objectives) labels a +ATKD line whose students
    share their objective with another method's everywhere (`dkd + ATKD (= kd + ATKD)`).

    Points are means over seeds and error bars the standard deviation over seeds; each line is shifted a
    little along the (log) x axis so that lines with equal values (e.g. kd + ATKD and dkd + ATKD) stay
    visible. Methods without a teacher (SFT) are a horizontal band (mean ± std), the teachers' own scores
    (method `teacher`), where present, a grey line. The legend sits outside the axes.
    """
    params = dict(zip(models["model"], models["params"], strict=False))
    sc = scores[scores["task"] == task]
    colours = colours or method_colours(methods)
    twins = dict(twins or {})  # +ATKD students with another method's objective (runs.csv), not tied scores
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    own = sc[sc["method"] == TEACHER_METHOD].groupby("teacher")["value"].mean().reset_index()
    if not own.empty:
        own["params"] = own["teacher"].map(params)
        if own["params"].isna().any():
            raise ValueError(
                f"teacher(s) {sorted(own.loc[own['params'].isna(), 'teacher'])} are not in models.csv"
            )
        own = own.sort_values("params")
        ax.plot(own["params"], own["value"], color=TEACHER_COLOUR, marker="^", lw=1, label="teacher itself")
    lines = []  # (method, atkd, label, per-teacher mean/std) of every line with teachers
    for method in (m for m in methods if m != TEACHER_METHOD):
        for atkd in ("off", "on"):
            sub = sc[(sc["method"] == method) & (sc["atkd"] == atkd)]
            if sub.empty:
                continue
            label = f"{method} + ATKD" if atkd == "on" else method
            if (sub["teacher"] == "").all():
                mean, std = sub["value"].mean(), sub["value"].std(ddof=1)
                ax.axhline(
                    mean, color=colour_of(colours, method), ls=":", lw=1.5, label=f"{label} (no teacher)"
                ).set_gid(f"method={method}")
                if pd.notna(std):
                    ax.axhspan(mean - std, mean + std, color=colour_of(colours, method), alpha=0.12, lw=0)
                continue
            g = sub.groupby("teacher")["value"]
            agg = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1)}).reset_index()
            agg["params"] = agg["teacher"].map(params)
            if agg["params"].isna().any():
                missing = sorted(agg.loc[agg["params"].isna(), "teacher"])
                raise ValueError(f"teacher(s) {missing} are not in models.csv")
            twin = {twins.get((method, t)) for t in agg["teacher"]} if atkd == "on" else {None}
            if len(twin) == 1 and None not in twin:  # the same students as another method's, everywhere
                label += f" (= {twin.pop()} + ATKD)"
            lines.append((method, atkd, label, agg.sort_values("params")))
    step = min(0.012, 0.15 / max(len(lines) - 1, 1))  # decades; at most 0.15 decades in all
    for i, (method, atkd, label, agg) in enumerate(lines):
        shift = 10 ** ((i - (len(lines) - 1) / 2) * step)
        bars = ax.errorbar(
            agg["params"] * shift,
            agg["mean"],
            yerr=agg["std"].fillna(0),
            color=colour_of(colours, method),
            ls="--" if atkd == "on" else "-",
            marker="s" if atkd == "on" else "o",
            ms=5,
            capsize=3,
            label=label,
        )
        bars.lines[0].set_gid(f"method={method}")
    ax.set_xscale("log")
    ax.set_xlabel("teacher parameters (log scale; lines shifted slightly apart so equal ones stay visible)")
    ax.set_ylabel("student score" + (" (average over tasks)" if task == AVERAGE else f" ({task})"))
    ax.set_title(f"Student quality vs teacher size\nmean over seeds; {SD_NOTE} (band: no teacher, mean ± SD)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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


def _landscape_rise(points: pd.DataFrame) -> pd.DataFrame:
    """Loss minus the loss at the trained weights (the grid point nearest alpha = beta = 0), per run."""
    out = []
    for _, run in points.groupby(["method", "teacher", "atkd", "seed"], sort=False):
        centre = run.loc[(run["alpha"].abs() + run["beta"].abs()).idxmin(), "loss"]
        out.append(run.assign(rise=run["loss"] - centre))
    return pd.concat(out, ignore_index=True)


def landscape_lines(points: pd.DataFrame, stem: Path, colours: Mapping[str, str]) -> list[Path]:
    """1-D loss landscapes: loss minus the centre loss along the random direction, one line per student
    (solid without ATKD, dashed with), one panel per (method, teacher). One seed per line, no error bars."""
    line = _landscape_rise(points[points["beta"] == 0.0])
    panels = list(line.groupby(["method", "teacher"], sort=True).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (method, teacher) in zip(axes[0], panels, strict=True):
        sub = line[(line["method"] == method) & (line["teacher"] == teacher)]
        for (atkd, seed), run in sub.groupby(["atkd", "seed"]):
            run = run.sort_values("alpha")
            ax.plot(
                run["alpha"],
                run["rise"],
                ls="--" if atkd == "on" else "-",
                color=colour_of(colours, method),
                alpha=0.6 + 0.4 * (atkd == "on"),
                label=f"{method}{' + ATKD' if atkd == 'on' else ''} (seed {seed})",
                gid=f"method={method}",
            )
        ax.set_title(f"{method}, teacher {teacher}", fontsize=9)
        ax.set_xlabel("step along a filter-normalised direction")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("loss - loss at the trained weights")
    return save_figure(fig, stem)


def landscape_2d(points: pd.DataFrame, stem: Path, colours: Mapping[str, str]) -> list[Path]:
    """2-D loss landscapes: filled contours of loss minus the centre loss over the (alpha, beta) grid,
    averaged over seeds, one panel per student (without, then with ATKD) of each (method, teacher),
    on one shared colour scale. Returns [] when no run has a 2-D grid (`atkd landscape --one-d`)."""
    two_d = points.groupby(["method", "teacher", "atkd", "seed"])["beta"].transform("nunique") > 1
    grid = points[two_d]
    if grid.empty:
        return []
    grid = _landscape_rise(grid)
    surfaces = []
    for (method, teacher, atkd), sub in grid.groupby(["method", "teacher", "atkd"], sort=True):
        z = sub.pivot_table(index="beta", columns="alpha", values="rise", aggfunc="mean")
        seeds = sorted(set(sub["seed"]))
        surfaces.append((method, teacher, atkd, seeds, z))  # "off" sorts before "on": pairs side by side
    high = max(float(np.nanmax(z.to_numpy())) for *_, z in surfaces)
    low = min(0.0, *(float(np.nanmin(z.to_numpy())) for *_, z in surfaces))
    levels = MaxNLocator(12).tick_values(low, high if high > low else low + 1.0)  # round contour levels
    fig, axes = plt.subplots(
        1, len(surfaces), figsize=(3.8 * len(surfaces) + 1.0, 3.6), squeeze=False, layout="constrained"
    )
    for ax, (method, teacher, atkd, seeds, z) in zip(axes[0], surfaces, strict=True):
        filled = ax.contourf(z.columns, z.index, z.to_numpy(), levels=levels, cmap="viridis")
        ax.contour(z.columns, z.index, z.to_numpy(), levels=levels, colors="white", linewidths=0.4)
        ax.axhline(0.0, color=colour_of(colours, method), ls=":", lw=1.2)  # the 1-D line of landscape.png
        ax.plot(
            [0.0],
            [0.0],
            marker="s" if atkd == "on" else "o",
            ms=7,
            mec="white",
            color=colour_of(colours, method),
            gid=f"method={method}",
        )
        ax.set_title(
            f"{method}{' + ATKD' if atkd == 'on' else ''}, teacher {teacher}\n"
            f"mean over seeds {', '.join(map(str, seeds))}",
            fontsize=9,
        )
        ax.set_xlabel("alpha (direction 1)")
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("beta (direction 2)")
    fig.colorbar(filled, ax=list(axes[0]), label="loss - loss at the trained weights (seed mean)")
    fig.suptitle(
        "2-D loss landscapes, mean over seeds (dotted: the 1-D line of landscape.png; marker: the trained"
        " weights)",
        fontsize=10,
    )
    return save_figure(fig, stem)


def training_curves(
    curves: pd.DataFrame, models: pd.DataFrame, stem: Path, colours: Mapping[str, str]
) -> list[Path]:
    """Validation loss against epochs, one panel per method (in `colours`' order) at its largest teacher:
    solid without and dashed with ATKD, the mean over seeds bold and each seed faint; a last panel holds
    the teachers' own training curves. Only rows with a validation loss (curves.csv) are drawn."""
    params = dict(zip(models["model"], models["params"].astype(float), strict=False))
    valid = curves[curves["valid_loss"].notna()]
    if valid.empty:
        raise ValueError("curves.csv holds no validation loss: runs need valid_data")
    students = valid[valid["method"] != TEACHER_METHOD]
    panels = []  # (method, teacher, its rows)
    for method in [m for m in colours if m in set(students["method"])]:
        sub = students[students["method"] == method]
        teacher = max(set(sub["teacher"]), key=lambda t: (params.get(t, -math.inf) if t else -math.inf, t))
        panels.append((method, teacher, sub[sub["teacher"] == teacher]))
    own = valid[valid["method"] == TEACHER_METHOD]
    n = len(panels) + (not own.empty)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax, (method, teacher, sub) in zip(axes, panels, strict=False):
        for atkd, ls in (("off", "-"), ("on", "--")):
            arm = sub[sub["atkd"] == atkd]
            if arm.empty:
                continue
            for _, run in arm.groupby("seed"):
                run = run.sort_values("step")
                colour = colour_of(colours, method)
                ax.plot(run["epoch"], run["valid_loss"], color=colour, ls=ls, lw=0.7, alpha=0.3)
            mean = arm.groupby("step")[["epoch", "valid_loss"]].mean().sort_index()
            seeds = arm["seed"].nunique()
            ax.plot(
                mean["epoch"],
                mean["valid_loss"],
                color=colour_of(colours, method),
                ls=ls,
                lw=1.8,
                marker="s" if atkd == "on" else "o",
                ms=3,
                label=f"{'+ ATKD' if atkd == 'on' else 'without ATKD'} ({seeds} seed{'s' * (seeds > 1)})",
                gid=f"method={method}",
            )
        ax.set_title(f"{method}, teacher {teacher}" if teacher else f"{method} (no teacher)", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    if not own.empty:
        ax = axes[len(panels)]
        names = sorted(set(own["teacher"]), key=lambda t: (params.get(t, math.inf), t))
        cmap = plt.get_cmap("viridis")
        for i, name in enumerate(names):
            run = own[own["teacher"] == name].groupby("step")[["epoch", "valid_loss"]].mean().sort_index()
            colour = cmap(i / max(1, len(names) - 1))
            ax.plot(run["epoch"], run["valid_loss"], color=colour, marker=".", label=name)
        ax.set_title("teachers (their own training)", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[:n]:
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    for row in grid:
        row[0].set_ylabel("validation loss\n(CE per response token)", fontsize=8)
    fig.suptitle(
        "Validation loss during training: mean over seeds (bold), each seed (faint); solid without, dashed"
        " with ATKD; each method at its largest teacher",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, stem)
