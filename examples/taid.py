"""TAID, temporally adaptive interpolated distillation (Shing et al., ICLR 2025), as a stateful method
from outside the package.

The student learns from an interpolation between itself and the teacher, in logit space, whose weight t
grows from `t_start` to `t_end` over training:

    p_t = softmax((1 - t) * sg(z_student) + t * z_teacher)         (sg: no gradient)
    loss = the configured divergence from p_t to the student (forward KL: the authors' choice)

As in the authors' code (SakanaAI/TAID, src/distil_losses/taid.py), t moves after every step by

    J_n   = -mean over target tokens of sum_v p_t(v) log q(v)   (step n's cross-entropy to p_t, old t)
    delta = (J_{n-1} - J_n) / (J_{n-1} + 1e-15)                  (none at the first step: J is stored)
    m_n   = beta * m_{n-1} + (1 - beta) * delta,   m_0 = 0
    t     = min(t_end, max(t_start + (t_end - t_start) * (n - 1) / N, t + alpha * sigmoid(m_n) * (1 - t)))

with n the step (1-based; n - 1 optimiser steps were done when its loss was computed) and N the run's
steps; defaults t_start 0.4, t_end 1.0, alpha 5e-4, beta 0.99. The
loss the optimiser sees is the configured one (forward KL to p_t has the same gradient as the authors'
cross-entropy); J, the quantity the schedule reads, is the authors' cross-entropy. t, J_{n-1} and m are
saved with every checkpoint, so a resumed run continues exactly. Deviations: t moves once per optimiser
step (the authors' code moves it per forward pass, the same thing without gradient accumulation), and
validation batches do not move it (the authors' do).

With +ATKD the tokens are ranked into easy and hard by the teacher's own uncertainty (UnC of z_teacher,
not of p_t), and the +ATKD weights then apply to the divergence from p_t: TAID decides what the student
aims at, ATKD decides where it looks. A sparse (top-K) teacher cache cannot be interpolated in logit
space: TAID needs the dense cache or the live teacher (`teacher_cache: false`).

    plugins: [examples/taid.py]
    methods:
      taid: {loss: fkl, stateful: {name: taid}, teacher_cache: false}
"""

import math
from collections.abc import Mapping
from typing import Any

import torch

from atkd.losses import KDLoss, SparseTeacher
from atkd.train.stateful import register_stateful


def interpolate(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """TAID's target in logit space: (1 - t) * sg(student) + t * teacher."""
    return (1.0 - t) * student_logits.detach() + t * teacher_logits.detach()


def next_t(t: float, prev: float, momentum: float, loss: float, progress: float, cfg: Mapping[str, float]):
    """One step of the authors' schedule: (t, prev_loss, momentum) after observing `loss` (J) with
    `progress` = steps done / all steps."""
    if math.isinf(prev):
        return t, loss, momentum
    relative = (prev - loss) / (prev + 1e-15)
    momentum = cfg["beta"] * momentum + (1.0 - cfg["beta"]) * relative
    adaptive = 1.0 / (1.0 + math.exp(-momentum))
    floor = cfg["t_start"] + (cfg["t_end"] - cfg["t_start"]) * progress
    return min(cfg["t_end"], max(floor, t + cfg["alpha"] * adaptive * (1.0 - t))), loss, momentum


@register_stateful("taid")
class TAID:
    """The loss around a TAID target, with the adaptive t (see the module docstring)."""

    dense_teacher = True  # logits are interpolated: a top-K cache is refused when the config is checked

    def __init__(
        self,
        loss: KDLoss,
        *,
        total_steps: int,
        t_start: float = 0.4,
        t_end: float = 1.0,
        alpha: float = 5e-4,
        beta: float = 0.99,
    ) -> None:
        if not 0.0 <= t_start <= t_end <= 1.0:
            raise ValueError(f"need 0 <= t_start <= t_end <= 1, got t_start {t_start}, t_end {t_end}")
        if not loss.config.needs_teacher:
            raise ValueError(f"TAID interpolates towards a teacher; loss {loss.config.name!r} uses none")
        self.loss, self.total_steps = loss, total_steps
        self.params = {"t_start": t_start, "t_end": t_end, "alpha": alpha, "beta": beta}
        self.t, self.prev, self.momentum = t_start, math.inf, 0.0
        self._sum, self._count = 0.0, 0  # the step's J: cross-entropy sums to p_t over its micro-batches

    @property
    def config(self) -> Any:
        return self.loss.config

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher: torch.Tensor | SparseTeacher,
        labels: torch.Tensor,
        num_tokens: Any = None,
    ) -> torch.Tensor:
        if isinstance(teacher, SparseTeacher):
            raise ValueError(
                "TAID interpolates logits; a sparse teacher cache has none (teacher_cache: false)"
            )
        target = interpolate(student_logits, teacher, self.t)
        if torch.is_grad_enabled():
            with torch.no_grad():
                mask = labels != self.loss.config.ignore_index
                p = torch.softmax(target[mask].double(), -1)
                log_q = torch.log_softmax(student_logits.detach()[mask].double(), -1)
                self._sum += float(-(p * log_q).sum())
                self._count += int(mask.sum())
        return self.loss(student_logits, target, labels, num_tokens, rank_by=teacher)

    def after_step(self, step: int, stats: Mapping[str, float]) -> None:
        """Move t with the step's J (its cross-entropy to p_t at the old t)."""
        if self._count:
            j = self._sum / self._count
            self.t, self.prev, self.momentum = next_t(
                self.t, self.prev, self.momentum, j, (step - 1) / self.total_steps, self.params
            )
        self._sum, self._count = 0.0, 0

    def state_dict(self) -> dict[str, float]:
        return {"t": self.t, "prev": self.prev, "momentum": self.momentum}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.t, self.prev, self.momentum = float(state["t"]), float(state["prev"]), float(state["momentum"])
