"""JSON-lines I/O: strict reading (errors name file and line) and atomic writing.

Why strict: a malformed record deep in a training file should stop a run at load time with a message a
person can act on, not as a KeyError somewhere in a collate function hours later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from atkd.fsutil import atomic_write_text

TypeSpec = type | tuple[type, ...]


def _required_spec(required: Iterable[str] | Mapping[str, TypeSpec]) -> dict[str, TypeSpec]:
    if isinstance(required, Mapping):
        return dict(required)
    return {name: str for name in required}


def _type_name(t: TypeSpec) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def read_jsonl(
    path: str | Path,
    required: Iterable[str] | Mapping[str, TypeSpec] = ("instruction", "output"),
    optional: Mapping[str, TypeSpec] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSON-lines file, one per non-blank line.

    `required` names fields that must be present; given as names they must be strings, given as a
    mapping name -> type (or tuple of types) they must have that type (e.g. `{"choices": list}`).
    `optional` fields (name -> type) may be absent or null, and otherwise must have their type.
    Raises `ValueError("<path>:<line>: ...")` (1-based line) on undecodable bytes, bad JSON, a value that
    is not an object, or a missing / ill-typed field.
    """
    path = Path(path)
    spec = _required_spec(required)
    optional = dict(optional or {})
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({e})") from e
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            for name, typ in spec.items():
                if name not in obj:
                    raise ValueError(f"{path}:{lineno}: missing required field {name!r}")
                value = obj[name]
                # bool is an int subclass in Python; never accept it where a number is required.
                if not isinstance(value, typ) or (isinstance(value, bool) and bool not in _as_tuple(typ)):
                    got = type(value).__name__
                    raise ValueError(f"{path}:{lineno}: field {name!r} must be {_type_name(typ)}, got {got}")
            for name, typ in optional.items():
                value = obj.get(name)
                if value is not None and (
                    not isinstance(value, typ) or (isinstance(value, bool) and bool not in _as_tuple(typ))
                ):
                    got = type(value).__name__
                    raise ValueError(f"{path}:{lineno}: field {name!r} must be {_type_name(typ)}, got {got}")
            yield obj


def is_text_corpus(path: str | Path) -> bool:
    """Whether a JSON-lines file is a pre-training corpus (its first record has `text` and no
    `instruction`: one document per record) rather than instruction records."""
    first = next(read_jsonl(path, required=()), None)
    return first is not None and "text" in first and "instruction" not in first


def read_text_records(path: str | Path) -> Iterator[str]:
    """The documents of a JSON-lines corpus: each record's `text`, line breaks kept, blank ones skipped; a
    record without a string `text` fails with the file and line."""
    for rec in read_jsonl(path, required={"text": str}):
        if rec["text"].strip():
            yield rec["text"]


def _as_tuple(t: TypeSpec) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def dumps_jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    """The JSON-lines text of `records` (UTF-8 kept as is, one object per line, trailing newline)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_jsonl_atomic(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write `records` as JSON lines via a temporary file in the same directory and `os.replace`,
    so a reader never sees a partial file. Returns the number of records written."""
    records = list(records)
    atomic_write_text(path, dumps_jsonl(records))
    return len(records)
