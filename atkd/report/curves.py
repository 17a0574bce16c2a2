"""Training curves as one tidy table, `curves.csv`, from every run's `metrics.jsonl`.

    atkd curves --out results/curves.csv results/runs/kd/neox-64x2/on/s1 ... \
        --teachers results/models/teachers/neox-64x2

A distillation run's directory is `<runs>/<method>/<teacher>/<atkd>/s<seed>` (the workflow's layout; the
teacher `none` is a run without one); a teacher's is `<teachers>/<name>` (method `teacher`, its seed from
`train_config.json`). One row per run and logged step: run, method, teacher, atkd, seed, step, epoch,
train_loss (the objective, mean over the logging window), train_ce (KD runs: the student's CE on the
targets), valid_loss (mean CE per response token on the validation records; empty between validations).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from atkd.fsutil import atomic_write_text

CURVE_COLUMNS = [
    "run",
    "method",
    "teacher",
    "atkd",
    "seed",
    "step",
    "epoch",
    "train_loss",
    "train_ce",
    "valid_loss",
]
NO_TEACHER = "none"  # the teacher part of a run directory without a teacher (SFT)


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.jsonl (is the run complete?)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{i}: not a JSON line") from None
    return out


def run_curve(path: Path) -> pd.DataFrame:
    """step, epoch, train_loss, train_ce, valid_loss of one `metrics.jsonl`, one row per logged step.

    Validation lines written before they carried an epoch get it from the steps-per-epoch of the
    training lines."""
    rows: dict[int, dict] = {}
    per_step = math.nan  # epochs per optimizer step
    for rec in _records(path):
        step = int(rec["step"])
        row = rows.setdefault(step, {"step": step})
        if "epoch" in rec:
            row["epoch"] = rec["epoch"]
            if step:
                per_step = rec["epoch"] / step
        if "loss" in rec:
            row["train_loss"] = rec["loss"]
            if "ce" in rec:
                row["train_ce"] = rec["ce"]
        if "valid_loss" in rec:
            row["valid_loss"] = rec["valid_loss"]
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: r["step"]))
    for col in ("epoch", "train_loss", "train_ce", "valid_loss"):
        if col not in df:
            df[col] = math.nan
    missing = df["epoch"].isna()
    df.loc[missing, "epoch"] = (df.loc[missing, "step"] * per_step).round(4)
    return df


def _run_meta(run_dir: Path) -> dict:
    parts = run_dir.parts[-4:]
    if len(parts) < 4 or parts[2] not in ("on", "off") or not parts[3][1:].isdigit() or parts[3][0] != "s":
        raise ValueError(f"{run_dir}: expected a run directory <method>/<teacher>/<on|off>/s<seed>")
    method, teacher, atkd, seed = parts
    return {
        "run": "/".join(parts),
        "method": method,
        "teacher": "" if teacher == NO_TEACHER else teacher,
        "atkd": atkd,
        "seed": int(seed[1:]),
    }


def _teacher_meta(teacher_dir: Path) -> dict:
    config = teacher_dir / "train_config.json"
    seed = json.loads(config.read_text(encoding="utf-8"))["seed"] if config.is_file() else 0
    name = teacher_dir.name
    return {"run": f"teacher/{name}", "method": "teacher", "teacher": name, "atkd": "off", "seed": seed}


def curves_table(runs: list[Path], teachers: list[Path] = (), optional: list[Path] = ()) -> pd.DataFrame:
    """The tidy curves of distillation run directories and teacher directories (CURVE_COLUMNS).
    `optional` runs (produced by a user's rule, whose metrics.jsonl the contract does not require) are
    left out when they have none."""
    runs = list(runs) + [r for r in optional if (Path(r) / "metrics.jsonl").is_file()]
    frames = []
    for meta, directory in [(_run_meta(Path(r)), r) for r in runs] + [
        (_teacher_meta(Path(t)), t) for t in teachers
    ]:
        frames.append(run_curve(Path(directory) / "metrics.jsonl").assign(**meta))
    if not frames:
        raise ValueError("curves needs at least one run directory")
    df = pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]
    dup = df.duplicated(["run", "step"])
    if dup.any():
        raise ValueError(f"run {df.loc[dup, 'run'].iloc[0]!r} is given twice")
    return df


def write_curves(
    runs: list[Path], out: Path, teachers: list[Path] = (), optional: list[Path] = ()
) -> pd.DataFrame:
    """Write `curves_table(runs, teachers, optional)` to `out` (atomically); returns it."""
    df = curves_table(runs, teachers, optional)
    atomic_write_text(out, df.to_csv(index=False))
    return df


def load_curves(path: Path) -> pd.DataFrame:
    """Read curves.csv (the empty teacher of runs without one stays "")."""
    df = pd.read_csv(path, dtype={"run": str, "method": str, "teacher": str, "atkd": str})
    missing = [c for c in CURVE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    df["teacher"] = df["teacher"].fillna("")
    return df
