"""Tables of the study from the tidy result files only (`metrics.csv`, `models.csv`, `doc_scores.csv`,
`runs.csv`, `chance.csv`).

`metrics.csv` is one long table, one row per measured number:
    run, student, teacher, method, atkd, seed, task, metric, value
(`teacher` is empty for runs without one, e.g. SFT; `atkd` is "on" or "off"). `models.csv` lists
every model of the study: model, role, params. `doc_scores.csv` holds the per-document scores behind
metrics.csv's task scores (run columns, task, doc, metric, value; a task's mean over documents is its
metrics.csv value), `runs.csv` one row per trained student with the key of its training objective
(atkd.report.tidy), `chance.csv` the chance level of each task (task, chance). Nothing here reads
checkpoints, logs or configs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from atkd.eval.rows import PRIMARY_PREFERENCE

METRIC_COLUMNS = ["run", "student", "teacher", "method", "atkd", "seed", "task", "metric", "value"]
MODEL_COLUMNS = ["model", "role", "params"]
DOC_COLUMNS = ["run", "teacher", "method", "atkd", "seed", "task", "doc", "metric", "value"]
RUN_COLUMNS = ["run", "method", "teacher", "atkd", "seed", "objective"]
CHANCE_COLUMNS = ["task", "chance"]
CHANCE = "chance"  # the method name of the chance row of the main table
# PRIMARY_PREFERENCE (atkd.eval.rows, which writes per-document scores of these metrics): the metric
# that scores a task when the config does not say.
AVERAGE = "avg"


# LaTeX's special characters in text and what a table cell must say instead.
_LATEX_SPECIAL = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters, so names like `kd_early` or `hardest 50%` compile as text."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def frame_to_latex(df: pd.DataFrame) -> str:
    """A booktabs tabular of a plain table: every header and text cell escaped, numbers to 4 significant
    digits (right-aligned), text left-aligned."""
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = ["\\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", "\\toprule"]
    lines.append(" & ".join(latex_escape(c) for c in df.columns) + " \\\\")
    lines.append("\\midrule")
    for row in df.itertuples(index=False):
        cells = ["" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else latex_escape(v) for v in row]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _check_columns(df: pd.DataFrame, columns: Sequence[str], path: Path | str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")


def load_metrics(path: Path | str) -> pd.DataFrame:
    """Read and check the tidy metrics table."""
    df = pd.read_csv(path, dtype={"teacher": str, "atkd": str, "run": str}, keep_default_na=False)
    _check_columns(df, METRIC_COLUMNS, path)
    df["value"] = pd.to_numeric(df["value"], errors="raise")
    df["seed"] = df["seed"].astype(int)
    bad = sorted(set(df["atkd"]) - {"on", "off"})
    if bad:
        raise ValueError(f"{path}: column atkd must be 'on' or 'off', found {bad}")
    return df


def load_models(path: Path | str) -> pd.DataFrame:
    """Read and check the tidy model list."""
    df = pd.read_csv(path)
    _check_columns(df, MODEL_COLUMNS, path)
    return df


def primary_metrics(df: pd.DataFrame, configured: Mapping[str, str] | None = None) -> dict[str, str]:
    """The metric that scores each task: the configured one, else the first of PRIMARY_PREFERENCE present."""
    configured = dict(configured or {})
    out = {}
    for task, metrics in df.groupby("task")["metric"]:
        present = set(metrics)
        if task in configured:
            if configured[task] not in present:
                raise ValueError(
                    f"task {task!r} has no metric {configured[task]!r}; it has {sorted(present)}"
                )
            out[task] = configured[task]
            continue
        choice = next((m for m in PRIMARY_PREFERENCE if m in present), None)
        if choice is None:
            raise ValueError(f"task {task!r}: none of {PRIMARY_PREFERENCE} present ({sorted(present)})")
        out[task] = choice
    return out


def scores(df: pd.DataFrame, primary: Mapping[str, str]) -> pd.DataFrame:
    """One score per (teacher, method, atkd, seed, task), plus the task average as task 'avg'."""
    keep = pd.Series(False, index=df.index)
    for task, metric in primary.items():
        keep |= (df["task"] == task) & (df["metric"] == metric)
    s = df[keep][["teacher", "method", "atkd", "seed", "task", "value"]]
    dup = s.duplicated(["teacher", "method", "atkd", "seed", "task"])
    if dup.any():
        raise ValueError(f"duplicate scores for {s[dup].iloc[0].to_dict()}")
    tasks = sorted(primary)
    wide = s.pivot_table(index=["teacher", "method", "atkd", "seed"], columns="task", values="value")
    complete = wide[tasks].notna().all(axis=1)
    wide.loc[complete, AVERAGE] = wide.loc[complete, tasks].mean(axis=1)
    long = wide.reset_index().melt(id_vars=["teacher", "method", "atkd", "seed"], var_name="task")
    return long.dropna(subset=["value"])


def load_doc_scores(path: Path | str) -> pd.DataFrame:
    """Read and check the tidy per-document scores (`atkd collect --doc-scores-out`)."""
    df = pd.read_csv(
        path, dtype={"teacher": str, "atkd": str, "run": str, "doc": str, "task": str}, keep_default_na=False
    )
    _check_columns(df, DOC_COLUMNS, path)
    df["value"] = pd.to_numeric(df["value"], errors="raise")
    df["seed"] = df["seed"].astype(int)
    dup = df.duplicated(["run", "task", "doc", "metric"])
    if dup.any():
        raise ValueError(
            f"{path}: duplicate rows for {df[dup].iloc[0][['run', 'task', 'doc', 'metric']].to_dict()}"
        )
    return df


def check_doc_scores(docs: pd.DataFrame, metrics: pd.DataFrame, rel: float = 1e-6) -> None:
    """Every (run, task, metric) of the per-document scores has a metrics.csv row equal to their mean
    over documents: the bootstrap resamples exactly the numbers the tables report."""
    mean = docs.groupby(["run", "task", "metric"])["value"].mean().rename("docs")
    table = metrics.drop_duplicates(["run", "task", "metric"]).set_index(["run", "task", "metric"])["value"]
    both = mean.to_frame().join(table.rename("table"), how="left")
    missing = both[both["table"].isna()]
    if len(missing):
        raise ValueError(
            f"doc_scores.csv has {missing.index[0]} (run, task, metric), which metrics.csv lacks"
        )
    off = both[(both["docs"] - both["table"]).abs() > rel * np.maximum(1.0, both["table"].abs())]
    if len(off):
        key, row = off.index[0], off.iloc[0]
        raise ValueError(
            f"doc_scores.csv disagrees with metrics.csv for (run, task, metric) {key}: mean over documents "
            f"{row['docs']!r}, table {row['table']!r}"
        )


def load_runs(path: Path | str) -> pd.DataFrame:
    """Read and check the tidy list of trained students with their objective keys (`runs.csv`)."""
    df = pd.read_csv(
        path,
        dtype={"teacher": str, "atkd": str, "run": str, "objective": str, "epochs": str},
        keep_default_na=False,
    )
    _check_columns(df, RUN_COLUMNS, path)
    df["seed"] = df["seed"].astype(int)
    return df


def load_chance(path: Path | str) -> dict[str, float]:
    """The chance level of each task (`chance.csv`: task, chance)."""
    df = pd.read_csv(path, dtype={"task": str}, keep_default_na=False)
    _check_columns(df, CHANCE_COLUMNS, path)
    if df["task"].duplicated().any():
        raise ValueError(f"{path}: task {df.loc[df['task'].duplicated(), 'task'].iloc[0]!r} listed twice")
    return dict(zip(df["task"], pd.to_numeric(df["chance"], errors="raise").astype(float), strict=True))


Arm = tuple[str, str, str]  # (method, teacher, atkd)


def arm_objectives(runs: pd.DataFrame | None) -> dict[Arm, frozenset[str]]:
    """(method, teacher, atkd) -> the objective keys of its runs (one key when every seed was trained on
    the same configuration, as the keys do not depend on the seed)."""
    if runs is None or runs.empty:
        return {}
    return {
        (m, t, a): frozenset(g) for (m, t, a), g in runs.groupby(["method", "teacher", "atkd"])["objective"]
    }


def same_objective(objectives: Mapping[Arm, frozenset[str]], a: Arm, b: Arm) -> bool:
    """Whether two arms were trained on one objective: equal keys in runs.csv (the resolved loss, data,
    teacher, sampling and training budget; atkd.report.tidy), never inferred from their scores."""
    return a in objectives and b in objectives and objectives[a] == objectives[b]


def shared_atkd_objectives(
    objectives: Mapping[Arm, frozenset[str]], order: Sequence[str] = ()
) -> dict[tuple[str, str], str]:
    """`(method, teacher) -> other` for every +ATKD arm whose objective (runs.csv) is that of an earlier
    method's +ATKD arm at the same teacher (earlier in `order`, then by name): the same student twice."""
    rank = {m: i for i, m in enumerate(order)}
    out: dict[tuple[str, str], str] = {}
    on = sorted({(t, m) for m, t, a in objectives if a == "on" and m != "teacher"})
    for teacher in sorted({t for t, _ in on}):
        firsts: list[str] = []  # one method per distinct +ATKD objective
        methods = sorted((m for t, m in on if t == teacher), key=lambda m: (rank.get(m, len(rank)), m))
        for method in methods:
            arm = (method, teacher, "on")
            twin = next((f for f in firsts if same_objective(objectives, arm, (f, teacher, "on"))), None)
            if twin is None:
                firsts.append(method)
            else:
                out[(method, teacher)] = twin
    return out


