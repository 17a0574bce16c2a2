"""The ladder's named GPT-NeoX shapes, as plain data: importable without torch or transformers, so that
config validation and every workflow rule's parse stay fast (`atkd.models.ladder` builds the models)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """One rung of the ladder: the shape of a GPT-NeoX model (head size 16, MLP 4x, Pythia defaults)."""

    name: str
    hidden: int
    layers: int
    head_dim: int = 16

    @property
    def heads(self) -> int:
        return self.hidden // self.head_dim


def _shape(hidden: int, layers: int) -> ModelShape:
    return ModelShape(name=f"neox-{hidden}x{layers}", hidden=hidden, layers=layers)


# Named shapes, small to large. Names say hidden size x layers, so they do not depend on the vocabulary.
LADDER: dict[str, ModelShape] = {
    s.name: s
    for s in (
        _shape(32, 2),
        _shape(48, 2),
        _shape(64, 2),
        _shape(96, 3),
        _shape(128, 4),
        _shape(160, 5),
        _shape(192, 6),
        _shape(208, 6),  # 3.6M at vocab 1024: 23x the default student (the zoo's largest teacher)
        _shape(256, 8),
    )
}

DEFAULT_STUDENT = "neox-48x2"
DEFAULT_TEACHERS: tuple[str, ...] = ("neox-64x2", "neox-96x3", "neox-128x4", "neox-160x5")
