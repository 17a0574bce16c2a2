"""Instruction families of the synthetic world: one generator per family, each drawing one record
(common.py says what a generator and a record are). By kind of family:

- knowledge.py: what the knowledge base holds (open and closed QA, extraction, summaries, descriptions);
- skills.py: skills without knowledge (arithmetic, lists, classification, logic, passage numbers);
- stochastic.py: answers drawn from a known distribution (brainstorm, story);
- compositions.py: two skills in one instruction (the WizardLM stand-in).

This module holds the registry (`FAMILIES`) and the mixes that the world generator draws from.
"""

from __future__ import annotations

from atkd.data.families.common import Generator, Record, WorldContext, make_record, sample_answer
from atkd.data.families.compositions import (
    gen_kb_2hop,
    gen_kb_arith,
    gen_kb_list,
    gen_list_compose,
    gen_passage_arith,
)
from atkd.data.families.knowledge import (
    fact_answer,
    gen_closed_qa,
    gen_describe,
    gen_extraction,
    gen_open_qa,
    gen_summarization,
)
from atkd.data.families.skills import (
    COMPARATIVES,
    gen_arithmetic,
    gen_classification,
    gen_list_transform,
    gen_logic,
    gen_passage_numbers,
    number_passage,
)
from atkd.data.families.stochastic import (
    gen_brainstorm,
    gen_brainstorm_pair,
    gen_story,
    story_dist,
    subset_dist,
)

__all__ = [
    "COMPARATIVES",
    "COMPOSITIONS",
    "FAMILIES",
    "PARA_MIX",
    "STOCHASTIC_FAMILIES",
    "TRAIN_MIX",
    "Generator",
    "Record",
    "WorldContext",
    "fact_answer",
    "make_record",
    "number_passage",
    "sample_answer",
    "story_dist",
    "subset_dist",
]

FAMILIES: dict[str, Generator] = {
    "open_qa": gen_open_qa,
    "closed_qa": gen_closed_qa,
    "arithmetic": gen_arithmetic,
    "list_transform": gen_list_transform,
    "classification": gen_classification,
    "extraction": gen_extraction,
    "summarization": gen_summarization,
    "brainstorm": gen_brainstorm,
    "story": gen_story,
    "logic": gen_logic,
    "describe": gen_describe,
    "passage_numbers": gen_passage_numbers,
    # compositions: the WizardLM stand-in, and a small share of training
    "kb_arith": gen_kb_arith,
    "kb_2hop": gen_kb_2hop,
    "kb_list": gen_kb_list,
    "passage_arith": gen_passage_arith,
    "list_compose": gen_list_compose,
    "brainstorm_pair": gen_brainstorm_pair,
}

# The training mix (also the in-distribution eval suite). Stochastic families: brainstorm, story,
# brainstorm_pair. The six
# compositions of two skills (the WizardLM stand-in's families) are 1% each: rare, long-tail instructions
# that a model can learn only with the capacity to spare (world v4 had none; no model of the ladder then
# wrote their answers better than a wrong answer of the right form).
TRAIN_MIX: dict[str, float] = {
    "open_qa": 0.15,
    "describe": 0.07,
    "closed_qa": 0.08,
    "arithmetic": 0.08,
    "list_transform": 0.08,
    "classification": 0.06,
    "extraction": 0.06,
    "summarization": 0.05,
    "brainstorm": 0.09,
    "story": 0.10,
    "logic": 0.07,
    "passage_numbers": 0.05,
    "kb_arith": 0.01,
    "kb_2hop": 0.01,
    "kb_list": 0.01,
    "passage_arith": 0.01,
    "list_compose": 0.01,
    "brainstorm_pair": 0.01,
}
COMPOSITIONS = ("kb_arith", "kb_2hop", "kb_list", "passage_arith", "list_compose", "brainstorm_pair")
# Families with instruction phrasings kept out of training (variant "para"): the Koala stand-in's mix.
PARA_MIX: dict[str, float] = {f: w for f, w in TRAIN_MIX.items() if f not in COMPOSITIONS}
STOCHASTIC_FAMILIES = ("brainstorm", "story", "brainstorm_pair")
