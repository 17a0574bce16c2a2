"""The report's figures, LaTeX tables and F5/F8 bookkeeping, on a small study written as tidy files."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.figure
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from test_report import TASKS, _landscape_dir, _probe_dir, tidy_row

from atkd.report import report
from atkd.report.figures import TEACHER_COLOUR, method_colours
from atkd.report.tables import RUN_COLUMNS, arm_objectives, load_runs, shared_atkd_objectives

METHODS = ["sft", "kd", "rkd", "dkd", "kd_early", "tkd_only", "dkd_only"]
NOISE = {1: 0.01, 2: -0.01, 3: 0.0}  # shared by every arm: paired differences are exact
ANALYSES = {
    "tkd_vs_dkd": {
        "variant": "off",
        "members": {"kd": "KD", "tkd_only": "TKD only", "dkd_only": "DKD only", "dkd": "TKD & DKD"},
    },
    "token_groups": {"variant": "off", "members": {"kd": "all tokens", "kd_early": "hardest 50%"}},
}


def _value(method: str, teacher: str, atkd: str, seed: int) -> float:
    """kd + ATKD and dkd + ATKD are the same students (identical scores); kd_early is kd + ATKD again."""
    base = 0.5 + NOISE[seed] + (0.02 if teacher == "t-big" else 0.0)
    if method == "sft":
        return 0.4 + NOISE[seed]
    if method == "teacher":
        return 0.7 + (0.05 if teacher == "t-big" else 0.0)
    if atkd == "on" and method in ("kd", "dkd"):
        return base + 0.1
    return (
        base
        + {"kd": 0.0, "dkd": -0.05, "rkd": -0.02, "kd_early": 0.1, "tkd_only": -0.1}.get(method, -0.15)
        + (0.05 if (method, atkd) == ("rkd", "on") else 0.0)
    )


def write_study(root: Path) -> dict:
    """metrics.csv, models.csv, probes and 2-D landscapes of a small study; returns report()'s arguments."""
    arms = [("sft", "", "off")]
    arms += [("teacher", t, "off") for t in ("t-small", "t-big")]
    arms += [(m, t, a) for m in ("kd", "dkd") for t in ("t-small", "t-big") for a in ("off", "on")]
    arms += [("rkd", "t-big", "off"), ("rkd", "t-big", "on"), ("kd_early", "t-big", "off")]
    arms += [(m, t, "off") for m in ("tkd_only", "dkd_only") for t in ("t-small", "t-big")]
    rows = []
    for method, teacher, atkd in arms:
        for seed in (1, 2, 3):
            for task, metric in TASKS.items():
                run = f"{method}/{teacher or 'none'}/{atkd}/s{seed}"
                value = _value(method, teacher, atkd, seed)
                rows.append(tidy_row(run, teacher, method, atkd, seed, task, metric, value))
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "metrics.csv", index=False)
    models = {"model": ["t-small", "t-big", "s"], "role": ["teacher", "teacher", "student"]}
    pd.DataFrame({**models, "params": [1e5, 1e6, 5e4]}).to_csv(root / "models.csv", index=False)
    landscapes = [
        _landscape_dir(root / "landscape", atkd, seed, s, method=method, two_d=True)
        for method in ("kd", "dkd")
        for atkd, seed, s in [("off", 0, 0.9), ("off", 1, 0.8), ("on", 0, 0.5), ("on", 1, 0.4)]
    ]
    # alphabetically t-big sorts first; by size t-small does
    probes = [
        _probe_dir(root / "probes", "t-big", [0.1, 0.2, 0.05]),
        _probe_dir(root / "probes", "t-small", [0.5, 0.6, 0.7]),
    ]
    # runs.csv: one objective key per configuration; dkd + ATKD is given kd + ATKD's key, kd_early its own
    keys = {(m, a): "kd-on" if (m, a) == ("dkd", "on") else f"{m}-{a}" for m, _, a in arms}
    runs = [
        dict(run=f"{m}/{t or 'none'}/{a}/s{s}", method=m, teacher=t, atkd=a, seed=s, objective=keys[(m, a)])
        for m, t, a in arms
        if m != "teacher"
        for s in (1, 2, 3)
    ]
    pd.DataFrame(runs, columns=RUN_COLUMNS).to_csv(root / "runs.csv", index=False)
    # validation curves (curves.csv) of kd, dkd and sft, and of the big teacher's own training
    logged = [("kd", "t-big", "off"), ("kd", "t-big", "on"), ("dkd", "t-small", "on"), ("sft", "", "off")]
    curves = [
        dict(run=f"{m}/{t or 'none'}/{a}/s{s}", method=m, teacher=t, atkd=a, seed=s, step=step)
        | dict(epoch=step / 10, train_loss=1.0, train_ce=None, valid_loss=2.0 / step + s / 100)
        for m, t, a in [*logged, ("teacher", "t-big", "off")]
        for s in (1, 2)
        for step in (5, 10)
    ]
    pd.DataFrame(curves).to_csv(root / "curves.csv", index=False)
    return dict(
        metrics=root / "metrics.csv",
        models=root / "models.csv",
        tables=root / "tables",
        figures=root / "figures",
        methods=METHODS,
        probes=probes,
        landscapes=landscapes,
        analyses=ANALYSES,
        runs=root / "runs.csv",
        curves=root / "curves.csv",
    )


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Run the report on the small study once; returns (its arguments, {figure stem: the Figure saved})."""
    figures: dict[str, matplotlib.figure.Figure] = {}
    save = matplotlib.figure.Figure.savefig

    def recording(fig, fname, *args, **kwargs):
        figures.setdefault(Path(fname).name.lstrip(".").split(".")[0], fig)
        return save(fig, fname, *args, **kwargs)

    args = write_study(tmp_path_factory.mktemp("study") / "results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", recording)
        report(**args)
    return args, figures


def _renderer(fig: matplotlib.figure.Figure):
    """A fresh Agg renderer for a closed figure, after laying it out again."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _method_artists(fig: matplotlib.figure.Figure) -> list[tuple[str, str]]:
    """(method, colour) of every artist a figure tags with gid `method=<name>`."""
    out = []
    for artist in fig.findobj(lambda a: (a.get_gid() or "").startswith("method=")):
        if isinstance(artist, Line2D):
            colour = artist.get_color()
        elif isinstance(artist, Rectangle):
            colour = artist.get_facecolor()
        else:
            continue
        out.append((artist.get_gid().removeprefix("method="), to_hex(colour)))
    return out


