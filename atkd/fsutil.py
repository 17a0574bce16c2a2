"""Atomic file-system writes: a reader (or a killed job) never sees a half-written file or directory.

Temporary files and directories come from `tempfile`, which creates them private (0600 / 0700) whatever
the umask; before the rename they get the mode a plain `open` / `mkdir` would give (0644 / 0755 under the
usual umask 022), so colleagues on a shared file system can read the results.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _public(path: str | Path, directory: bool) -> None:
    """Give a temporary file or directory the mode `open` / `mkdir` would have: 0666 / 0777 less umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; on success it is renamed to `path`.

    On error the temporary directory is removed and `path` is untouched. With `overwrite`, an existing
    `path` is replaced (moved aside first, then deleted), so at every instant `path` is either the old
    complete directory, the new complete one, or absent.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        for root, dirs, files in os.walk(tmp):  # writers such as safetensors create files private too
            for name in dirs:
                _public(os.path.join(root, name), directory=True)
            for name in files:
                _public(os.path.join(root, name), directory=False)
        _public(tmp, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"{path} already exists")
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, old / "x")
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _public(tmp, directory=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: str | Path, df: Any) -> None:
    """Write a pandas DataFrame as CSV (6 significant digits, no index) with `atomic_write_text`."""
    atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))


def atomic_write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write dict rows as CSV with header `columns` (values as `str()` gives them, so floats keep every
    digit: tidy result files are read back by the report) with `atomic_write_text`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def epoch_dir_name(epochs: float) -> str:
    """Directory name of the HF checkpoint saved after `epochs` epochs: epoch-1, epoch-0.5."""
    return f"epoch-{float(epochs):g}"
