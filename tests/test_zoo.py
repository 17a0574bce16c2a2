"""The zoo (atkd/zoo.py): its manifest, the hash check, the world check that runs before any job, and the
committed zoo itself (every file's hash, every checkpoint loads in 16-bit). The build end to end:
tests/test_zoo_workflow.py (e2e tier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from atkd import zoo
from atkd.config import ConfigError, check_study
from atkd.data.world import WORLD_VERSION

ROOT = Path(__file__).resolve().parents[1]
WORLD = {
    "seed": 0,
    "n_train": 100,
    "n_valid": 10,
    "n_eval": 10,
    "n_entities": 20,
    "n_pretrain": 50,
    "n_fewshot": 5,
}


def _fake_zoo(path: Path, world: dict = WORLD, version: int = WORLD_VERSION) -> Path:
    """A zoo folder with two small files and a manifest that lists them (no models: the manifest logic)."""
    (path / "student").mkdir(parents=True)
    (path / "student" / "model.safetensors").write_bytes(b"\x00\x01weights")
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "tokenizer.json").write_text('{"vocab": {}}')
    manifest = {
        "format": zoo.FORMAT,
        "world": {"version": version, "params": dict(world), "files": {}},
        "files": zoo.file_table(path),
    }
    (path / zoo.MANIFEST).write_text(json.dumps(manifest))
    return path


def test_file_table_lists_every_file_but_the_manifest(tmp_path):
    table = zoo.file_table(_fake_zoo(tmp_path / "zoo"))
    assert list(table) == ["student/model.safetensors", "tokenizer/tokenizer.json"]
    assert table["student/model.safetensors"]["bytes"] == 9
    # sha256 of b"\x00\x01weights", computed independently
    import hashlib

    assert table["student/model.safetensors"]["sha256"] == hashlib.sha256(b"\x00\x01weights").hexdigest()


def test_verify_accepts_an_intact_zoo(tmp_path):
    manifest = zoo.verify(_fake_zoo(tmp_path / "zoo"))
    assert manifest["world"]["version"] == WORLD_VERSION


@pytest.mark.parametrize(
    "damage, expected",
    [
        (
            lambda z: (z / "student" / "model.safetensors").write_bytes(b"\x00\x02weights"),
            "changed: student/",
        ),
        (lambda z: (z / "tokenizer" / "tokenizer.json").unlink(), "missing: tokenizer/tokenizer.json"),
        (lambda z: (z / "student" / "extra.bin").write_bytes(b"x"), "not in the manifest: student/extra.bin"),
    ],
    ids=["changed", "missing", "extra"],
)
def test_verify_names_what_differs(tmp_path, damage, expected):
    z = _fake_zoo(tmp_path / "zoo")
    damage(z)
    with pytest.raises(zoo.ZooError, match=expected):
        zoo.verify(z)


def test_a_missing_manifest_names_the_rebuild_command(tmp_path):
    with pytest.raises(zoo.ZooError, match="snakemake --cores 2 zoo --configfile config/zoo.yaml"):
        zoo.load_manifest(tmp_path)


def test_check_world_accepts_the_zoos_world(tmp_path):
    zoo.check_world(_fake_zoo(tmp_path / "zoo"), WORLD, WORLD_VERSION)


def test_check_world_names_every_difference_in_one_message(tmp_path):
    z = _fake_zoo(tmp_path / "zoo", version=WORLD_VERSION - 1)
    with pytest.raises(zoo.ZooError) as err:
        zoo.check_world(z, {**WORLD, "n_train": 200, "seed": 3}, WORLD_VERSION)
    message = str(err.value)
    assert "\n" not in message
    assert f"version {WORLD_VERSION} (zoo: {WORLD_VERSION - 1})" in message
    assert "n_train 200 (zoo: 100)" in message and "seed 3 (zoo: 0)" in message
    assert "n_valid" not in message  # only what differs
    assert zoo.REBUILD in message


def _consumer(tmp_path: Path, z: Path, world: dict) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["world"] = world
    cfg["zoo"] = str(z)
    return cfg


def test_config_check_refuses_a_config_whose_world_is_not_the_zoos(tmp_path):
    z = _fake_zoo(tmp_path / "zoo")
    check_study(_consumer(tmp_path, z, WORLD))  # the zoo's own world passes
    with pytest.raises(ConfigError, match=r"^zoo: world: .*n_entities 30 \(zoo: 20\).*config/zoo.yaml"):
        check_study(_consumer(tmp_path, z, {**WORLD, "n_entities": 30}))


def test_config_check_refuses_an_altered_zoo(tmp_path):
    z = _fake_zoo(tmp_path / "zoo")
    (z / "student" / "model.safetensors").write_bytes(b"other")
    with pytest.raises(ConfigError, match="^zoo: .*changed: student/model.safetensors"):
        check_study(_consumer(tmp_path, z, WORLD))


def test_a_zoo_build_trains_every_model_here():
    cfg = yaml.safe_load((ROOT / "config" / "zoo.yaml").read_text())
    check_study(cfg)
    cfg["teachers"]["neox-64x2"] = {"model": "EleutherAI/pythia-160m", "finetune": False}
    with pytest.raises(ConfigError, match=r"^teachers.neox-64x2: a zoo is built from `arch` models"):
        check_study(cfg)


def test_config_check_refuses_a_zoo_with_real_data(tmp_path):
    cfg = _consumer(tmp_path, _fake_zoo(tmp_path / "zoo"), WORLD)
    del cfg["world"]
    cfg["data"] = {"source": "x.jsonl"}
    cfg["evaluation"]["suites"] = []
    cfg["evaluation"]["instruct_sets"] = {"dolly": str(ROOT / "data" / "instruct-eval" / "dolly.jsonl")}
    with pytest.raises(ConfigError, match="^zoo: a zoo is built on the synthetic world"):
        check_study(cfg)


def test_a_teacher_used_as_it_is_brings_its_early_stopped_checkpoint(tmp_path):
    """kd_early with a `finetune: false` teacher reads `<model>@epoch-E` (the zoo ships them): the config
    check wants it there, and the teacher's export job copies it to where kd_early reads."""
    from atkd.study import Study

    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    model = tmp_path / "teachers" / "neox-64x2"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    cfg["teachers"]["neox-64x2"] = {"model": str(model), "finetune": False}
    with pytest.raises(ConfigError, match=r"no early checkpoint .*neox-64x2@epoch-0.1 comes with it"):
        check_study(cfg)
    (tmp_path / "teachers" / "neox-64x2@epoch-0.1").mkdir()
    check_study(cfg)
    command = Study(cfg).teacher_command("neox-64x2")
    assert f"--model {model} --early-epochs 0.1 --out" in command