def test_one_colour_per_method_in_every_figure(drawn):
    args, figures = drawn
    drawn_names = {"teacher_sweep", "analyses", "landscape", "landscape_2d", "unc_density", "training_curves"}
    assert drawn_names <= set(figures)
    expected = method_colours(args["methods"])
    seen: dict[str, set[str]] = {}
    for name in ("teacher_sweep", "analyses", "landscape", "landscape_2d", "training_curves"):
        tagged = _method_artists(figures[name])
        assert tagged, f"{name}: no method-coloured artists"
        for method, colour in tagged:
            seen.setdefault(method, set()).add(colour)
            assert colour == to_hex(expected[method]), f"{name}: {method}"
    # methods drawn in two or more figures have their one colour in each
    assert {"kd", "dkd"} <= {m for m in seen if len(seen[m]) == 1}
    in_sweep = {m for m, _ in _method_artists(figures["teacher_sweep"])}
    in_analyses = {m for m, _ in _method_artists(figures["analyses"])}
    assert {"kd", "dkd", "tkd_only", "dkd_only"} <= in_sweep & in_analyses
    assert all(len(c) == 1 for c in seen.values())
    assert len({c.pop() for c in seen.values()}) == len(seen)  # no two methods share a colour
    # the teachers' own line is grey, and no method is drawn in that grey
    (teacher,) = [ln for ln in figures["teacher_sweep"].axes[0].lines if ln.get_label() == "teacher itself"]
    assert to_hex(teacher.get_color()) == TEACHER_COLOUR


