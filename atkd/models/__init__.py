"""Models: the byte-level BPE tokenizer and the GPT-NeoX ladder, as ordinary Hugging Face checkpoints."""

from atkd.models.ladder import (
    DEFAULT_STUDENT,
    DEFAULT_TEACHERS,
    LADDER,
    ModelShape,
    build_model,
    count_params,
    load_model,
    make_config,
    save_model,
)
from atkd.models.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

__all__ = [
    "DEFAULT_STUDENT",
    "DEFAULT_TEACHERS",
    "LADDER",
    "ModelShape",
    "build_model",
    "count_params",
    "load_model",
    "load_tokenizer",
    "make_config",
    "save_model",
    "save_tokenizer",
    "train_tokenizer",
]
