"""Outside instruction sets: JSONL files (instruction, optional input, output) evaluated as generation
tasks next to the world's suites, named in a config's `evaluation.instruct_sets` or by `--instruct-set`.

Resolving (names and absolute paths, no reading) is light, because the Snakefile does it at every parse;
checking also reads every file, so a malformed line fails before any model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from atkd.data.suites import SUITE_NAMES

# The name of a task from outside the world (an instruction set or a benchmark): it becomes part of a
# task name (`atkd_<name>`), a file name and a table label.
TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_GLOB_CHARS = re.compile(r"[*?\[]")

InstructSetsSpec = Mapping[str, str | Path] | Sequence[str | Path] | str | Path | None


def resolve_instruct_sets(sets: InstructSetsSpec, base: str | Path | None = None) -> dict[str, Path]:
    """The config's outside instruction sets as {name: absolute path}, without reading them.

    Accepted forms: {name: path}; a path or glob pattern (`data/instruct-eval/*.jsonl`); or a
    list of paths and patterns. Files named by pattern or list are named by their stem (`self-inst.jsonl`
    -> `self-inst`), with `eval` appended where the stem is a built-in suite's name (`dolly.jsonl` ->
    `dollyeval`, the study's DollyEval), so they never clash with the synthetic suites. Relative paths
    are resolved from `base` (default: the working directory: where Snakemake runs, or its
    `--directory`). A path that names an existing file is that file even if it holds glob characters
    (`proj[1]/x.jsonl`). A pattern that matches nothing and two files with the same name fail here.
    """
    root = Path(base) if base is not None else Path.cwd()
    if sets is None:
        return {}
    if isinstance(sets, Mapping):
        named = []
        for name, path in sets.items():
            if _GLOB_CHARS.search(str(path)) and not _absolute(root, path).is_file():
                raise ValueError(
                    f"{name}: {path!r} is a pattern; a named set is one file (list patterns instead:"
                    " `instruct_sets: [dir/*.jsonl]` names each file by its stem)"
                )
            named.append((str(name), _absolute(root, path)))
    else:
        entries = [sets] if isinstance(sets, (str, Path)) else list(sets)
        named = []
        for entry in entries:
            if not isinstance(entry, (str, Path)):
                raise ValueError(f"expected a path or a glob pattern, got {entry!r}")
            for path in _expand(root, entry):
                named.append((path.stem + "eval" if path.stem in SUITE_NAMES else path.stem, path))
    out: dict[str, Path] = {}
    for name, path in named:
        if name in out and out[name] != path:
            raise ValueError(
                f"two instruction sets are named {name!r}: {out[name]} and {path} (name them: {{name: path}})"
            )
        out[name] = path
    return out


def _absolute(root: Path, path: str | Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else root / p).resolve()


def _expand(root: Path, entry: str | Path) -> list[Path]:
    text = str(Path(entry).expanduser())
    if not _GLOB_CHARS.search(text) or _absolute(root, text).is_file():
        path = _absolute(root, text)
        if path.is_dir():
            raise ValueError(f"{text!r} is a directory; name its files, e.g. {text.rstrip('/')}/*.jsonl")
        return [path]
    pattern = Path(text)
    if pattern.is_absolute():
        matches = sorted(Path(pattern.anchor).glob(str(pattern.relative_to(pattern.anchor))))
    else:
        matches = sorted(root.glob(text))
    files = [m.resolve() for m in matches if m.is_file()]
    if not files:
        raise ValueError(f"{text!r} matches no file (relative patterns are resolved from {root})")
    return files


def check_instruct_sets(sets: InstructSetsSpec, base: str | Path | None = None) -> dict[str, Path]:
    """Outside instruction sets (any form `resolve_instruct_sets` accepts): names new and well formed,
    files present and valid (a malformed line fails here with file and line number, before any model is
    loaded). Returns {name: absolute path}."""
    from atkd.eval.tasks.utils import read_docs

    out = resolve_instruct_sets(sets, base)
    for name, path in out.items():
        if not TASK_NAME.fullmatch(name):
            raise ValueError(
                f"instruction set name {name!r} ({path}): use letters, digits, '_' or '-', starting with a"
                " letter (name the set: {name: path})"
            )
        if name in SUITE_NAMES:
            raise ValueError(
                f"instruction set name {name!r} ({path}) is a built-in suite; name it: {{other_name: path}}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"instruction set {name!r}: file not found: {path}")
        read_docs(path, "instruct")
    return out