def test_method_colours_never_wrap_or_reuse_the_teacher_grey():
    names = [f"method_{i}" for i in range(45)]
    colours = method_colours(["teacher", *names, "method_0"])
    assert list(colours) == names  # configured order, no teacher, no repeats
    assert len(set(colours.values())) == len(names)
    assert TEACHER_COLOUR not in colours.values()
    assert method_colours(["kd", "dkd"])["kd"] == method_colours(["kd", "dkd", "sft"])["kd"]


def test_landscape_2d_figure(drawn, tmp_path):
    args, figures = drawn
    fig = figures["landscape_2d"]
    assert (args["figures"] / "landscape_2d.png").stat().st_size > 0
    assert (args["figures"] / "landscape_2d.pdf").stat().st_size > 0
    assert (args["figures"] / "landscape.png").stat().st_size > 0  # the 1-D figure stays
    panels = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in panels]
    assert titles == [
        "dkd, teacher t-big\nmean over seeds 0, 1",
        "dkd + ATKD, teacher t-big\nmean over seeds 0, 1",
        "kd, teacher t-big\nmean over seeds 0, 1",
        "kd + ATKD, teacher t-big\nmean over seeds 0, 1",
    ]
    assert all(ax.get_xlabel().startswith("alpha") for ax in panels)
    # filled contours on one scale, up to the largest seed-mean rise: kd without ATKD at a corner
    (levels,) = {tuple(c.levels) for ax in panels for c in ax.collections if hasattr(c, "levels")}
    corner = 1.5 * (0.9 + 0.8) / 2 * 2
    assert levels[0] <= 0 and levels[-1] >= corner - 1e-9 and levels[-2] < corner
    assert "mean over seeds" in fig.get_suptitle()
    # a 1-D-only landscape (atkd landscape --one-d) has no 2-D figure
    flat = [_landscape_dir(tmp_path / "one_d", a, s, 0.5) for a, s in [("off", 0), ("on", 0)]]
    out = report(**{**args, "landscapes": flat, "figures": tmp_path / "fig1d"})
    assert "landscape.png" in {p.name for p in out} and "landscape_2d.png" not in {p.name for p in out}


def _tabular_problems(tex: str) -> list[str]:
    """Cells of a LaTeX tabular with an unescaped `_`, `%` or `&` (one more `&` than columns allow)."""
    spec = re.search(r"\\begin\{tabular\}\{([lcr]+)\}", tex)
    if spec is None:
        return ["no tabular"]
    columns = len(spec.group(1))
    problems, rows = [], 0
    for line in tex.splitlines():
        if not line.rstrip().endswith("\\\\"):
            continue
        rows += 1
        body = line.rstrip()[:-2]
        separators = re.findall(r"(?<!\\)&", body)
        if len(separators) != columns - 1:
            problems.append(f"{len(separators) + 1} cells for {columns} columns: {line}")
        for cell in re.split(r"(?<!\\)&", body):
            if re.search(r"(?<!\\)[_%]", cell):
                problems.append(f"unescaped character in {cell.strip()!r}")
    return problems if rows >= 2 else ["no rows"]


def test_latex_tables_escape_text(drawn):
    args, _ = drawn
    # the check itself catches what it should
    assert _tabular_problems("\\begin{tabular}{ll}\na_b & c \\\\\nd & e \\\\\n")
    assert _tabular_problems("\\begin{tabular}{ll}\nhardest 50% & c \\\\\nd & e \\\\\n")
    assert _tabular_problems("\\begin{tabular}{ll}\nTKD & DKD & c \\\\\nd & e \\\\\n")
    assert not _tabular_problems("\\begin{tabular}{ll}\nTKD \\& DKD & 50\\% \\\\\nkd\\_early & e \\\\\n")
    written = sorted(args["tables"].glob("*.tex"))
    assert [p.name for p in written] == ["analyses.tex", "main.tex", "probes.tex"]
    for path in written:
        assert _tabular_problems(path.read_text()) == [], path.name
    analyses = (args["tables"] / "analyses.tex").read_text()
    assert "hardest 50\\%" in analyses and "TKD \\& DKD" in analyses and "kd\\_early" in analyses
    assert "unc\\_mean" in (args["tables"] / "probes.tex").read_text()


