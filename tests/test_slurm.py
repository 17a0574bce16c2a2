"""The smoke workflow through the SLURM profile on a real one-node SLURM cluster on localhost.

The cluster is started with the project's shared CI script (`../shared/slurm/start-slurm.sh`: Debian's
SLURM packages, munge, slurmctld and slurmd) and stopped afterwards. The profile itself does not depend on
that script. The test is skipped, with the reason, only where SLURM cannot be installed or started (not
root, no apt-get, no script). The SLURM run must give the same tidy results as the local run of the same
config on this machine (every job is deterministic).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.workflow import assert_same_scores, subset_config

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [ROOT.parent / "shared" / "slurm", Path("/work/shared/slurm")]
if os.environ.get("ATKD_SLURM_SCRIPTS"):
    CANDIDATES.insert(0, Path(os.environ["ATKD_SLURM_SCRIPTS"]))

pytestmark = pytest.mark.e2e


def _scripts() -> Path | None:
    return next((d for d in CANDIDATES if (d / "start-slurm.sh").is_file()), None)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    scripts = _scripts()
    if scripts is None:
        pytest.skip(f"no SLURM start script in {', '.join(map(str, CANDIDATES))} (set ATKD_SLURM_SCRIPTS)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("SLURM cannot be installed here: Debian's slurm packages need root and apt-get")
    packages = ["slurmctld", "slurmd", "slurm-client", "munge"]
    if subprocess.run(["dpkg", "-s", *packages], capture_output=True).returncode != 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = "apt-get update -q && apt-get install -y -q --no-install-recommends " + " ".join(packages)
        got = subprocess.run(["bash", "-c", install], env=env, capture_output=True, text=True, timeout=900)
        if got.returncode != 0:
            pytest.skip(f"SLURM cannot be installed here (apt-get failed):\n{got.stderr[-2000:]}")
    piddir = tmp_path_factory.mktemp("slurm-pids")
    env = {**os.environ, "PIDDIR": str(piddir)}
    start = ["bash", str(scripts / "start-slurm.sh")]
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=600)
    if started.returncode != 0:  # installed but not running: a failure, not a skip
        subprocess.run(["bash", str(scripts / "stop-slurm.sh")], env=env, capture_output=True, timeout=120)
        log = started.stdout[-2000:] + started.stderr[-2000:]
        pytest.fail(f"SLURM is installed but did not start:\n{log}")
    # slurmctld restores its saved state on start: jobs of an earlier, interrupted run (a killed test, a
    # stopped session) come back as RUNNING or PENDING and hold this one node's CPUs until their time limit.
    # This cluster exists only for the test, so it starts empty and is emptied again before it stops.
    _cancel_all_jobs()
    yield
    _cancel_all_jobs()
    subprocess.run(["bash", str(scripts / "stop-slurm.sh")], env=env, capture_output=True, timeout=120)


def _cancel_all_jobs() -> None:
    """Cancel every job the test's one-node cluster knows of and wait until its queue is empty."""
    for attempt in range(60):
        listed = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60)
        jobs = listed.stdout.split()
        if not jobs:
            return
        if attempt == 0:
            subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)
        time.sleep(1)
    pytest.fail(f"jobs left from an earlier run could not be cancelled: {jobs}")


def test_smoke_workflow_through_the_slurm_profile(slurm_cluster, smoke_run, tmp_path):
    local_dir, local_cfg, local_out, project = smoke_run
    assert local_out.returncode == 0, "the local smoke run failed (see test_smoke_workflow_end_to_end)"
    # the same study, written elsewhere, with the methods that need every kind of job (teacher answers,
    # an assistant, a live teacher, a cache) and a third of the smoke run's students
    methods = ["sft", "kd", "seqkd", "kd_ta", "imitkd"]
    cfg = subset_config(yaml.safe_load(local_cfg.read_text()), methods)
    cfg["results"] = str(tmp_path / "results")
    cfg["figures"] = str(tmp_path / "figures")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(project / "profiles" / "slurm"),
        "all",
        "--configfile",
        str(config),
        "--jobs",
        "2",
        "--max-threads",
        "2",
        # this one-node cluster has no accounting database (see the profile) and short jobs: poll fast
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "2",
        # every cluster job pays a Snakemake start-up; on 2 cores the smoke's ~60 tiny jobs would take 40
        # minutes one by one, so each run's distill -> evaluate chain, 6 runs at a time, is one job here
        "--groups",
        "distill=runs",
        "evaluate=runs",
        "--group-components",
        "runs=6",
        # a group job asks for the sum of its members' CPUs unless capped: 6 CPUs would never start on
        # this 2-CPU node (PENDING, reason PartitionConfig). The SLURM plugin runs a group's members one at a
        # time (its in-job Snakemake gets `--jobs 1`), so a group needs one member's CPU: with the cap at 1,
        # two group jobs share the node instead of one holding both CPUs and using one
        "--cores",
        "1",
    ]
    out = subprocess.run(
        ["timeout", "-k", "30", "2400", *cmd], cwd=project, capture_output=True, text=True, timeout=2500
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-6000:]
    assert "slurm" in (out.stdout + out.stderr).lower()
    assert_same_scores(local_dir / "results" / "metrics.csv", tmp_path / "results" / "metrics.csv", methods)
    assert (tmp_path / "results" / "REPORT.md").is_file()
