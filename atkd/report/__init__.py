"""The report stage: tables and figures from the tidy result files, and the collection of per-run rows.

    atkd collect --out results/metrics.csv results/runs/*/*/*/*/eval/metrics.csv
    atkd collect --doc-scores-out results/doc_scores.csv \
        --doc-scores results/runs/*/*/*/*/eval/doc_scores.csv \
        --metrics results/metrics.csv --runs-out results/runs.csv --summaries RUN=SUMMARY_JSON ...
    atkd curves --out results/curves.csv results/runs/*/*/*/* --teachers results/models/teachers/*
    atkd report --metrics results/metrics.csv --models results/models.csv \
        --tables results/tables --figures figures

`collect` only concatenates and checks the per-run tidy tables, `curves` gathers every run's
metrics.jsonl into one (atkd.report.curves); `report` reads nothing but the tidy files it is given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from atkd.fsutil import atomic_write_text
from atkd.report.analyses import analysis_figure, analysis_scores, analysis_table, parse_analyses
from atkd.report.budget import budget_figure, budget_lines, budget_scores, parse_budget_sweep
from atkd.report.comparisons import comparison_lines, parse_comparisons
from atkd.report.curves import load_curves, write_curves
from atkd.report.figures import (
    landscape_2d,
    landscape_lines,
    method_colours,
    teacher_sweep,
    training_curves,
    unc_density,
)
from atkd.report.findings import load_reference_probes, report_markdown, sparse_lines
from atkd.report.stats import Evidence
from atkd.report.tables import (
    METRIC_COLUMNS,
    arm_objectives,
    check_doc_scores,
    frame_to_latex,
    load_chance,
    load_doc_scores,
    load_metrics,
    load_models,
    load_runs,
    main_table,
    primary_metrics,
    scores,
    shared_atkd_objectives,
    to_latex,
    to_markdown,
    with_chance,
)
from atkd.report.tidy import collect_doc_scores, collect_runs, parse_summaries

__all__ = ["collect", "report"]


def collect(paths: list[Path], out: Path) -> pd.DataFrame:
    """Concatenate per-run tidy metric tables into one, checking columns and duplicates."""
    if not paths:
        raise ValueError("collect needs at least one metrics file")
    frames = []
    for path in paths:
        df = pd.read_csv(path, dtype={"teacher": str, "atkd": str, "run": str}, keep_default_na=False)
        missing = [c for c in METRIC_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        frames.append(df)
    all_rows = pd.concat(frames, ignore_index=True)
    key = ["run", "task", "metric"] + [c for c in ("sample_seed",) if c in all_rows.columns]
    dup = all_rows.duplicated(key)
    if dup.any():
        raise ValueError(f"duplicate rows for {all_rows[dup].iloc[0][key].to_dict()}")
    atomic_write_text(out, all_rows.to_csv(index=False))
    return all_rows


def report(
    metrics: Path,
    models: Path,
    tables: Path,
    figures: Path,
    methods: list[str] | None = None,
    primary: dict[str, str] | None = None,
    probes: list[Path] | None = None,
    landscapes: list[Path] | None = None,
    analyses: Mapping[str, Mapping[str, Any]] | None = None,
    doc_scores: Path | None = None,
    runs: Path | None = None,
    chance: Path | None = None,
    curves: Path | None = None,
    budget_sweep: Mapping[str, Any] | None = None,
    reference_probes: Mapping[str, Path] | None = None,
    sparse: list[Path] | None = None,
    comparisons: list[Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write `tables/main.{csv,md,tex}`, `figures/teacher_sweep.{png,pdf}`, with probe tables
    (`probes/<teacher>/{summary,tokens}.csv` directories) `tables/probes.{csv,md,tex}` and
    `figures/unc_density.{png,pdf}`, with landscapes `figures/landscape.{png,pdf}` (1-D) and
    `figures/landscape_2d.{png,pdf}` (if the grid is 2-D), with analyses `tables/analyses.{csv,md,tex}` and
    `figures/analyses.{png,pdf}`, with curves (curves.csv) `figures/training_curves.{png,pdf}`, with a budget
    sweep (atkd.report.budget) `figures/budget_sweep.{png,pdf}` and its REPORT.md block, and `REPORT.md`
    next to `tables/`; returns the written paths.

    With `doc_scores` (doc_scores.csv, checked against metrics.csv) REPORT.md's comparisons resample
    documents as well as seeds; with `runs` (runs.csv) it marks students that share an objective; with
    `chance` (chance.csv: task, chance) the main table gains a chance row; `reference_probes` ({label:
    another run's tables/probes.csv}) shows those teachers' probes beside this run's in F3; `sparse`
    (`atkd sparse-accuracy` CSVs) adds the sparse cache's measured accuracy to REPORT.md."""
    df = load_metrics(metrics)
    mdl = load_models(models)
    prim = primary_metrics(df, primary)
    docs = load_doc_scores(doc_scores) if doc_scores else None
    if docs is not None:
        check_doc_scores(docs, df)
    run_rows = load_runs(runs) if runs else None
    levels = load_chance(chance) if chance else {}
    points = flat = None
    if landscapes:
        flat = pd.concat([pd.read_csv(Path(p) / "summary.csv", dtype={"atkd": str}) for p in landscapes])
        points = pd.concat([pd.read_csv(Path(p) / "landscape.csv", dtype={"atkd": str}) for p in landscapes])
    curve_rows = load_curves(curves) if curves else None
    seen = set(df["method"]) | (set(points["method"]) if points is not None else set())
    seen |= set(curve_rows["method"]) - {"teacher"} if curve_rows is not None else set()
    order = list(methods or []) + sorted(seen - set(methods or []))
    colours = method_colours(order)  # built once: the same colour for a method in every figure
    stats = with_chance(main_table(df, prim, order), levels, sorted(prim))
    out = [tables / "main.csv", tables / "main.md"]
    atomic_write_text(out[0], stats.to_csv(index=False))
    atomic_write_text(out[1], to_markdown(stats, prim))
    out.append(tables / "main.tex")
    atomic_write_text(out[-1], to_latex(stats, prim))
    per_seed = scores(df, prim)
    # the sweep figure shows the methods run with several teachers (and those without one, as a band)
    teachers_of = per_seed.groupby("method")["teacher"].nunique()
    no_teacher = set(per_seed.loc[per_seed["teacher"] == "", "method"])
    swept = [m for m in order if teachers_of.get(m, 0) >= 2 or m in no_teacher]
    twins = shared_atkd_objectives(arm_objectives(run_rows), order)
    out += teacher_sweep(
        per_seed, mdl, figures / "teacher_sweep", swept or order, colours=colours, twins=twins
    )
    summary = None
    if probes:
        summary = pd.concat([pd.read_csv(Path(p) / "summary.csv") for p in probes], ignore_index=True)
        tokens = pd.concat([pd.read_csv(Path(p) / "tokens.csv") for p in probes], ignore_index=True)
        wide = summary.pivot_table(index="model", columns="metric", values="value").reset_index()
        params = dict(zip(mdl["model"], mdl["params"].astype(float), strict=False))
        # smallest teacher first (then by name), as in every other view of the teachers
        wide = wide.sort_values("model", key=lambda m: m.map(lambda x: (params.get(x, math.inf), x)))
        out += [tables / "probes.csv", tables / "probes.md", tables / "probes.tex"]
        atomic_write_text(out[-3], wide.to_csv(index=False))
        atomic_write_text(out[-2], _markdown(wide))
        atomic_write_text(out[-1], frame_to_latex(wide))
        out += unc_density(tokens, mdl, figures / "unc_density")
    if points is not None:
        out += landscape_lines(points, figures / "landscape", colours)
        out += landscape_2d(points, figures / "landscape_2d", colours)
    analyses = parse_analyses(analyses)
    if analyses:
        members = analysis_scores(per_seed, analyses)
        if members.empty:
            raise ValueError(f"analyses {sorted(analyses)}: none of their members has scores in {metrics}")
        table = analysis_table(members)
        out += [tables / "analyses.csv", tables / "analyses.md", tables / "analyses.tex"]
        atomic_write_text(out[-3], table.to_csv(index=False))
        atomic_write_text(out[-2], _markdown(table))
        atomic_write_text(out[-1], frame_to_latex(table))
        out += analysis_figure(table, mdl, figures / "analyses", colours)
    if curve_rows is not None:
        out += training_curves(curve_rows, mdl, figures / "training_curves", colours)
    sweep_lines: list[str] = []
    evidence = Evidence(per_seed, prim, docs)
    if sweep := parse_budget_sweep(budget_sweep):
        budget = budget_scores(per_seed, sweep)
        out += budget_figure(budget, sweep, figures / "budget_sweep")
        sweep_lines = budget_lines(budget, sweep, evidence)
    out.append(tables.parent / "REPORT.md")
    text = report_markdown(
        per_seed,
        mdl,
        summary,
        flat,
        analyses,
        tasks=sorted(prim),
        methods=order,
        evidence=evidence,
        runs=run_rows,
        chance=levels,
        reference_probes=load_reference_probes(reference_probes or {}),
    )
    if sweep_lines:
        text = text.rstrip("\n") + "\n\n" + "\n".join(sweep_lines)
    if sparse:
        rows = pd.concat([pd.read_csv(p) for p in sparse], ignore_index=True)
        text = text.rstrip("\n") + "\n\n" + "\n".join(sparse_lines(rows))
    if requested := comparison_lines(parse_comparisons(comparisons), evidence):
        text = text.rstrip("\n") + "\n\n" + "\n".join(requested)
    atomic_write_text(out[-1], text)
    return out


def _markdown(df: pd.DataFrame) -> str:
    """A plain Markdown table (no extra dependency), numbers to 4 significant digits."""
    cells = [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells]) + "\n"


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. task=metric), got {item!r}")
        out[key] = value
    return out


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add `atkd collect`, `atkd curves` and `atkd report`."""
    p = sub.add_parser(
        "collect", help="concatenate per-run tidy tables: metrics, per-document scores, run objectives"
    )
    p.add_argument("inputs", nargs="*", type=Path, help="per-run metrics.csv files (concatenated into --out)")
    p.add_argument("--out", type=Path, default=None, help="the collected metrics.csv")
    p.add_argument("--doc-scores", nargs="*", type=Path, default=[], help="per-run doc_scores.csv files")
    p.add_argument("--doc-scores-out", type=Path, default=None, help="the collected doc_scores.csv")
    p.add_argument(
        "--summaries",
        nargs="*",
        default=[],
        metavar="RUN=PATH",
        help="each trained student's train_summary.json by its run id (runs.csv, atkd.report.tidy)",
    )
    p.add_argument("--metrics", type=Path, default=None, help="collected metrics.csv (default: --out)")
    p.add_argument("--runs-out", type=Path, default=None, help="runs.csv: one row per run, its objective key")

    def run_collect(a: argparse.Namespace) -> int:
        if not (a.out or a.doc_scores_out or a.runs_out):
            raise SystemExit("atkd collect: nothing to write (give --out, --doc-scores-out or --runs-out)")
        if a.out:
            if not a.inputs:
                raise SystemExit("atkd collect: --out needs at least one metrics file")
            rows = collect(a.inputs, a.out)
            print(f"{a.out}: {len(rows)} rows from {len(a.inputs)} file(s)")
        if a.doc_scores_out:
            docs = collect_doc_scores(a.doc_scores, a.doc_scores_out)
            print(f"{a.doc_scores_out}: {len(docs)} rows from {len(a.doc_scores)} file(s)")
        if a.runs_out:
            metrics = a.metrics or a.out
            if metrics is None:
                raise SystemExit("atkd collect: --runs-out needs --metrics (or --out)")
            runs = collect_runs(parse_summaries(a.summaries), metrics, a.runs_out)
            print(f"{a.runs_out}: {len(runs)} run(s), {runs['objective'].nunique()} objective(s)")
        return 0

    p.set_defaults(func=run_collect)

    line = "every run's metrics.jsonl as one tidy table (curves.csv)"
    p = sub.add_parser("curves", help=line, description=line + ": training and validation loss by step.")
    p.add_argument("runs", nargs="*", type=Path, help="run directories <method>/<teacher>/<on|off>/s<seed>")
    p.add_argument("--teachers", nargs="*", type=Path, default=[], help="teacher training directories")
    p.add_argument(
        "--rule-runs",
        nargs="*",
        type=Path,
        default=[],
        help="run directories produced by a user's rule: left out when they have no metrics.jsonl",
    )
    p.add_argument("--out", type=Path, required=True, help="curves.csv to write")

    def run_curves(a: argparse.Namespace) -> int:
        rows = write_curves(a.runs, a.out, a.teachers, a.rule_runs)
        print(f"{a.out}: {len(rows)} rows from {rows['run'].nunique()} run(s)")
        return 0

    p.set_defaults(func=run_curves)

    line = "tables and figures from the tidy result files"
    p = sub.add_parser(
        "report", help=line, description=line + ", and REPORT.md: one verdict per claim of the study."
    )
    p.add_argument("--metrics", type=Path, required=True, help="collected metrics.csv")
    p.add_argument("--models", type=Path, required=True, help="models.csv (`atkd model-table`)")
    p.add_argument("--tables", type=Path, required=True, help="output directory of tables and REPORT.md")
    p.add_argument("--figures", type=Path, required=True, help="output directory of figures")
    p.add_argument("--methods", nargs="*", default=None, help="method order (colours, rows)")
    p.add_argument("--primary", nargs="*", default=[], help="task=metric that scores a task")
    p.add_argument("--probes", nargs="*", type=Path, default=[], help="`atkd probe` output directories")
    p.add_argument(
        "--landscapes", nargs="*", type=Path, default=[], help="`atkd landscape` output directories"
    )

    p.add_argument(
        "--analyses",
        default="",
        help="JSON {name: {variant: on|off, members: {method: label}}} (the config's `analyses:` section)",
    )
    p.add_argument(
        "--doc-scores", type=Path, default=None, help="doc_scores.csv: resample documents as well as seeds"
    )
    p.add_argument("--runs", type=Path, default=None, help="runs.csv: which students share an objective")
    p.add_argument("--chance", type=Path, default=None, help="chance.csv (task, chance): a chance row")
    p.add_argument("--curves", type=Path, default=None, help="curves.csv (`atkd curves`)")
    p.add_argument(
        "--sparse", nargs="*", type=Path, default=[], help="`atkd sparse-accuracy` CSVs (the sparse cache)"
    )
    p.add_argument(
        "--reference-probes",
        nargs="*",
        default=[],
        help="LABEL=PATH: another run's tables/probes.csv, shown beside this run's teachers in F3",
    )
    p.add_argument(
        "--budget-sweep",
        default="",
        help="JSON {teacher, unit: epochs|steps, members: {method: budget}} (atkd.config.budget_sweep_plan)",
    )

    p.add_argument(
        "--comparisons",
        default="",
        help="JSON [{a, b, teacher, variant: off|on|both}]: paired comparisons for REPORT.md",
    )

    def run_report(a: argparse.Namespace) -> int:
        analyses = parse_analyses(a.analyses)
        sweep = parse_budget_sweep(a.budget_sweep)
        for path in report(
            a.metrics,
            a.models,
            a.tables,
            a.figures,
            a.methods,
            _pairs(a.primary),
            a.probes,
            a.landscapes,
            analyses,
            doc_scores=a.doc_scores,
            runs=a.runs,
            chance=a.chance,
            curves=a.curves,
            budget_sweep=sweep,
            reference_probes={k: Path(v) for k, v in _pairs(a.reference_probes).items()},
            sparse=a.sparse,
            comparisons=parse_comparisons(a.comparisons),
        ):
            print(path)
        return 0

    p.set_defaults(func=run_report)