def test_probes_table_rows_by_teacher_size(drawn):
    args, _ = drawn
    assert list(pd.read_csv(args["tables"] / "probes.csv")["model"]) == ["t-small", "t-big"]
    md = (args["tables"] / "probes.md").read_text()
    assert md.index("| t-small |") < md.index("| t-big |")
    tex = (args["tables"] / "probes.tex").read_text()
    assert tex.index("t-small &") < tex.index("t-big &")


def test_same_objective_marks_come_from_runs_csv(drawn):
    """F5, F8 and the sweep's labels mark students with one objective from runs.csv's keys only: dkd + ATKD
    has kd + ATKD's key (as equal configurations would give); kd_early ties kd + ATKD's scores exactly but
    has its own key, so it is compared, not marked."""
    args, _ = drawn
    objectives = arm_objectives(load_runs(args["runs"]))
    # the configured order says which of two +ATKD arms with one objective is named
    assert shared_atkd_objectives(objectives, METHODS) == {("dkd", "t-small"): "kd", ("dkd", "t-big"): "kd"}
    reverse = shared_atkd_objectives(objectives, ["dkd", "kd"])
    assert reverse == {("kd", "t-small"): "dkd", ("kd", "t-big"): "dkd"}
    text = (args["tables"].parent / "REPORT.md").read_text()
    f5 = text[text.index("## F5") : text.index("## F6")]
    dkd_rows = [ln for ln in f5.splitlines() if ln.startswith("| dkd |")]
    assert len(dkd_rows) == 2
    assert all("(same objective as kd + ATKD: equal keys in runs.csv)" in ln for ln in dkd_rows)
    assert not any("same objective" in ln for ln in f5.splitlines() if ln.startswith(("| kd |", "| rkd |")))
    # dkd + ATKD vs dkd is its own comparison (its baseline is dkd), counted, and said to share its
    # +ATKD side with kd's
    assert "(2 of them share their +ATKD student with another row's, so they are not independent)" in f5
    n = sum(ln.startswith("| ") and not ln.startswith("| method") for ln in f5.splitlines())
    assert n == 5 and re.search(r"- \d of 5 comparisons \(2 of them share", f5)
    f8 = text[text.index("## F8") : text.index("## Power")]
    # kd + ATKD vs dkd without ATKD is a real comparison (the same numbers as F5's dkd rows) ...
    assert "- kd + ATKD minus `dkd` at t-big: +0.1500" in f8 and "the same numbers as F5's `dkd` row" in f8
    # ... and so is kd + ATKD vs kd_early: tied scores are no evidence of one objective
    assert "- kd + ATKD minus `kd_early` at t-big: +0.0000" in f8 and "the same objective" not in f8


def test_figures_readable(drawn):
    _, figures = drawn
    sweep = figures["teacher_sweep"]
    ax = sweep.axes[0]
    renderer = _renderer(sweep)
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert "standard deviation over seeds" in ax.get_title()
    on = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar containers carry the labels
    kd, dkd = on["kd + ATKD"], on["dkd + ATKD (= kd + ATKD)"]
    assert list(kd.get_ydata()) == list(dkd.get_ydata())  # the same values ...
    assert all(a != b for a, b in zip(kd.get_xdata(), dkd.get_xdata(), strict=True))  # ... drawn apart
    bars = figures["analyses"]
    assert "standard deviation over seeds" in bars.get_suptitle()
    renderer = _renderer(bars)
    for ax in bars.axes:
        assert ax.get_ylim()[0] == 0 and ax.get_xlabel() == "teacher"
        assert ax.get_legend().get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
    assert bars.axes[0].get_ylabel() == "student score (average over tasks)"
