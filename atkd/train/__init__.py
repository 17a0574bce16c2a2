"""Training: one loop for teacher SFT, student base pre-training and student KD (see `atkd.train.loop`)."""

from atkd.train.loop import TrainConfig, forward_backward, train
from atkd.train.teacher_cache import TeacherCache, build_teacher_cache

__all__ = ["TeacherCache", "TrainConfig", "build_teacher_cache", "forward_backward", "train"]
