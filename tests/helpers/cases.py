"""Random loss inputs shared by the loss tests: student and teacher logits and labels with ignored tokens."""

from __future__ import annotations

import torch


def random_case(shape, seed=0, scale=3.0):
    """(student logits, teacher logits, labels) of `shape` (B, T, V), float64; about 30% of the labels
    are -100 (never the first), so masking is exercised."""
    g = torch.Generator().manual_seed(seed)
    b, t, v = shape
    s = torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale
    te = torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, v, (b, t), generator=g)
    drop = torch.rand(b, t, generator=g) < 0.3
    drop.view(-1)[0] = False
    y[drop] = -100
    return s, te, y
