"""The zoo: checkpoints built once (config/zoo.yaml), committed in 16-bit floats, and read by the study.

The study starts from pre-trained checkpoints that it downloads (Pythia, OPT); the embedded configs start
from the zoo the same way, instead of paying for pre-training and instruction tuning in every run. A zoo
folder holds ordinary Hugging Face checkpoints and `MANIFEST.json`:

    tokenizer/                     the world's BPE tokenizer
    student/                       the student base (pre-trained on the world's plain text)
    teachers/<name>/               each teacher, pre-trained then instruction-tuned
    teachers/<name>@epoch-<E>/     a teacher after E epochs of instruction tuning (the early-stopped one)
    MANIFEST.json                  sha256 and size of every file, the world it was built on (version,
                                   fields and file hashes), the build config, and per model and stage the
                                   CPU time and the final validation loss (32-bit while training, and of
                                   the 16-bit weights as shipped), and the machine it was built on

`check_world` is what makes a zoo safe to read: a config whose world differs from the zoo's (another
generator version or another field) would distil from teachers tuned on other data, so it fails before
any job, naming the command that rebuilds the zoo. `verify` checks every file against the manifest.

A rebuild reproduces the world and the tokenizer byte for byte; on another machine the weights differed
(docs/results/zoo-rebuild-2026-12-07; CPU-specific float kernels are the likely cause): hence `built_on`,
and hence the zoo is shipped, not rebuilt by each user.

This module imports no torch (the config check runs it on every workflow parse); `export` does, lazily.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atkd.fsutil import atomic_dir
from atkd.fsutil import sha256_file as sha256

MANIFEST = "MANIFEST.json"
FORMAT = 1  # the manifest's layout; bumped when a key that readers use changes
REBUILD = "snakemake --cores 2 zoo --configfile config/zoo.yaml"
WORLD_FIELDS = (
    "seed",
    "n_train",
    "n_valid",
    "n_eval",
    "n_entities",
    "n_pretrain",
    "n_fewshot",
    "n_pretrain_qa",
    "pretrain_line_breaks",
    "reference_noise",
)
# The value a world without the field has (a zoo manifest written before the field existed lacks it).
OPTIONAL_WORLD_FIELDS = {"n_pretrain_qa": 0, "pretrain_line_breaks": 0, "reference_noise": 0}
# The world's files a zoo records the hashes of (what its models were trained on); a world has the .txt
# pair of pre-training files or, with pretrain_line_breaks, the .jsonl pair, and with reference_noise
# the true answers (train_clean.jsonl).
WORLD_FILES = ("train.jsonl", "valid.jsonl", "pretrain.txt", "pretrain_valid.txt", "kb.json")
WORLD_FILES += ("pretrain.jsonl", "pretrain_valid.jsonl", "train_clean.jsonl")


class ZooError(ValueError):
    """A zoo that is missing, altered, or built for another world; the message says how to rebuild it."""


def file_table(root: str | Path) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} of every file under `root` but the manifest, sorted by path."""
    root = Path(root)
    table = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST:
            table[rel] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    return table


def load_manifest(zoo: str | Path) -> dict[str, Any]:
    """The zoo's manifest; a missing or unreadable one is a ZooError naming the rebuild command."""
    path = Path(zoo) / MANIFEST
    if not path.is_file():
        raise ZooError(f"zoo {str(zoo)!r}: no {MANIFEST}; build the zoo first: {REBUILD}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}: not valid JSON ({err}); rebuild the zoo: {REBUILD}") from None
    if manifest.get("format") != FORMAT:
        raise ZooError(
            f"{path}: manifest format {manifest.get('format')!r}, expected {FORMAT}; rebuild: {REBUILD}"
        )
    return manifest


