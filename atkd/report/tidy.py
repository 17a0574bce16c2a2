"""Tidy files the report needs beyond metrics.csv, collected from the runs' own outputs (`atkd collect`):

    doc_scores.csv   every evaluation's per-document scores (`atkd evaluate` writes eval/doc_scores.csv):
                     run columns, task, doc, metric, value; the bootstrap of atkd.report.stats pairs two
                     students' rows by (task, doc)
    runs.csv         one row per trained student: run, method, teacher, atkd, seed, the key of its
                     training objective and its resolved loss

The objective key is a stable hash of what determines a student's weights, read from its
`train_summary.json` (atkd.train.loop writes the full training config there): the config less the
fields that do not change the weights (`weight_affecting`), less the seed and the output paths, with
the loss and the sampling spec resolved (defaults filled in, so `fkl` and `{name: fkl}` agree) and the
teacher replaced by the model it resolves to (a live teacher and a cache of the same teacher agree).
Two students share an objective exactly when their keys are equal: the report never infers it from
tied scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from atkd.fsutil import atomic_write_text
from atkd.report.tables import DOC_COLUMNS, RUN_COLUMNS

# Config fields that name files: compared as normalised paths.
PATH_FIELDS = ("model", "tokenizer", "train_data", "teacher_data", "teacher")
# Fields that do not describe the objective: the seed (a key covers every seed of a configuration) and
# where the teacher's logits come from (a cache of the teacher gives the logits the teacher would).
NOT_OBJECTIVE = ("seed", "teacher", "teacher_cache")


def _path(value: Any) -> Any:
    return os.path.normpath(value) if isinstance(value, str) and value else value


def objective_fields(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The weight-affecting training configuration of a `train_summary.json`, seed- and path-independent
    as described in the module docstring (the input of `objective_key`)."""
    from atkd.losses import parse_spec
    from atkd.plugins import load_plugins
    from atkd.train.loop import _LEGACY_DEFAULTS, TrainConfig, weight_affecting
    from atkd.train.sampling import parse_sampling

    if "config" not in summary:
        raise ValueError("a train_summary.json without its training config ('config')")
    # older summaries lack newer fields: they had the value of that time (the loop's legacy defaults)
    config = {**TrainConfig.defaults(), **_LEGACY_DEFAULTS, **summary["config"]}
    fields = {k: v for k, v in weight_affecting(config).items() if k not in NOT_OBJECTIVE}
    load_plugins(config.get("plugins") or [])  # a plugin loss must be registered to be resolved
    fields["loss"] = _jsonable(dataclasses.asdict(parse_spec(config["loss"])))
    fields["sampling"] = parse_sampling(config.get("sampling")).to_dict()
    fields["teacher"] = summary.get("teacher")  # the resolved teacher model (live or the cache's)
    for key in PATH_FIELDS:
        fields[key] = _path(fields.get(key))
    return fields


def _jsonable(value: Any) -> Any:
    """A canonical JSON form: mappings with sorted string keys, tuples as lists, numbers as floats (so
    that `lam: 1` and `lam: 1.0` agree)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def objective_key(summary: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key of a run's objective (sha256 of the canonical JSON of
    `objective_fields`)."""
    text = json.dumps(
        _jsonable(objective_fields(summary)), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_summaries(items: Sequence[str]) -> dict[str, Path]:
    """`RUN=PATH` items (a run id of metrics.csv and its train_summary.json) as a mapping."""
    out: dict[str, Path] = {}
    for item in items:
        run, sep, path = item.partition("=")
        if not sep or not run or not path:
            raise ValueError(f"expected RUN=PATH (a run id and its train_summary.json), got {item!r}")
        if run in out:
            raise ValueError(f"run {run!r} given twice")
        out[run] = Path(path)
    return out


def collect_runs(summaries: Mapping[str, Path], metrics: Path, out: Path) -> pd.DataFrame:
    """runs.csv from each run's train_summary.json, with the run columns (method, teacher, atkd, seed)
    of its rows in the collected `metrics` table, its loss and its training budget in epochs (empty where
    the summary has none, e.g. a user's rule); a run id metrics.csv lacks is an error."""
    table = pd.read_csv(metrics, dtype=str, keep_default_na=False)
    missing = [c for c in RUN_COLUMNS if c != "objective" and c not in table.columns]
    if missing:
        raise ValueError(f"{metrics}: missing column(s) {', '.join(missing)}")
    meta = table.drop_duplicates("run").set_index("run")
    rows = []
    for run, path in summaries.items():
        if run not in meta.index:
            raise ValueError(f"{path}: run {run!r} has no rows in {metrics}")
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
        fields = objective_fields(summary)
        row = {c: meta.at[run, c] for c in ("method", "teacher", "atkd", "seed")}
        epochs = summary.get("epochs", (summary.get("config") or {}).get("epochs"))
        rows.append(
            {
                "run": run,
                **row,
                "objective": objective_key(summary),
                "loss": json.dumps(fields["loss"]),
                "epochs": "" if epochs is None else f"{float(epochs):g}",
            }
        )
    df = pd.DataFrame(rows, columns=[*RUN_COLUMNS, "loss", "epochs"])
    atomic_write_text(out, df.to_csv(index=False))
    return df


def collect_doc_scores(paths: Sequence[Path], out: Path) -> pd.DataFrame:
    """Concatenate per-evaluation doc_scores.csv files (values kept as written), checking columns and
    duplicate (run, task, doc, metric) rows."""
    frames = []
    for path in paths:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in DOC_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DOC_COLUMNS)
    dup = rows.duplicated(["run", "task", "doc", "metric"])
    if dup.any():
        raise ValueError(
            f"duplicate per-document rows for {rows[dup].iloc[0][['run', 'task', 'doc', 'metric']].to_dict()}"
        )
    atomic_write_text(out, rows.to_csv(index=False))
    return rows
