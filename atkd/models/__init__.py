"""Models: the byte-level BPE tokenizer and the GPT-NeoX ladder, as ordinary Hugging Face checkpoints.

Names resolve lazily (PEP 562), so `from atkd.models.shapes import LADDER` does not import torch."""

from __future__ import annotations

from atkd.lazy import lazy_getattr

_EXPORTS = {
    "DEFAULT_STUDENT": "atkd.models.shapes",
    "DEFAULT_TEACHERS": "atkd.models.shapes",
    "LADDER": "atkd.models.shapes",
    "ModelShape": "atkd.models.shapes",
    "build_model": "atkd.models.ladder",
    "count_params": "atkd.models.ladder",
    "load_model": "atkd.models.ladder",
    "make_config": "atkd.models.ladder",
    "resolve_device": "atkd.models.ladder",
    "save_model": "atkd.models.ladder",
    "load_tokenizer": "atkd.models.tokenizer",
    "save_tokenizer": "atkd.models.tokenizer",
    "train_tokenizer": "atkd.models.tokenizer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
