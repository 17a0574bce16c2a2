"""Training curves (curves.csv, figures/training_curves.*) and the budget sweep (figures/budget_sweep.*,
REPORT.md), from fake run logs and tidy tables."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from test_report import TASKS, tidy_row

from atkd.report import report
from atkd.report.budget import budget_effects, budget_lines, budget_scores, parse_budget_sweep
from atkd.report.curves import CURVE_COLUMNS, curves_table, load_curves, write_curves
from atkd.report.figures import method_colours, training_curves
from atkd.report.tables import scores

MODELS = pd.DataFrame(
    {"model": ["t-small", "t-big", "s"], "role": ["teacher"] * 2 + ["student"], "params": [1e5, 1e6, 5e4]}
)


def _write_run(directory: Path, records: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def _loss(method: str, atkd: str, seed: int, step: int) -> float:
    """A falling validation loss; +ATKD a little lower; seeds apart by a fixed offset."""
    return 3.0 / (1 + step) + (0.0 if atkd == "off" else -0.1) + {1: 0.02, 2: -0.02}[seed] + (method == "sft")


def _run_records(method: str, atkd: str, seed: int, steps: int = 8, per_step: float = 0.25) -> list[dict]:
    """metrics.jsonl of a run: training lines every 2 steps (ce for KD), validation every 4 and at the end."""
    out = []
    for step in range(2, steps + 1, 2):
        line = {"step": step, "epoch": step * per_step, "loss": 2.0 / step, "lr": 0.001, "tokens": 10 * step}
        if method != "sft":
            line["ce"] = 2.5 / step
        out.append(line)
        if step % 4 == 0:
            out.append(
                {"step": step, "epoch": step * per_step, "valid_loss": _loss(method, atkd, seed, step)}
            )
    return out


@pytest.fixture
def runs(tmp_path) -> tuple[list[Path], list[Path]]:
    """Run directories of kd (two teachers) and sft in the workflow's layout, and one teacher's."""
    root = tmp_path / "results"
    dirs = []
    for teacher in ("t-small", "t-big"):
        for atkd in ("off", "on"):
            for seed in (1, 2):
                path = root / "runs" / "kd" / teacher / atkd / f"s{seed}"
                dirs.append(_write_run(path, _run_records("kd", atkd, seed)))
    for seed in (1, 2):
        dirs.append(
            _write_run(root / "runs" / "sft" / "none" / "off" / f"s{seed}", _run_records("sft", "off", seed))
        )
    # a validation line from before they carried an epoch: its epoch comes from the training lines
    legacy = _run_records("kd", "off", 1)
    del legacy[2]["epoch"]
    teacher = _write_run(root / "models" / "teachers" / "t-big", legacy)
    (teacher / "train_config.json").write_text(json.dumps({"seed": 7}))
    return dirs, [teacher]


def test_curves_table_from_metrics_jsonl(runs, tmp_path):
    dirs, teachers = runs
    out = tmp_path / "results" / "curves.csv"
    df = write_curves(dirs, out, teachers)
    assert list(df.columns) == CURVE_COLUMNS
    back = load_curves(out)
    assert len(back) == len(df) == 11 * 4  # per run: 4 training lines, no extra row for a shared step
    kd = back[back["run"] == "kd/t-big/on/s2"].set_index("step")
    assert list(kd.index) == [2, 4, 6, 8] and list(kd["epoch"]) == [0.5, 1.0, 1.5, 2.0]
    assert kd.loc[4, "train_loss"] == 0.5 and kd.loc[4, "train_ce"] == 2.5 / 4
    assert kd.loc[8, "valid_loss"] == pytest.approx(_loss("kd", "on", 2, 8)) and np.isnan(
        kd.loc[6, "valid_loss"]
    )
    assert (kd[["method", "teacher", "atkd", "seed"]].drop_duplicates().values.tolist()) == [
        ["kd", "t-big", "on", 2]
    ]
    sft = back[back["method"] == "sft"]
    assert (
        set(sft["teacher"]) == {""} and sft["train_ce"].isna().all()
    )  # no teacher: empty, as in metrics.csv
    (teacher,) = [g for _, g in back[back["method"] == "teacher"].groupby("run")]
    assert set(teacher["run"]) == {"teacher/t-big"} and set(teacher["seed"]) == {7}
    assert teacher.set_index("step").loc[4, "epoch"] == 1.0  # filled from the steps-per-epoch


def test_curves_table_errors(runs, tmp_path):
    dirs, _ = runs
    with pytest.raises(ValueError, match=r"expected a run directory <method>/<teacher>/<on\|off>/s<seed>"):
        curves_table([dirs[0].parent])
    with pytest.raises(ValueError, match="given twice"):
        curves_table([dirs[0], dirs[0]])
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        curves_table([tmp_path / "runs" / "kd" / "t" / "on" / "s1"])
    (dirs[0] / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        curves_table([dirs[0]])


def _recording(monkeypatch) -> dict[str, matplotlib.figure.Figure]:
    figures: dict[str, matplotlib.figure.Figure] = {}
    save = matplotlib.figure.Figure.savefig

    def recording(fig, fname, *args, **kwargs):
        figures.setdefault(Path(fname).name.lstrip(".").split(".")[0], fig)
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return figures


def test_training_curves_figure(runs, tmp_path, monkeypatch):
    dirs, teachers = runs
    curves = curves_table(dirs, teachers)
    colours = method_colours(["sft", "kd"])
    figures = _recording(monkeypatch)
    out = training_curves(curves, MODELS, tmp_path / "fig" / "training_curves", colours)
    assert [p.name for p in out] == ["training_curves.png", "training_curves.pdf"]
    assert all(p.stat().st_size > 1000 for p in out)
    fig = figures["training_curves"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    # one panel per method in the configured order, kd at its largest teacher, then the teachers
    assert [ax.get_title() for ax in panels] == [
        "sft (no teacher)",
        "kd, teacher t-big",
        "teachers (their own training)",
    ]
    kd = panels[1]
    bold = {ln.get_label(): ln for ln in kd.lines if not ln.get_label().startswith("_")}
    assert set(bold) == {"without ATKD (2 seeds)", "+ ATKD (2 seeds)"}
    on = bold["+ ATKD (2 seeds)"]
    assert list(on.get_xdata()) == [1.0, 2.0] and on.get_linestyle() == "--"
    means = [np.mean([_loss("kd", "on", s, step) for s in (1, 2)]) for step in (4, 8)]
    assert list(on.get_ydata()) == pytest.approx(means)
    faint = [ln for ln in kd.lines if ln.get_label().startswith("_")]
    assert len(faint) == 4 and all(ln.get_alpha() < 0.5 for ln in faint)  # every seed, both variants
    assert all(to_hex(ln.get_color()) == colours["kd"] for ln in kd.lines)
    with pytest.raises(ValueError, match="no validation loss"):
        training_curves(curves.assign(valid_loss=np.nan), MODELS, tmp_path / "none", colours)


SWEEP = {"teacher": "t-big", "unit": "epochs", "members": {"kd_b05": 0.5, "kd": 1.0, "kd_b2": 2.0}}
EFFECT = {"kd_b05": 0.05, "kd": 0.03, "kd_b2": 0.01}  # the ATKD effect shrinks with the budget


def _sweep_rows(seeds=(1, 2, 3)) -> list[dict]:
    rows = []
    for method, effect in EFFECT.items():
        for teacher in ("t-small", "t-big"):
            for atkd in ("off", "on"):
                for seed in seeds:
                    value = 0.5 + SWEEP["members"][method] / 10 + (effect if atkd == "on" else 0.0)
                    value += 0.001 * seed * (1 + (atkd == "on") * (method == "kd_b2"))  # seed noise
                    value += 0.2 if teacher == "t-small" else 0.0  # another teacher: not in the sweep
                    for task, metric in TASKS.items():
                        run = f"{method}/{teacher}/{atkd}/s{seed}"
                        rows.append(tidy_row(run, teacher, method, atkd, seed, task, metric, value))
    return rows


def test_budget_sweep_compares_endpoints_over_their_shared_seeds():
    """Members with different seeds (kd with 5, the others with 3): the endpoint comparison uses the seeds
    both endpoints have, and an effect that grows with the budget is reported as such (two-sided)."""
    rows = [r for r in _sweep_rows(seeds=(1, 2, 3, 4, 5)) if r["method"] == "kd" or r["seed"] <= 3]
    flipped = [
        {**r, "value": r["value"] - 0.1 * (r["method"] == "kd_b05") * (r["atkd"] == "on")} for r in rows
    ]
    per_seed = scores(pd.DataFrame(flipped), TASKS)
    sweep = parse_budget_sweep(json.dumps(SWEEP))
    text = "\n".join(budget_lines(budget_scores(per_seed, sweep), sweep))
    assert "at 0.5 epochs minus at 2 epochs: -0.0620" in text and "(3 seeds" in text
    assert "**ATKD's effect is larger at 2 epochs (the interval excludes 0)**" in text


def test_budget_sweep_scores_lines_and_figure(tmp_path, monkeypatch):
    per_seed = scores(pd.DataFrame(_sweep_rows()), TASKS)
    sweep = parse_budget_sweep(json.dumps(SWEEP))
    table = budget_scores(per_seed, sweep)
    assert set(table["budget"]) == {0.5, 1.0, 2.0} and len(table) == 3 * 2 * 3  # t-big only
    effects = budget_effects(table)
    assert effects.groupby("budget")["effect"].mean().tolist() == pytest.approx([0.05, 0.03, 0.01 + 0.002])
    lines = budget_lines(table, sweep)
    text = "\n".join(lines)
    assert lines[0] == "## Budget sweep: the ATKD effect against the distillation budget"
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| budget")]
    assert [r.split(" | ")[:2] for r in rows] == [["| 0.5", "kd_b05"], ["| 1", "kd"], ["| 2", "kd_b2"]]
    assert "+0.0500" in rows[0] and "+0.0120" in rows[2] and all("supported" in r for r in rows)
    assert "- ATKD effect (signed) at 0.5 epochs minus at 2 epochs: +0.0380" in text
    assert "**ATKD's effect is larger at 0.5 epochs (the interval excludes 0)**" in text
    # convergence: each budget minus the next smaller one, without and with ATKD (a gain of 0.05 a step)
    assert "- Convergence, without ATKD: `kd` (1 epochs) minus `kd_b05` (0.5 epochs): +0.0500" in text
    assert "- Convergence, with ATKD: `kd_b2` (2 epochs) minus `kd` (1 epochs): +0.0820" in text
    assert text.count("**still gaining (the 95% interval excludes 0)**") == 4
    figures = _recording(monkeypatch)
    from atkd.report.budget import budget_figure

    out = budget_figure(table, sweep, tmp_path / "budget_sweep")
    assert [p.name for p in out] == ["budget_sweep.png", "budget_sweep.pdf"]
    left, right = figures["budget_sweep"].axes
    assert right.get_xlabel() == "distillation budget (epochs)" and right.get_xscale() == "log"
    (mean,) = [ln for ln in right.lines if ln.get_label() == "mean over seeds"]
    assert list(mean.get_xdata()) == [0.5, 1.0, 2.0]
    assert list(mean.get_ydata()) == pytest.approx([0.05, 0.03, 0.012])
    dots = [c for c in right.collections if c.get_label() == "one seed"]
    assert len(dots[0].get_offsets()) == 9  # every seed of every budget
    assert [t.get_text() for t in right.get_xticklabels()] == ["0.5\nkd_b05", "1\nkd", "2\nkd_b2"]


def test_convergence_levels_off_when_the_larger_budget_gains_less_than_its_mde():
    """A doubling whose gain is seed noise reads 'within its MDE'; one lower on every seed reads 'lower'
    (a steady gain reads 'still gaining': test_budget_sweep_scores_lines_and_figure)."""
    from atkd.report.budget import convergence_lines

    sweep = {"teacher": "t", "unit": "epochs", "members": {"kd": 1.0, "kd_b2": 2.0}}
    noise = [0.01, -0.02, 0.01, 0.0, -0.01, 0.015]
    rows = [("kd", 1.0, atkd, s, 0.5 + 0.01 * (s % 3)) for atkd in ("off", "on") for s in range(1, 7)]
    rows += [("kd_b2", 2.0, "off", s, 0.5 + 0.01 * (s % 3) + noise[s - 1]) for s in range(1, 7)]
    rows += [("kd_b2", 2.0, "on", s, 0.5 + 0.01 * (s % 3) - 0.03 - 0.001 * s) for s in range(1, 7)]
    table = pd.DataFrame(rows, columns=["method", "budget", "atkd", "seed", "value"])
    off, on = convergence_lines(table, sweep)
    assert off.startswith("- Convergence, without ATKD: `kd_b2` (2 epochs) minus `kd` (1 epochs): +0.0008")
    assert "**no gain resolved: |effect| 0.0008 is below the MDE" in off
    assert "**lower at the larger budget (the 95% interval excludes 0)**" in on


def test_budget_sweep_missing_member_and_bad_section():
    per_seed = scores(pd.DataFrame(_sweep_rows()), TASKS)
    sweep = {**SWEEP, "members": {**SWEEP["members"], "kd_b4": 4.0}}
    lines = budget_lines(budget_scores(per_seed, sweep), sweep)
    assert "- Not measured: kd_b4 (no scores with and without ATKD at t-big)." in lines
    assert budget_lines(budget_scores(per_seed, {**sweep, "teacher": "t-none"}), sweep)[2].startswith(
        "- Not measured"
    )
    assert parse_budget_sweep("") is None and parse_budget_sweep("{}") is None
    for bad, message in [
        ({**SWEEP, "unit": "hours"}, r"budget_sweep.unit: expected one of epochs, steps, got 'hours'"),
        ({**SWEEP, "members": {"kd": 1, "kd_b2": 0}}, r"budget_sweep.members.kd_b2: expected a budget > 0"),
        ({**SWEEP, "members": {"kd": 1, "kd_b2": 1}}, r"two or more distinct budgets"),
        ({"teacher": "t-big", "members": {}}, r"expected \{teacher, unit, members"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_budget_sweep(bad)


def test_report_writes_curves_and_budget_sweep(runs, tmp_path):
    dirs, teachers = runs
    results = tmp_path / "results"
    write_curves(dirs, results / "curves.csv", teachers)
    pd.DataFrame(_sweep_rows()).to_csv(results / "metrics.csv", index=False)
    MODELS.to_csv(results / "models.csv", index=False)
    out = report(
        results / "metrics.csv",
        results / "models.csv",
        results / "tables",
        tmp_path / "figures",
        ["kd_b05", "kd", "kd_b2", "sft"],
        curves=results / "curves.csv",
        budget_sweep=SWEEP,
    )
    names = {p.name for p in out}
    assert {"training_curves.png", "training_curves.pdf", "budget_sweep.png", "budget_sweep.pdf"} <= names
    text = (results / "REPORT.md").read_text()
    assert "## F8." in text and text.index("## F8.") < text.index("## Budget sweep")
    assert "| 2 | kd_b2 |" in text
    # without a sweep: no figure and no block
    again = report(results / "metrics.csv", results / "models.csv", results / "t2", tmp_path / "f2", ["kd"])
    assert "budget_sweep.png" not in {p.name for p in again}
    assert "Budget sweep" not in (results / "REPORT.md").read_text()


def test_budget_sweep_resamples_documents_with_evidence():
    """With per-document scores the rows and the budget comparison pair the arms by seed and document: the
    effect is the mean document difference, and the comparison says how many documents it rests on."""
    from atkd.report.stats import Evidence

    rng = np.random.default_rng(0)
    docs, rows = [], []
    base = {d: rng.uniform(0.2, 0.8) for d in range(20)}  # each document's difficulty, shared by the arms
    for method, effect in EFFECT.items():
        for atkd in ("off", "on"):
            for seed in (1, 2):
                for task, metric in TASKS.items():
                    values = [base[d] + (effect if atkd == "on" else 0.0) + 0.01 * seed for d in range(20)]
                    run = f"{method}/t-big/{atkd}/s{seed}"
                    rows.append(
                        tidy_row(run, "t-big", method, atkd, seed, task, metric, float(np.mean(values)))
                    )
                    docs += [
                        dict(run=run, teacher="t-big", method=method, atkd=atkd, seed=seed, task=task, doc=d)
                        | dict(metric=metric, value=v)
                        for d, v in enumerate(values)
                    ]
    per_seed = scores(pd.DataFrame(rows), TASKS)
    evidence = Evidence(per_seed, TASKS, pd.DataFrame(docs))
    sweep = parse_budget_sweep(SWEEP)
    lines = budget_lines(budget_scores(per_seed, sweep), sweep, evidence)
    text = "\n".join(lines)
    assert "| 0.5 | kd_b05 |" in text and "+0.0500 [95% CI +0.0500, +0.0500]" in text
    assert "(2 seeds x 40 docs; only 2 seeds" in text  # 20 documents in each of the 2 suites
    assert "- ATKD effect (signed) at 0.5 epochs minus at 2 epochs: +0.0400 [95% CI +0.0400, +0.0400]" in text