def with_chance(stats: pd.DataFrame, chance: Mapping[str, float], tasks: Sequence[str]) -> pd.DataFrame:
    """The main table with a first row of chance levels (method `chance`; the average where every task
    has one): a score near it is no better than guessing."""
    rows = [
        {"teacher": "", "method": CHANCE, "atkd": "", "task": t, "mean": chance[t]}
        for t in tasks
        if t in chance
    ]
    if rows and all(t in chance for t in tasks):
        rows.append(
            {
                "teacher": "",
                "method": CHANCE,
                "atkd": "",
                "task": AVERAGE,
                "mean": float(np.mean([chance[t] for t in tasks])),
            }
        )
    if not rows:
        return stats
    extra = pd.DataFrame(rows).assign(std=np.nan, n=0)
    return pd.concat([extra, stats], ignore_index=True)


def main_table(
    df: pd.DataFrame, primary: Mapping[str, str], method_order: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean, std and seed count per (teacher, method, atkd) and task, with +ATKD deltas."""
    sc = scores(df, primary)
    g = sc.groupby(["teacher", "method", "atkd", "task"])["value"]
    stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    on = stats[stats["atkd"] == "on"].set_index(["teacher", "method", "task"])
    off = stats[stats["atkd"] == "off"].set_index(["teacher", "method", "task"])
    both = on.index.intersection(off.index)
    delta = (on.loc[both, "mean"] - off.loc[both, "mean"]).rename("delta_atkd").reset_index()
    stats = stats.merge(delta.assign(atkd="on"), on=["teacher", "method", "task", "atkd"], how="left")
    order = {m: i for i, m in enumerate(method_order)}
    stats["_m"] = stats["method"].map(lambda m: order.get(m, len(order)))
    tasks = [t for t in sorted(primary)] + [AVERAGE]
    stats["_t"] = stats["task"].map({t: i for i, t in enumerate(tasks)})
    stats = stats.sort_values(["teacher", "_m", "method", "atkd", "_t"]).drop(columns=["_m", "_t"])
    return stats.reset_index(drop=True)


def _fmt(mean: float, std: float, n: int, digits: int = 3) -> str:
    if n > 1 and not np.isnan(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def _rows(stats: pd.DataFrame, tasks: Sequence[str], pm: str = "±") -> list[tuple[str, str, str, list[str]]]:
    """(teacher, method, atkd, cells) per table row: mean ± std per task, +ATKD delta in parentheses."""
    out = []
    for (teacher, method, atkd), rows in stats.groupby(["teacher", "method", "atkd"], sort=False):
        by_task = rows.set_index("task")
        cells = []
        for t in tasks:
            if t not in by_task.index:
                cells.append("")
                continue
            r = by_task.loc[t]
            cell = _fmt(r["mean"], r["std"], int(r["n"])).replace("±", pm)
            if atkd == "on" and not pd.isna(r.get("delta_atkd")):
                cell += f" ({r['delta_atkd']:+.3f})"
            cells.append(cell)
        out.append((teacher or "-", method, atkd, cells))
    return out


def to_markdown(stats: pd.DataFrame, primary: Mapping[str, str]) -> str:
    """A Markdown table: one row per (teacher, method, atkd), one column per task plus the average."""
    tasks = [t for t in sorted(primary)] + [AVERAGE]
    header = ["teacher", "method", "+ATKD", *[f"{t} ({primary[t]})" if t in primary else t for t in tasks]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for teacher, method, atkd, cells in _rows(stats, tasks):
        lines.append("| " + " | ".join([teacher, method, atkd, *cells]) + " |")
    n_seeds = int(stats["n"].max()) if len(stats) else 0
    lines.append("")
    lines.append(
        f"Mean ± standard deviation over seeds (up to {n_seeds}); in +ATKD rows the parenthesis is the "
        "difference of means to the same method without ATKD."
        + (
            " The `chance` row is the score of guessing (chance.csv)."
            if (stats["method"] == CHANCE).any()
            else ""
        )
    )
    return "\n".join(lines) + "\n"


def to_latex(stats: pd.DataFrame, primary: Mapping[str, str]) -> str:
    """The main table as a LaTeX tabular (booktabs): mean ± std per task, +ATKD delta in parentheses."""
    tasks = [t for t in sorted(primary)] + [AVERAGE]
    lines = ["\\begin{tabular}{lll" + "r" * len(tasks) + "}", "\\toprule"]
    lines.append(" & ".join(["teacher", "method", "+ATKD", *map(latex_escape, tasks)]) + " \\\\")
    lines.append("\\midrule")
    for teacher, method, atkd, cells in _rows(stats, tasks, pm="$\\pm$"):
        lines.append(" & ".join([latex_escape(teacher), latex_escape(method), atkd, *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)
