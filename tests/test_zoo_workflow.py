"""The zoo end to end (e2e tier): a short zoo config (the smoke world and models) builds a zoo with the
README's command, the zoo verifies, a study reads it as the embedded configs do and trains no teacher, and
a study with another world fails before any job in one message."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch
import yaml
from helpers.workflow import ROOT, smoke_config, snakemake
from safetensors.torch import load_file

from atkd import zoo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A zoo built from the smoke config by `snakemake zoo`; (its folder, the build's config)."""
    tmp = tmp_path_factory.mktemp("zoo")
    cfg_path = smoke_config(tmp, zoo_build={"out": str(tmp / "zoo")})
    out = snakemake("zoo", "--cores", "2", "--configfile", str(cfg_path), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return tmp / "zoo", yaml.safe_load(cfg_path.read_text())


def test_the_build_writes_a_verified_16_bit_zoo_with_its_costs(built):
    path, cfg = built
    manifest = zoo.verify(path)
    teachers = list(cfg["teachers"])
    # the smoke config's kd_early (teacher_epochs 0.1 at neox-64x2) makes the zoo ship that checkpoint too
    assert set(manifest["models"]) == {
        "student",
        *(f"teachers/{t}" for t in teachers),
        "teachers/neox-64x2@epoch-0.1",
    }
    assert manifest["dtype"] == "float16" and manifest["world"]["params"] == {
        **zoo.OPTIONAL_WORLD_FIELDS,
        **cfg["world"],
    }
    world = Path(cfg["results"]) / "world"
    # a world without line breaks has the .txt pair of pre-training files (with them: the .jsonl pair)
    txt = ("train.jsonl", "valid.jsonl", "pretrain.txt", "pretrain_valid.txt", "kb.json")
    assert manifest["world"]["files"] == {f: zoo.sha256(world / f) for f in txt}
    for name in teachers:
        stages = manifest["models"][f"teachers/{name}"]["stages"]
        assert list(stages) == ["pretrain", "instruct"]
        assert (
            stages["pretrain"]["train_data"] == "pretrain.txt"
            and stages["instruct"]["train_data"] == "train.jsonl"
        )
        for stage in stages.values():
            assert stage["cpu_s"] > 0 and stage["valid_loss"] > 0
        # the 16-bit weights as shipped validate as the 32-bit ones did
        assert stages["instruct"]["valid_loss_16bit"] == pytest.approx(
            stages["instruct"]["valid_loss"], abs=0.01
        )
    assert manifest["models"]["student"]["stages"]["pretrain"]["train_data"] == "pretrain.txt"
    # weights need not be byte-reproducible across machines: the manifest says which one built them
    assert manifest["built_on"]["torch"] == torch.__version__ and manifest["built_on"]["cpu"]
    assert manifest["cpu_s"] >= sum(
        s["cpu_s"] for m in manifest["models"].values() for s in m["stages"].values()
    )
    for f in path.rglob("*"):  # readable by colleagues under the usual umask
        assert stat.S_IMODE(f.stat().st_mode) == (0o755 if f.is_dir() else 0o644), f


def _reader(tmp, path, world):
    """The smoke study reading the zoo at `path`, as config/default.yaml reads zoo/ (sft and kd only)."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    teachers = list(cfg["teachers"])
    cfg.update(
        results=str(tmp / "results"),
        figures=str(tmp / "figures"),
        world=world,
        zoo=str(path),
        tokenizer={"model": str(path / "tokenizer")},
        student={**cfg["student"], "model": str(path / "student"), "pretrained": True},
        teachers={t: {"model": str(path / "teachers" / t), "finetune": False} for t in teachers},
        methods={k: v for k, v in cfg["methods"].items() if k in ("sft", "kd", "kd_early")},
    )
    cfg["student"].pop("arch")
    for key in ("analyses", "budget_sweep", "teacher_pretrain"):
        cfg.pop(key, None)
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return config


def test_a_study_reads_the_zoo_and_trains_no_teacher(built, tmp_path):
    path, cfg = built
    config = _reader(tmp_path, path, cfg["world"])
    out = snakemake("all", "--cores", "2", "--configfile", str(config), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "rule teacher_base" not in log and "localrule teacher_base" not in log
    for t in cfg["teachers"]:  # the teacher job only exported the zoo's checkpoint
        summary = json.loads(
            (tmp_path / "results" / "models" / "teachers" / t / "train_summary.json").read_text()
        )
        assert summary["trained"] is False and summary["source"] == str(path / "teachers" / t)
    student = json.loads(
        (tmp_path / "results" / "models" / "student-base" / "train_summary.json").read_text()
    )
    assert student["trained"] is False
    assert (tmp_path / "results" / "REPORT.md").is_file()
    # the early-stopped teacher is the zoo's `@epoch-0.1` checkpoint, exported where kd_early reads it
    early = tmp_path / "results" / "models" / "teachers" / "neox-64x2" / "hf" / "epoch-0.1"
    shipped = load_file(str(path / "teachers" / "neox-64x2@epoch-0.1" / "model.safetensors"))
    exported = load_file(str(early / "model.safetensors"))
    assert shipped.keys() == exported.keys()
    assert all(torch.equal(shipped[k].float(), exported[k]) for k in shipped)
    run = tmp_path / "results" / "runs" / "kd_early" / "neox-64x2" / "off" / "s1" / "train_summary.json"
    assert json.loads(run.read_text())["teacher"] == str(early)


def test_a_study_with_another_world_fails_before_any_job(built, tmp_path):
    path, cfg = built
    config = _reader(tmp_path, path, {**cfg["world"], "n_train": cfg["world"]["n_train"] + 1})
    out = snakemake("all", "--cores", "2", "--configfile", str(config), timeout=300)
    assert out.returncode != 0
    log = out.stdout + out.stderr
    assert f"n_train {cfg['world']['n_train'] + 1} (zoo: {cfg['world']['n_train']})" in log
    assert zoo.REBUILD in log
    assert not (tmp_path / "results").exists()  # no job ran
    lines = [ln for ln in log.splitlines() if "zoo" in ln]
    assert len(lines) <= 3, lines
