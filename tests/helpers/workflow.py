"""Running the Snakemake workflow from the tests: the smoke config in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smoke_config(tmp_path: Path, **changes) -> Path:
    """config/smoke.yaml with results and figures under `tmp_path` and top-level `changes`; its path."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["figures"] = str(tmp_path / "figures")
    cfg.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(*args: str, timeout: int = 60, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m snakemake ARGS` in the repository (or another directory holding a Snakefile), offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(  # under the usual umask 022, whatever the test runner's
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, umask=0o022
    )


def plan(*args: str, timeout: int = 60, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """A dry run of every job the workflow would run from nothing (`-n --forceall`), whatever results the
    checkout already holds: a user who ran the smoke or default workflow in the repository first still
    gets the planning tests' answers."""
    return snakemake("-n", "--forceall", *args, timeout=timeout, cwd=cwd)


def job_counts(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> planned job count, from the job-stats table of a (dry) run's output."""
    counts = {}
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def subset_config(cfg: dict, methods: list[str]) -> dict:
    """The same study restricted to `methods` (and without the analyses, budget sweep and comparisons that
    name the others): the runs it keeps are configured exactly as in `cfg`, so they score exactly the same."""
    out = {k: v for k, v in cfg.items() if k not in ("analyses", "budget_sweep", "comparisons")}
    out["methods"] = {name: spec for name, spec in cfg["methods"].items() if name in methods}
    missing = set(methods) - set(out["methods"])
    if missing:
        raise KeyError(f"not methods of the config: {sorted(missing)}")
    return out


def assert_same_scores(full: Path, subset: Path, methods: list[str]) -> None:
    """Every row of the `subset` run's metrics.csv equals (to the bit) the row of the `full` run, and the
    subset scored every run of the full one whose method it kept (plus the teachers)."""
    import pandas as pd

    a = pd.read_csv(full, keep_default_na=False)
    b = pd.read_csv(subset, keep_default_na=False)
    key = ["run", "task", "metric"] + [c for c in ("sample_seed",) if c in a.columns]
    kept = a[a["method"].isin(methods) | (a["method"] == "teacher")] if "method" in a.columns else a
    both = kept.merge(b, on=key, suffixes=("_full", "_subset"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all(), both[both["_merge"] != "both"][key].head()
    assert len(b) == len(both) and len(b) > 0
    pd.testing.assert_series_equal(
        both["value_full"], both["value_subset"], check_names=False, rtol=0, atol=0
    )
