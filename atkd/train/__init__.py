"""Training: one loop for teacher SFT, student base pre-training and student KD (see `atkd.train.loop`).

Names resolve lazily (PEP 562), so the light modules here (`atkd.train.sampling`'s config parsing)
import without pulling in the whole training stack."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "atkd.train.loop",
    "forward_backward": "atkd.train.loop",
    "train": "atkd.train.loop",
    "TeacherCache": "atkd.train.teacher_cache",
    "build_teacher_cache": "atkd.train.teacher_cache",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
