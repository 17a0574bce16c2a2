"""`atkd data`: real instruction data (Alpaca-GPT4, Dolly-15k, a local file) as the training world of a
paper profile: `train.jsonl` and a held-out `valid.jsonl` in the study's format, plus `manifest.json`.

    atkd data --source vicgalle/alpaca-gpt4 --out results/data --n-valid 500
    atkd data --source my_data.jsonl --out results/data --fields instruction=prompt output=answer

`--source` is a local JSON-lines file (read strictly: a malformed line fails with its file and line
number) or anything `datasets.load_dataset` takes: a Hub dataset id, or a local dataset directory (the
same code path as a Hub id, which is how the tests exercise it offline). Records keep `instruction`,
`input` (empty when absent) and `output`; `--fields` maps other column names onto those. Records with an
empty instruction or output are dropped and counted. The validation split is drawn with `--seed`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from atkd.data.jsonl import dumps_jsonl, read_jsonl
from atkd.fsutil import atomic_dir

log = logging.getLogger(__name__)

FIELDS = ("instruction", "input", "output")


def _rows(source: str, split: str, required: Iterable[str]) -> Iterable[Mapping[str, Any]]:
    path = Path(source)
    if path.is_file() and path.suffix == ".jsonl":
        # errors name the file and line
        return read_jsonl(path, required=tuple(required), optional={"input": str})
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - lm-eval depends on datasets
        raise ValueError(f"{source}: loading a dataset by name needs the `datasets` package") from err
    return datasets.load_dataset(source, split=split)


def load_records(
    source: str, *, split: str = "train", fields: Mapping[str, str] | None = None
) -> tuple[list[dict[str, str]], int]:
    """Records in the study's format from `source`, and how many were dropped as empty."""
    names = {f: f for f in FIELDS} | dict(fields or {})
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise ValueError(f"--fields: unknown target field(s) {unknown}; valid: {', '.join(FIELDS)}")
    out, dropped = [], 0
    for i, row in enumerate(_rows(source, split, [names["instruction"], names["output"]]), 1):
        missing = [names[f] for f in ("instruction", "output") if names[f] not in row]
        if missing:
            raise ValueError(f"{source}: record {i} has no column {missing[0]!r} (columns: {sorted(row)})")
        rec = {f: row.get(names[f]) or "" for f in FIELDS}
        bad = [f for f, v in rec.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"{source}: record {i}: field {names[bad[0]]!r} must be a string")
        if not rec["instruction"].strip() or not rec["output"].strip():
            dropped += 1
            continue
        out.append(rec)
    if not out:
        raise ValueError(f"{source}: no usable records (every record had an empty instruction or output)")
    return out, dropped


def write_data(
    source: str,
    out: str | Path,
    *,
    n_valid: int = 500,
    seed: int = 0,
    limit: int | None = None,
    split: str = "train",
    fields: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write `train.jsonl`, `valid.jsonl` and `manifest.json` to `out` (atomically, as one directory)."""
    records, dropped = load_records(source, split=split, fields=fields)
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    if n_valid >= len(order):
        raise ValueError(f"--n-valid {n_valid} leaves no training records (the source has {len(order)})")
    valid = [records[i] for i in order[:n_valid]]
    train = [records[i] for i in sorted(order[n_valid:])]
    if limit is not None:
        train = train[:limit]
    texts = {"train.jsonl": dumps_jsonl(train), "valid.jsonl": dumps_jsonl(valid)}
    manifest = {
        "kind": "data",
        "source": source,
        "split": split,
        "fields": dict(fields or {}),
        "seed": seed,
        "dropped_empty": dropped,
        "counts": {"train": len(train), "valid": len(valid)},
        "sha256": {name: hashlib.sha256(t.encode()).hexdigest() for name, t in texts.items()},
    }
    with atomic_dir(out) as tmp:
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    fields = {}
    for item in args.fields:
        target, sep, column = item.partition("=")
        if not sep:
            raise SystemExit(f"atkd data: --fields takes FIELD=COLUMN, got {item!r}")
        fields[target] = column
    manifest = write_data(
        args.source,
        args.out,
        n_valid=args.n_valid,
        seed=args.seed,
        limit=args.limit,
        split=args.split,
        fields=fields,
    )
    c = manifest["counts"]
    print(f"{args.out}: {c['train']} train, {c['valid']} valid ({manifest['dropped_empty']} empty dropped)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd data --source ID|FILE --out DIR`."""
    p = subparsers.add_parser("data", help="real instruction data as train/valid JSONL", description=__doc__)
    p.add_argument("--source", required=True, help="Hub dataset id, local dataset directory or .jsonl file")
    p.add_argument("--out", required=True, help="output directory (train.jsonl, valid.jsonl)")
    p.add_argument("--split", default="train", help="dataset split to read")
    p.add_argument("--n-valid", type=int, default=500, help="records held out for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out draw")
    p.add_argument("--limit", type=int, default=None, help="keep the first N training records")
    p.add_argument("--fields", nargs="*", default=[], metavar="FIELD=COLUMN", help="column names")
    p.set_defaults(func=_run_cli, formatter_class=argparse.RawDescriptionHelpFormatter)
