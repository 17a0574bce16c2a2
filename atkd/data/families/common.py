"""What every family generator shares: the world's lookups (`WorldContext`), the record builder
(`make_record`), drawing one answer from a distribution (`sample_answer`), and the phrasing tables.

A generator is `gen(rng, ctx, variant, heldout) -> record` where the record has `family`, `instruction`,
`input` ("" when none), `output`, `judge` (what the programmatic judge needs, see `atkd.data.judge`)
and, for stochastic families, `answer_dist` (every valid answer with its exact probability; `output` is
a sample from it). Variants:

- "base": the training distribution (also the in-distribution eval suite);
- "long": longer inputs / lists (the Self-Instruct stand-in);
- "para": the same tasks asked with instruction phrasings never used in training (the Koala stand-in).

`heldout=True` (evaluation) forbids the few prompts of tiny prompt spaces ("Name a fruit.", "What is
True and False?"), which training must be free to repeat with fresh samples; such records carry
`_reservable=False`. Every other prompt can be reserved (for evaluation or validation) by the world
generator, which then never lets it into training.

Prompts and answers are kept short on purpose: prompt tokens carry no loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atkd.data.kb import (
    lexicon_words,
    object_words,
)

Record = dict[str, Any]
Generator = Callable[[random.Random, "WorldContext", str, bool], Record]


@dataclass
class WorldContext:
    """The KB with the lookups the generators need, plus one world's generation state (the fact
    cycle and the shared set of held-out prompts). One context per `generate_world` call."""

    kb: dict[str, Any]
    persons: list[dict[str, Any]] = field(init=False)
    city_country: dict[str, str] = field(init=False)
    city_names: list[str] = field(init=False)
    country_names: list[str] = field(init=False)
    extra_names: list[str] = field(init=False)
    person_city: dict[str, str] = field(init=False)
    words: list[str] = field(init=False)
    objects: list[str] = field(init=False)
    # Training draws KB facts round-robin over a shuffled list (every fact equally often, instead of
    # the ~7% of facts that uniform draws would leave out of an epoch).
    fact_queue: list[tuple[str, str, Any]] = field(init=False, default_factory=list)
    # Prompts held out for evaluation/validation (shared with the world generator), so the fact cycle
    # can pick a phrasing that is still free instead of losing the fact's turn.
    reserved: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.persons = self.kb["persons"]
        self.city_country = {c["name"]: c["country"] for c in self.kb["cities"]}
        self.city_names = [c["name"] for c in self.kb["cities"]]
        self.country_names = [c["name"] for c in self.kb["countries"]]
        self.extra_names = self.kb["extra_names"]
        self.person_city = {p["name"]: p["city"] for p in self.persons}
        self.words = lexicon_words()
        self.objects = object_words()

    def category_dist(self, label: str) -> dict[str, float]:
        return self.kb["categories"][label]["dist"]


def make_record(
    family: str,
    instruction: str,
    output: str,
    judge: dict[str, Any],
    input: str = "",
    answer_dist: dict[str, float] | None = None,
    reservable: bool = True,
    **extra: Any,
) -> Record:
    """One record, its fields in the world files' order (`_reservable` is dropped when written)."""
    rec: Record = {"family": family, "instruction": instruction, "input": input, "output": output}
    rec.update(extra)
    rec["judge"] = judge
    if answer_dist is not None:
        rec["answer_dist"] = answer_dist
    rec["_reservable"] = reservable
    return rec


def sample_answer(rng: random.Random, dist: dict[str, float]) -> str:
    """Draw one answer from a stored (ordered) distribution."""
    u = rng.random()
    acc = 0.0
    last = ""
    for answer, p in dist.items():
        acc += p
        last = answer
        if u < acc:
            return answer
    return last


def phrasings(
    table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], key: str, variant: str
) -> tuple[str, ...]:
    """The instruction phrasings of `key`: the training ones, or for variant "para" the held-out ones."""
    train, para = table[key]
    return para if variant == "para" else train


def join_names(names: list[str]) -> str:
    """Names joined as "A", "A and B" or "A, B and C"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
