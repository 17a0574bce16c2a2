"""Teachers pre-trained on the world's plain text before instruction tuning (`teacher_pretrain:`): planned
in the DAG, instruction tuning reads the pre-trained base, and a misplaced `pretrain:` fails up front."""

from __future__ import annotations

import re

import yaml
from helpers.workflow import job_counts, smoke_config, snakemake


def _dry(tmp_path, **changes):
    out = snakemake(
        "-n", "-p", "all", "--configfile", str(smoke_config(tmp_path, **changes)), "--cores", "2", timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _without_teacher_pretrain(path):
    cfg = yaml.safe_load(path.read_text())
    del cfg["teacher_pretrain"]
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_teachers_are_pretrained_then_instruction_tuned(tmp_path):
    out = _dry(tmp_path)
    text = out.stdout + out.stderr
    assert job_counts(out)["teacher_base"] == job_counts(out)["teacher"] == 2
    for teacher in ("neox-48x2", "neox-64x2"):
        base = re.search(rf"atkd train .*output_dir=\S*teacher-bases/{teacher}\S*'.*", text)
        assert base and "pretrain.txt" in base.group(0) and "pretrain_valid.txt" in base.group(0)
        tuned = re.search(rf"atkd train .*output_dir=\S*teachers/{teacher}\S*'.*", text)
        assert tuned and f"teacher-bases/{teacher}/final" in tuned.group(0) and "arch=" not in tuned.group(0)


def test_without_teacher_pretrain_teachers_start_from_random(tmp_path):
    cfg = _without_teacher_pretrain(smoke_config(tmp_path))
    out = snakemake("-n", "all", "--configfile", str(cfg), "--cores", "2", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "teacher_base" not in job_counts(out)


def test_a_per_teacher_pretrain_override_needs_an_arch_teacher_and_the_section(tmp_path):
    teachers = {
        "neox-48x2": {"arch": "neox-48x2", "pretrain": {"max_steps": 3}},
        "neox-64x2": {"arch": "neox-64x2"},
    }
    out = _dry(tmp_path, teachers=teachers)
    assert "max_steps=3" in out.stdout + out.stderr
    cfg = _without_teacher_pretrain(smoke_config(tmp_path, teachers=teachers))
    bad = snakemake("-n", "all", "--configfile", str(cfg), "--cores", "2", timeout=300)
    assert bad.returncode != 0 and "teachers.neox-48x2.pretrain" in bad.stderr + bad.stdout