def verify(zoo: str | Path) -> dict[str, Any]:
    """Check every file of the zoo against its manifest (present, same size and sha256, none extra);
    return the manifest. Raises ZooError listing what differs."""
    manifest = load_manifest(zoo)
    listed, found = manifest["files"], file_table(zoo)
    problems = [f"missing: {p}" for p in listed if p not in found]
    problems += [f"not in the manifest: {p}" for p in found if p not in listed]
    problems += [
        f"changed: {p} (sha256 {found[p]['sha256'][:12]}..., manifest {listed[p]['sha256'][:12]}...)"
        for p in listed
        if p in found and found[p] != listed[p]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ZooError(f"zoo {str(zoo)!r} does not match its {MANIFEST}: {shown}")
    return manifest


def check_world(zoo: str | Path, world: Mapping[str, Any], version: int) -> None:
    """Refuse a config whose world is not the one the zoo was built on (generator version or any field),
    in one message that names each difference and the rebuild command."""
    built = load_manifest(zoo)["world"]
    diffs = []
    if built["version"] != version:
        diffs.append(f"version {version} (zoo: {built['version']})")
    for key in WORLD_FIELDS:
        ours, theirs = (w.get(key, OPTIONAL_WORLD_FIELDS.get(key)) for w in (world, built["params"]))
        if ours != theirs:
            diffs.append(f"{key} {ours!r} (zoo: {theirs!r})")
    if diffs:
        raise ZooError(
            f"world: this config's world is not the one zoo {str(zoo)!r} was built on: {', '.join(diffs)}."
            f" Use the zoo's world, or rebuild the zoo for this one: {REBUILD} (after setting its world)"
        )


def _bench(path: Path) -> dict[str, float]:
    """Wall and CPU seconds of one Snakemake benchmark file (empty when it is absent)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    return {"wall_s": round(float(row["s"]), 1), "cpu_s": round(float(row["cpu_time"]), 1)}


def _stage(summary_path: Path, bench_path: Path) -> dict[str, Any]:
    """What a manifest says of one training stage: its budget, final losses and cost."""
    s = json.loads(summary_path.read_text())
    cfg = s["config"]
    return {
        "epochs": s["epochs"],
        "steps": s["steps"],
        "tokens": s["tokens"],
        "train_data": os.path.basename(cfg["train_data"]),
        "train_loss": s["train_loss"],
        "valid_loss": s["valid_loss"],
        "valid_data": os.path.basename(cfg["valid_data"]) if cfg.get("valid_data") else None,
        "valid_limit": cfg.get("valid_limit"),
        **_bench(bench_path),
    }


def built_on() -> dict[str, str]:
    """The build machine as far as it decides the weights: CPU model, architecture, Python and torch."""
    import platform

    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _valid_loss_16bit(
    model_dir: Path, stage: Mapping[str, Any], world: Path, max_length: int
) -> float | None:
    """The validation loss of the 16-bit checkpoint as a reader loads it (32-bit compute), on the data
    and records the last training stage validated on."""
    if not stage.get("valid_data"):
        return None
    from atkd.models.ladder import load_model, load_tokenizer
    from atkd.train.data import load_examples
    from atkd.train.step import evaluate_loss

    tok = load_tokenizer(model_dir)
    examples = load_examples(world / stage["valid_data"], tok, max_length)
    if stage.get("valid_limit"):
        examples = examples[: stage["valid_limit"]]
    return round(evaluate_loss(load_model(model_dir), examples, tok.pad_token_id, 32, "cpu", False), 6)


def export(
    out: str | Path,
    build: str | Path,
    config: Mapping[str, Any],
    world_version: int,
) -> dict[str, Any]:
    """Write the zoo of a finished build (a config/zoo.yaml results folder) to `out`, atomically: every
    model in float16 with its tokenizer, then MANIFEST.json. Returns the manifest."""
    import torch

    from atkd.models.ladder import load_model, load_tokenizer, save_model
    from atkd.models.tokenizer import save_tokenizer

    build = Path(build)
    models, world = build / "models", build / "world"
    bench = build / "benchmarks"
    tok = load_tokenizer(build / "tokenizer")
    # (zoo path, the trained HF dir, its stages as (name, summary, benchmark), max_length of the last stage)
    entries: list[tuple[str, Path, list[tuple[str, Path, Path]], Mapping[str, Any]]] = [
        (
            "student",
            models / "student-base" / "final",
            [("pretrain", models / "student-base" / "train_summary.json", bench / "student_base.tsv")],
            config["student"],
        )
    ]
    for name in config["teachers"]:
        stages = [
            ("instruct", models / "teachers" / name / "train_summary.json", bench / "teacher" / f"{name}.tsv")
        ]
        if "teacher_pretrain" in config:
            base = models / "teacher-bases" / name / "train_summary.json"
            stages.insert(0, ("pretrain", base, bench / "teacher_base" / f"{name}.tsv"))
        entries.append(
            (f"teachers/{name}", models / "teachers" / name / "final", stages, config["teacher_train"])
        )
        for early in sorted((models / "teachers" / name / "hf").glob("epoch-*")):
            entries.append((f"teachers/{name}@{early.name}", early, [], config["teacher_train"]))

    described: dict[str, Any] = {}
    with atomic_dir(out) as tmp:
        save_tokenizer(tok, tmp / "tokenizer")
        for path, src, stages, train in entries:
            model = load_model(src).to(torch.float16)
            save_model(model, tmp / path, tok)
            info: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters())}
            info["stages"] = {name: _stage(summary, b) for name, summary, b in stages}
            if stages:
                last = info["stages"][stages[-1][0]]
                last["valid_loss_16bit"] = _valid_loss_16bit(
                    tmp / path, last, world, train.get("max_length", 512)
                )
            described[path] = info
        manifest = {
            "format": FORMAT,
            "rebuild": REBUILD,
            "dtype": "float16",
            "world": {
                "version": world_version,
                "params": {k: config["world"].get(k, OPTIONAL_WORLD_FIELDS.get(k)) for k in WORLD_FIELDS},
                "files": {f: sha256(world / f) for f in WORLD_FILES if (world / f).is_file()},
            },
            "tokenizer": {"vocab_size": len(tok)},
            "config": dict(config),
            # the build's CPU time: the world, the tokenizer and every training stage
            "cpu_s": round(
                sum(_bench(bench / f"{step}.tsv").get("cpu_s", 0.0) for step in ("world", "tokenizer"))
                + sum(s.get("cpu_s", 0.0) for m in described.values() for s in m["stages"].values()),
                1,
            ),
            "models": described,
            "built_on": built_on(),
            "files": file_table(tmp),
        }
        manifest["bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


# --------------------------------------------------------------------------------------------------
# CLI.


def _cmd_export(args: Any) -> int:
    import yaml

    from atkd.data.world import WORLD_VERSION

    config = (
        json.loads(args.config_json) if args.config_json else yaml.safe_load(Path(args.config).read_text())
    )
    manifest = export(args.out, args.build, config, WORLD_VERSION)
    mb, minutes = manifest["bytes"] / 1e6, manifest["cpu_s"] / 60
    print(f"{args.out}: {len(manifest['models'])} checkpoints, {mb:.1f} MB, built in {minutes:.0f} CPU min")
    return 0


def _cmd_verify(args: Any) -> int:
    try:
        manifest = verify(args.zoo)
    except ZooError as err:
        raise SystemExit(f"atkd zoo-verify: {err}") from None
    version = manifest["world"]["version"]
    print(f"{args.zoo}: {len(manifest['files'])} files match {MANIFEST} (world version {version})")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add `atkd zoo-export` and `atkd zoo-verify`."""
    p = subparsers.add_parser(
        "zoo-export", help="write a finished zoo build as 16-bit checkpoints + MANIFEST.json"
    )
    p.add_argument("--build", required=True, help="the build's results folder (results: of config/zoo.yaml)")
    p.add_argument("--out", required=True, help="the zoo folder to write (replaced as a whole)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the build's config file (recorded in the manifest)")
    src.add_argument("--config-json", help="the build's config as JSON (what the workflow passes)")
    p.set_defaults(func=_cmd_export)
    p = subparsers.add_parser("zoo-verify", help="check every file of a zoo against its MANIFEST.json")
    p.add_argument("zoo", nargs="?", default="zoo", help="the zoo folder (default: zoo)")
    p.set_defaults(func=_cmd_verify)
