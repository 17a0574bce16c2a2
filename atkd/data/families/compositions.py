"""Compositions of two skills (the WizardLM stand-in's families, 1% each of training): KB facts with
arithmetic, two KB hops, two facts in one answer, passage arithmetic, two list operations."""

from __future__ import annotations

import random

from atkd.data.families.common import Record, WorldContext, make_record
from atkd.data.families.skills import list_record
from atkd.data.kb import CATEGORIES, COUNTABLE, article, plural


# ------------------------------------------------------------------------------ compositions (WizardLM)
def gen_kb_arith(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """KB fact + arithmetic: the age of a KB person some years from now / ago."""
    person = rng.choice(ctx.persons)
    k = rng.randint(2, 9)
    if rng.random() < 0.5:
        q, value, verb = f"How old will {person['name']} be in {k} years?", person["age"] + k, "will be"
    else:
        q, value, verb = f"How old was {person['name']} {k} years ago?", person["age"] - k, "was"
    out = f"{person['name']} {verb} {value} years old."
    return make_record("kb_arith", q, out, {"kind": "number", "value": value})


def gen_kb_2hop(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Two KB hops: person -> home city -> country."""
    person = rng.choice(ctx.persons)
    country = ctx.city_country[person["city"]]
    q = rng.choice(("In which country does {p} live?", "Which country is {p}'s home city in?")).format(
        p=person["name"]
    )
    return make_record(
        "kb_2hop", q, f"{person['name']} lives in {country}.", {"kind": "exact", "keys": [country]}
    )


def gen_kb_list(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Two KB facts in one answer: the jobs of two people."""
    p1, p2 = rng.sample(ctx.persons, 2)
    q = f"What are the jobs of {p1['name']} and {p2['name']}?"
    out = f"{p1['name']} is {article(p1['job'])} and {p2['name']} is {article(p2['job'])}."
    keys = [p1["job"], p2["job"]]
    return make_record("kb_list", q, out, {"kind": "exact", "keys": keys})


def gen_passage_arith(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Closed QA + arithmetic: add two quantities stated in a passage."""
    a, b = rng.sample(ctx.extra_names, 2)
    x, y = rng.randint(2, 30), rng.randint(2, 30)
    items = plural(rng.choice(CATEGORIES[rng.choice(COUNTABLE)][1]))
    text = f"{a} has {x} {items}. {b} has {y} {items}."
    q = f"How many {items} do {a} and {b} have together?"
    out = f"They have {x + y} {items}."
    return make_record("passage_arith", q, out, {"kind": "number", "value": x + y}, input=text)


def gen_list_compose(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Two list transformations in sequence."""
    op, q = rng.choice(
        (
            ("sort_reverse", "Sort these words alphabetically, then reverse the order."),
            (
                "reverse_first_letters",
                "Reverse the order of these words, then write the first letter of each.",
            ),
        )
    )
    return list_record("list_compose", q, op, rng.sample(ctx.words, rng.randint(3, 5)))
