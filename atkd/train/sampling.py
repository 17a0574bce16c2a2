"""Where the sequences of a distillation step come from: sampling sources and their mixtures.

A step's batch is either the ground-truth batch of the data stream or, with probability `lam`, the same
prompts answered by the configured `source`:

- `ground_truth`: the training records as they are (Supervised KD, Reverse KD, f-distill, SFT).
- `teacher`:      the teacher's answers to the same prompts, generated once per teacher into a JSONL file
                  aligned with the training data (`atkd generate`), read here as `teacher_data` (SeqKD).
- `student`:      answers sampled from the *current* student at that step, with the KV cache, in batches,
                  up to `max_new_tokens` (on-policy: GKD, and ImitKD's mixture).

`lam` is the per-batch probability of using the source (GKD's lambda; 1 = always, 0 = never); the draw
depends only on (seed, step), so an interrupted run resumes with the same batches. A generated response
that ends with EOS keeps it as a target; one cut by `max_new_tokens` (or `max_length`) has no EOS added,
since the model did not stop there. The loss covers generated tokens only, never the prompt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from atkd.train.data import IGNORE_INDEX, Example

SOURCES = ("ground_truth", "teacher", "student")


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling source of a run (see the module docstring)."""

    source: str = "ground_truth"
    lam: float = 1.0
    max_new_tokens: int = 128  # student generation only (teacher files are generated beforehand)
    temperature: float = 1.0  # student generation; 0 = greedy

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"sampling.source: unknown source {self.source!r}; valid: {', '.join(SOURCES)}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, int | float) or not 0 <= self.lam <= 1:
            raise ValueError(f"sampling.lam must be a probability in [0, 1], got {self.lam!r}")
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sampling.max_new_tokens must be a positive integer, got {n!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            raise ValueError(f"sampling.temperature must be a number >= 0, got {self.temperature!r}")
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be a number >= 0, got {self.temperature!r}")

    @property
    def mixes(self) -> bool:
        """Whether any batch comes from somewhere other than the ground truth."""
        return self.source != "ground_truth" and self.lam > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_sampling(spec: SamplingConfig | str | Mapping[str, Any] | None) -> SamplingConfig:
    """A SamplingConfig from None (ground truth), a source name, or a mapping of its fields."""
    if spec is None:
        return SamplingConfig()
    if isinstance(spec, SamplingConfig):
        return spec
    if isinstance(spec, str):
        return SamplingConfig(source=spec)
    if not isinstance(spec, Mapping):
        raise ValueError(f"sampling must be a source name or a mapping, got {spec!r}")
    names = {f.name for f in fields(SamplingConfig)}
    if unknown := sorted(set(spec) - names):
        raise ValueError(f"sampling: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return SamplingConfig(**dict(spec))


def _unit(*key: object) -> float:
    """A uniform number in [0, 1) fixed by `key` (stable across processes, unlike `hash`)."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def use_source(cfg: SamplingConfig, seed: int, step: int) -> bool:
    """Whether step `step` (0-based) of a run with `seed` takes its sequences from the source."""
    return cfg.mixes and _unit("mix", seed, step) < cfg.lam


def generation_seed(seed: int, step: int) -> int:
    """Seed of the student's sampling at `step`: a function of (seed, step) only, for exact resumes."""
    return random.Random(_unit("generate", seed, step)).getrandbits(63)


def prompt_ids(example: Example) -> tuple[int, ...]:
    """The prompt of an instruction example: the tokens before its first target."""
    for i, y in enumerate(example.labels):
        if y != IGNORE_INDEX:
            return example.input_ids[:i]
    return example.input_ids


def with_response(prompt: Sequence[int], response: Sequence[int], max_length: int) -> Example:
    """`prompt` + `response` as a training example (targets on the response only), cut at `max_length`."""
    ids = (tuple(prompt) + tuple(response))[:max_length]
    labels = ((IGNORE_INDEX,) * len(prompt) + tuple(response))[:max_length]
    return Example(ids, labels)


def cut_at_eos(tokens: Sequence[int], eos_token_id: int) -> list[int]:
    """Tokens up to and including the first EOS (all of them if there is none)."""
    out = []
    for t in tokens:
        out.append(int(t))
        if t == eos_token_id:
            break
    return out


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    eos_token_id: int,
    pad_token_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> list[list[int]]:
    """Sample one response per prompt from `model` (KV cache, left-padded batches); each response ends
    at its first EOS (kept) or after `max_new_tokens`. Pure sampling (no top-k/top-p) at `temperature`,
    greedy at 0. The global RNG state is left untouched; the draw depends on `seed` and the batching."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: list[list[int]] = []
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start : start + batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, width - len(p) :] = torch.tensor(list(p))
                    mask[i, width - len(p) :] = 1
                kwargs: dict[str, Any] = {"do_sample": False}
                if temperature > 0:
                    kwargs = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
                gen = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    eos_token_id=eos_token_id,
                    pad_token_id=pad_token_id,
                    use_cache=True,
                    **kwargs,
                )
                for row in gen[:, width:].tolist():
                    out.append(cut_at_eos(row, eos_token_id))
    finally:
        model.train(was_training)
    return out


def student_batch(
    model: torch.nn.Module,
    examples: Sequence[Example],
    cfg: SamplingConfig,
    *,
    eos_token_id: int,
    pad_token_id: int,
    max_length: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> list[Example]:
    """The examples' prompts answered by the current student (on-policy sequences of one step)."""
    prompts = [prompt_ids(e) for e in examples]
    room = max_length - max(len(p) for p in prompts)
    responses = generate(
        model,
        prompts,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        max_new_tokens=max(1, min(cfg.max_new_tokens, room)),
        temperature=cfg.temperature,
        seed=seed,
        batch_size=len(prompts),
        device=device,
    )
    return [with_response(p, r, max_length) for p, r in zip(prompts, responses, strict=True)]


def check_aligned(ground_truth: Sequence[Example], generated: Sequence[Example], where: str) -> None:
    """Teacher-generated data must answer the training prompts one for one, in the same order."""
    if len(ground_truth) != len(generated):
        raise ValueError(
            f"{where}: {len(generated)} examples, but the training data has {len(ground_truth)}; "
            "generate it from the same training file (`atkd generate`)"
        )
    for i, (a, b) in enumerate(zip(ground_truth, generated, strict=True)):
        if prompt_ids(a) != prompt_ids(b):
            raise ValueError(f"{where}: example {i + 1} has a different prompt from the training data's")
