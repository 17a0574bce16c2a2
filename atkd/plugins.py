"""User plugins: modules imported before a config is checked or a run starts, so that the losses they
register (`atkd.losses.register_divergence`) can be named in a config like the built-in ones.

A plugin is a dotted module name importable from the working directory or `sys.path`
(`my_lab.kd_losses`), or a path to a `.py` file (`plugins/hellinger.py`, relative to the working
directory). Importing twice is a no-op, so every process (Snakemake, each `atkd train`) may load them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType


def _from_path(path: Path) -> ModuleType:
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = f"atkd_plugin_{resolved.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"plugin {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugin(name: str) -> ModuleType:
    """Import one plugin (dotted module name or `.py` path); errors say which plugin failed."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"plugin {name!r}: no such file (relative to {Path.cwd()})")
        return _from_path(path)
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"plugin {name!r}: {err} (searched the working directory and sys.path)"
        ) from err
    finally:
        if added:
            sys.path.remove(cwd)


def load_plugins(names: Iterable[str]) -> list[ModuleType]:
    """Import every plugin in order."""
    return [load_plugin(n) for n in names]