# ------------------------------------------------------------------------------ the committed zoo

COMMITTED = ROOT / "zoo"
needs_zoo = pytest.mark.skipif(not (COMMITTED / zoo.MANIFEST).is_file(), reason="no zoo committed")


@needs_zoo
def test_committed_zoo_matches_its_manifest():
    manifest = zoo.verify(COMMITTED)
    assert manifest["dtype"] == "float16" and manifest["bytes"] <= 80e6


@needs_zoo
def test_committed_zoo_is_built_on_the_current_world():
    manifest = zoo.load_manifest(COMMITTED)
    cfg = yaml.safe_load((ROOT / "config" / "zoo.yaml").read_text())
    zoo.check_world(COMMITTED, cfg["world"], WORLD_VERSION)
    assert manifest["config"]["world"] == cfg["world"]


@needs_zoo
@pytest.mark.parametrize(
    "name", sorted(zoo.load_manifest(COMMITTED)["models"]) if (COMMITTED / zoo.MANIFEST).is_file() else []
)
def test_committed_checkpoint_loads_in_16_bit(name):
    from safetensors import safe_open

    from atkd.models.ladder import load_model, load_tokenizer

    path = COMMITTED / name
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}
    model, tok = load_model(path), load_tokenizer(path)
    assert (
        sum(p.numel() for p in model.parameters()) == zoo.load_manifest(COMMITTED)["models"][name]["params"]
    )
    assert model.config.vocab_size == len(tok) == zoo.load_manifest(COMMITTED)["tokenizer"]["vocab_size"]


def test_a_world_field_added_later_compares_at_its_default(tmp_path):
    """A zoo built before `n_pretrain_qa` existed (no such field) is the world with 0 Q&A documents."""
    z = _fake_zoo(tmp_path / "zoo")  # WORLD has no n_pretrain_qa
    zoo.check_world(z, {**WORLD, "n_pretrain_qa": 0}, WORLD_VERSION)
    with pytest.raises(zoo.ZooError, match=r"n_pretrain_qa 15000 \(zoo: 0\)"):
        zoo.check_world(z, {**WORLD, "n_pretrain_qa": 15000}, WORLD_VERSION)
    with pytest.raises(zoo.ZooError, match=r"pretrain_line_breaks 0.5 \(zoo: 0\)"):  # a field added later
        zoo.check_world(z, {**WORLD, "pretrain_line_breaks": 0.5}, WORLD_VERSION)
    zoo.check_world(z, {**WORLD, "pretrain_line_breaks": 0.0}, WORLD_VERSION)
    with pytest.raises(zoo.ZooError, match=r"reference_noise 0.3 \(zoo: 0\)"):
        zoo.check_world(z, {**WORLD, "reference_noise": 0.3}, WORLD_VERSION)


def test_built_on_names_the_machine_that_decides_the_weights():
    """Rebuilt weights can differ between machines: the manifest records the CPU, architecture, versions."""
    import platform

    import torch

    on = zoo.built_on()
    assert on["torch"] == torch.__version__ and on["python"] == platform.python_version()
    assert on["machine"] == platform.machine() and on["cpu"] not in ("", None)
