"""Token-level KD losses over a vocabulary, +ATKD for any of them, and the per-token probe view.

    loss = build_loss({"name": "fkl", "atkd": {"k": 0.5, "lam": 0.2}})
    value = loss(student_logits, teacher_logits, labels)          # logits [B, T, V], labels [B, T]
    parts = token_parts(student_logits, teacher_logits, labels)   # unc, tkd, dkd, base per valid token
    value = fused_linear_kd_loss(spec, hidden, head.weight, labels, teacher_hidden=th, teacher_weight=tw)
                                                                  # the same, no [tokens x vocab] tensor

    value = loss(student_logits, sparse_from_logits(teacher_logits, labels, k=64), labels)
                                                                  # a top-K teacher (a sparse cache)

New divergences register with `register_divergence` and get +ATKD, chunking and masking for free.
"""

from atkd.losses.core import (
    IGNORE_INDEX,
    AtkdConfig,
    KDLoss,
    LossConfig,
    build_loss,
    parse_spec,
    token_parts,
    valid_names,
)
from atkd.losses.divergences import DIVERGENCES, register_divergence
from atkd.losses.fused import fused_linear_kd_loss
from atkd.losses.sparse import SparseTeacher, sparse_from_logits

__all__ = [
    "DIVERGENCES",
    "IGNORE_INDEX",
    "AtkdConfig",
    "KDLoss",
    "LossConfig",
    "SparseTeacher",
    "build_loss",
    "fused_linear_kd_loss",
    "parse_spec",
    "register_divergence",
    "sparse_from_logits",
    "token_parts",
    "valid_names",
]
