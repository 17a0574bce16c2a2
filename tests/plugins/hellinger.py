"""A KD method from outside the package: the squared Hellinger distance between teacher and student.

H^2(p, q) = 1 - sum_v sqrt(p_v q_v), computed from log-probabilities as 1 - sum_v exp((lp_v + lq_v) / 2).
Registering it is all it takes: +ATKD, chunking, temperature and masking come with `build_loss`.
"""

import torch

from atkd.losses import register_divergence


@register_divergence("hellinger")
def hellinger(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """Squared Hellinger distance per token; lp: teacher, lq: student log-probabilities, [N, V]."""
    return 1.0 - torch.exp(0.5 * (lp + lq)).sum(-1)
