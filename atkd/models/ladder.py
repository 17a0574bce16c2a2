"""The model ladder: named GPT-NeoX (Pythia architecture) shapes for the student and the teachers.

Sizes come from what 2 CPU cores can train: models above ~2M parameters cannot see enough epochs in a
bounded time, and an undertrained big teacher is *worse* than a small one, which would confound the
study's teacher-size sweep. So the default teachers span 8x parameters (0.23M -> 1.9M at vocab 1024)
and the pipeline gives them comparable epochs (wall time growing with size), so quality rises with size.

Everything is saved and loaded as ordinary Hugging Face checkpoints (`save_pretrained` with safetensors,
`AutoModelForCausalLM.from_pretrained`), so a Hub id such as `EleutherAI/pythia-160m` goes through exactly
the same code path as a local directory produced here.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from atkd.fsutil import atomic_dir
from atkd.models import gguf
from atkd.models.shapes import DEFAULT_STUDENT, DEFAULT_TEACHERS, LADDER, ModelShape
from atkd.models.tokenizer import load_tokenizer

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
]


MAX_POSITIONS = 512
_TRANSFORMERS_VERSION = tuple(int(x) for x in transformers.__version__.split(".")[:2])


def make_config(
    shape: str | ModelShape, vocab_size: int, eos_token_id: int | None = None, pad_token_id: int | None = None
) -> GPTNeoXConfig:
    """Return the `GPTNeoXConfig` of a ladder shape (by name or `ModelShape`) for a given vocabulary."""
    if isinstance(shape, str):
        if shape not in LADDER:
            raise KeyError(f"unknown ladder model {shape!r}; known: {', '.join(LADDER)}")
        shape = LADDER[shape]
    if shape.hidden % shape.head_dim:
        raise ValueError(f"hidden size {shape.hidden} is not a multiple of head_dim {shape.head_dim}")
    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=4 * shape.hidden,
        max_position_embeddings=MAX_POSITIONS,
        rotary_pct=0.25,  # Pythia's partial rotary embedding
        rotary_emb_base=10000,
        use_parallel_residual=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tie_word_embeddings=False,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def build_model(
    name_or_config: str | ModelShape | GPTNeoXConfig,
    vocab_size: int | None = None,
    seed: int = 0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> GPTNeoXForCausalLM:
    """Build a randomly initialised GPT-NeoX model from a ladder name, a `ModelShape` or a config.

    Initialisation depends only on `seed` (the global RNG state is saved and restored around it).
    """
    if isinstance(name_or_config, GPTNeoXConfig):
        config = name_or_config
        if vocab_size is not None and vocab_size != config.vocab_size:
            raise ValueError(f"vocab_size {vocab_size} disagrees with the config's {config.vocab_size}")
    else:
        if vocab_size is None:
            raise ValueError("vocab_size is required when building from a ladder name")
        config = make_config(name_or_config, vocab_size, eos_token_id, pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(config)
    return model


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def save_model(
    model: PreTrainedModel, out_dir: str | Path, tokenizer: PreTrainedTokenizerBase | None = None
) -> Path:
    """Save a model (safetensors) and optionally its tokenizer as one HF directory, atomically."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` where a GPU is visible, else `cpu`; an explicit CUDA device without CUDA fails."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return name


def load_model(
    path_or_hub_id: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """Load a causal LM through `AutoModelForCausalLM.from_pretrained` (local dir or Hub id alike; a GGUF
    file or package through `atkd.models.gguf`)."""
    if gguf.is_gguf(path_or_hub_id):
        return gguf.load(path_or_hub_id, "model", dtype).to(device)
    # transformers >= 4.56 calls the argument `dtype`; older releases `torch_dtype`.
    key = "dtype" if _TRANSFORMERS_VERSION >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(str(path_or_hub_id), **{key: dtype})
    return model.to(device)
