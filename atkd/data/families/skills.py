"""Families of skills that need no knowledge: arithmetic, list transformations, classification,
logic and numbers read from a passage."""

from __future__ import annotations

import random

from atkd.data.families.common import Record, WorldContext, make_record, phrasings
from atkd.data.kb import CATEGORIES, COUNTABLE, article, plural

# ------------------------------------------------------------------------------------------- arithmetic
_ARITH_Q = {
    "add": (
        (
            "{n} has {a} {x} and buys {b} more. How many {x} now?",
            "{n} had {a} {x} and found {b} more. How many {x} now?",
        ),
        (
            "If {n} owns {a} {x} and gets {b} more, how many {x} does {n} own?",
            "Start with {a} {x}; {n} adds {b}. How many {x} now?",
        ),
    ),
    "sub": (
        (
            "{n} has {a} {x} and gives away {b}. How many are left?",
            "{n} had {a} {x} and lost {b}. How many are left?",
        ),
        (
            "If {n} owns {a} {x} and gives {b} away, how many {x} remain?",
            "Start with {a} {x}; {n} removes {b}. How many {x} now?",
        ),
    ),
    "add_sub": (
        ("{n} has {a} {x}, buys {b} more and gives away {c}. How many {x} does {n} have now?",),
        ("{n} has {a} {x}, buys {b} more and gives away {c}. How many {x} does {n} have now?",),
    ),
}


