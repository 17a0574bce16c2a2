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


def job_counts(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> planned job count, from the job-stats table of a (dry) run's output."""
    counts = {}
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts
