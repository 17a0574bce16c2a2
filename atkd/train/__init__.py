"""Training: one loop for teacher SFT, student base pre-training and student KD (see `atkd.train.loop`;
its config is `atkd.train.config`, one step's loss and gradient `atkd.train.step`, resumable state
`atkd.train.checkpoint`).

Names resolve lazily (PEP 562), so the light modules here (`atkd.train.sampling`'s config parsing)
import without pulling in the whole training stack."""

from __future__ import annotations

from atkd.lazy import lazy_getattr

_EXPORTS = {
    "TrainConfig": "atkd.train.config",
    "forward_backward": "atkd.train.step",
    "train": "atkd.train.loop",
    "TeacherCache": "atkd.train.teacher_cache",
    "build_teacher_cache": "atkd.train.teacher_cache",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