def gen_arithmetic(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    name = rng.choice(ctx.extra_names)
    items = plural(rng.choice(CATEGORIES[rng.choice(COUNTABLE)][1]))
    if variant == "long":
        op, a, b, c = "add_sub", rng.randint(10, 60), rng.randint(1, 9), rng.randint(1, 9)
        result = a + b - c
    elif rng.random() < 0.5:
        op, a, b, c = "add", rng.randint(2, 60), rng.randint(1, 9), 0
        result = a + b
    else:
        op, a, b, c = "sub", rng.randint(10, 69), rng.randint(1, 9), 0
        result = a - b
    q = rng.choice(phrasings(_ARITH_Q, op, variant)).format(n=name, a=a, b=b, c=c, x=items)
    return make_record("arithmetic", q, f"{name} has {result} {items}.", {"kind": "number", "value": result})


# --------------------------------------------------------------------------------------- list transform
_LIST_Q = {
    "reverse": (
        ("Reverse the order of these words.", "Write these words in reverse order."),
        ("List these words from last to first.", "Flip the order of this list."),
    ),
    "sort": (
        ("Sort these words alphabetically.", "Put these words in alphabetical order."),
        ("Arrange these words from A to Z.", "Order this list alphabetically."),
    ),
    "first_letters": (
        ("Write the first letter of each word.", "Give the first letter of every word."),
        ("What letter does each word start with?", "List the initial of each word."),
    ),
    "count": (
        ("How many words are in this list?", "Count the words in this list."),
        ("Tell me the number of words in the list.", "How long is this list in words?"),
    ),
}


def _list_op(op: str, words: list[str]) -> list[str] | int:
    if op == "reverse":
        return words[::-1]
    if op == "sort":
        return sorted(words)
    if op == "first_letters":
        return [w[0] for w in words]
    if op == "count":
        return len(words)
    if op == "sort_reverse":
        return sorted(words, reverse=True)
    if op == "reverse_first_letters":
        return [w[0] for w in words[::-1]]
    raise ValueError(op)


def list_record(family: str, q: str, op: str, words: list[str]) -> Record:
    result = _list_op(op, words)
    if isinstance(result, int):
        out = f"There are {result} words."
        return make_record(family, q, out, {"kind": "number", "value": result}, input=", ".join(words))
    return make_record(
        family,
        q,
        ", ".join(result),
        {"kind": "list", "items": result, "ordered": True},
        input=", ".join(words),
    )


def gen_list_transform(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    op = rng.choice(("reverse", "sort", "first_letters", "count"))
    n = rng.randint(5, 7) if variant == "long" else rng.randint(3, 4)
    words = rng.sample(ctx.words, n)
    q = rng.choice(phrasings(_LIST_Q, op, variant))
    return list_record("list_transform", q, op, words)


# --------------------------------------------------------------------------------------- classification
_CLASS_Q = {
    "category": (
        ("Which category does {w} belong to? Choose from: {o}.", "Classify {w} as {o}."),
        ("Tell me whether {w} is {o}.", "Pick the right category for {w}: {o}."),
    ),
    "sentiment": (
        ("Is this review positive or negative?", "Classify the sentiment of this review."),
        ("Does this review sound positive or negative?", "Tell me if the review is positive or negative."),
    ),
}
_REVIEW_THINGS = ("soup", "film", "hotel", "song", "book", "game", "trip", "class")
_POSITIVE = ("great", "lovely", "wonderful", "fun", "excellent")
_NEGATIVE = ("awful", "boring", "terrible", "bad", "dull")
_INTENSIFIERS = ("", "very ", "really ", "quite ")


def gen_classification(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    if rng.random() < 0.6:
        label = rng.choice(list(CATEGORIES))
        word = rng.choice(CATEGORIES[label][1])
        options = [label] + rng.sample([c for c in CATEGORIES if c != label], 2)
        rng.shuffle(options)
        q = rng.choice(phrasings(_CLASS_Q, "category", variant)).format(w=word, o=_or_list(options))
        out = f"{word.capitalize()} is {article(label)}."
        return make_record("classification", q, out, {"kind": "exact", "keys": [label]})
    positive = rng.random() < 0.5
    adjs = _POSITIVE if positive else _NEGATIVE
    n = 2 if variant == "long" else 1
    things = rng.sample(_REVIEW_THINGS, n)
    review = " ".join(f"The {t} was {rng.choice(_INTENSIFIERS)}{rng.choice(adjs)}." for t in things)
    label = "positive" if positive else "negative"
    q = rng.choice(phrasings(_CLASS_Q, "sentiment", variant))
    out = f"The review is {label}."
    return make_record("classification", q, out, {"kind": "exact", "keys": [label]}, input=review)


def _or_list(options: list[str]) -> str:
    return ", ".join(options[:-1]) + " or " + options[-1]


# ------------------------------------------------------------------------------------------------ logic
_LOGIC_Q = {
    "swap": (
        ("{a} has {x} and {b} has {y}. They swap. What does {a} have now?",),
        ("{a} holds {x} and {b} holds {y}. After they trade, what does {a} hold?",),
    ),
    "bool": (("What is {e}?", "Evaluate: {e}"), ("Is {e} True or False?", "Work out {e}.")),
    "compare": (("{a} is {adj} than {b}. Who is {q}?",), ("Given that {a} is {adj} than {b}, who is {q}?",)),
}
COMPARATIVES = (("taller", "shorter"), ("older", "younger"), ("faster", "slower"))


def gen_logic(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    # Single-operator boolean prompts form a tiny space (20 prompts) that training repeats: never held out.
    kind = rng.choice(("swap", "compare") if heldout and variant == "base" else ("swap", "bool", "compare"))
    tmpl = rng.choice(phrasings(_LOGIC_Q, kind, variant))
    if kind == "swap":
        a, b = rng.sample(ctx.extra_names, 2)
        x, y = rng.sample(ctx.objects, 2)
        q = tmpl.format(a=a, b=b, x=article(x), y=article(y))
        return make_record("logic", q, f"{a} has {article(y)}.", {"kind": "exact", "keys": [y]})
    if kind == "bool":
        if rng.random() < 0.25:
            v = rng.choice((True, False))
            expr, value = f"not {v}", not v
        else:
            v1, v2 = rng.choice((True, False)), rng.choice((True, False))
            op = rng.choice(("and", "or"))
            expr, value = f"{v1} {op} {v2}", (v1 and v2) if op == "and" else (v1 or v2)
        return make_record(
            "logic",
            tmpl.format(e=expr),
            str(value),
            {"kind": "exact", "keys": [str(value)]},
            reservable=variant != "base",
        )
    a, b = rng.sample(ctx.extra_names, 2)
    more, less = rng.choice(COMPARATIVES)
    ask_more = rng.random() < 0.5
    q = tmpl.format(a=a, b=b, adj=more, q=more if ask_more else less)
    answer = a if ask_more else b
    out = f"{answer} is {more if ask_more else less}."
    return make_record("logic", q, out, {"kind": "exact", "keys": [answer]})


# ---------------------------------------------------------------------------------- passage numbers
def number_passage(rng: random.Random, ctx: WorldContext) -> tuple[list[tuple[str, int, str]], str, str]:
    """A passage of who-has-how-many: 3-5 people with distinct counts (2-20) of two item kinds. The first
    kind is held by 2, 3 or 4 of them, uniformly (so "how many people have ..." is answered by reading,
    not by a prior; world v5 held it by exactly two in 64% of passages), the second by at least one.
    Returns (holdings, main kind, passage text)."""
    m = rng.randint(2, 4)
    n = rng.randint(max(3, m + 1), 5)
    names = rng.sample(ctx.extra_names, n)
    kinds = [plural(w) for w in rng.sample(CATEGORIES[rng.choice(COUNTABLE)][1], 2)]
    holder_kind = [kinds[0]] * m + [kinds[1]] * (n - m)
    rng.shuffle(holder_kind)
    counts = rng.sample(range(2, 21), n)  # distinct, so comparisons are never ties
    holdings = list(zip(names, counts, holder_kind))
    return holdings, kinds[0], " ".join(f"{p} has {c} {k}." for p, c, k in holdings)


_NUMBERS_Q = {
    "lookup": (
        ("How many {x} does {a} have?", "What number of {x} does {a} have?"),
        ("Tell me how many {x} {a} owns.", "Count the {x} that belong to {a}."),
    ),
    "compare": (
        ("Who has more {x}, {a} or {b}?", "Which of {a} and {b} has more {x}?"),
        ("Between {a} and {b}, who owns more {x}?", "Does {a} or {b} have the larger number of {x}?"),
    ),
    "count": (
        ("How many people have {x}?", "How many of them have {x}?"),
        ("Count the people who own {x}.", "Tell me how many people have some {x}."),
    ),
}


def gen_passage_numbers(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Reading numbers in a passage: one person's count, who of two has more, how many people hold a kind
    (the skills the DROP stand-in's lookup, compare and count questions ask as multiple choice)."""
    holdings, main, passage = number_passage(rng, ctx)
    holders = [(p, c) for p, c, k in holdings if k == main]
    (a, ca), (b, cb) = rng.sample(holders, 2)
    kind = rng.choice(tuple(_NUMBERS_Q))
    q = rng.choice(phrasings(_NUMBERS_Q, kind, variant)).format(x=main, a=a, b=b)
    if kind == "lookup":
        return make_record(
            "passage_numbers", q, f"{a} has {ca} {main}.", {"kind": "number", "value": ca}, passage
        )
    if kind == "compare":
        win = a if ca > cb else b
        return make_record(
            "passage_numbers", q, f"{win} has more {main}.", {"kind": "exact", "keys": [win]}, passage
        )
    n = len(holders)
    out = f"{n} people have {main}."
    return make_record("passage_numbers", q, out, {"kind": "number", "value": n}, passage)
