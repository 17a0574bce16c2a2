"""Families whose answer is a draw from a known distribution (brainstorm, its pair, story): the record
keeps every valid answer with its exact probability (`answer_dist`) and `output` is one sample."""

from __future__ import annotations

import itertools
import random

from atkd.data.families.common import Record, WorldContext, make_record, phrasings, sample_answer
from atkd.data.kb import CATEGORIES, article, round_dist

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}

# ------------------------------------------------------------------------------------------- brainstorm
_BRAIN_Q = {
    "one": (("Name {a}.", "Give me {a}."), ("Can you think of {a}?", "Suggest {a}.")),
    "many": (
        ("List {k} {pl} in alphabetical order.", "Name {k} {pl}, sorted alphabetically."),
        ("Suggest {k} {pl}, in alphabetical order.", "Think of {k} {pl} and sort them alphabetically."),
    ),
    "one_excl": (
        ("Name {a} that is not in the list.", "Give me {a} not in this list."),
        ("Suggest {a} missing from the list.", "Think of {a} that the list lacks."),
    ),
    "many_excl": (
        (
            "List {k} {pl} not in the list, in alphabetical order.",
            "Name {k} other {pl}, sorted alphabetically.",
        ),
        (
            "Suggest {k} {pl} missing from the list, sorted alphabetically.",
            "Think of {k} more {pl} and sort them alphabetically.",
        ),
    ),
}


def subset_dist(weights: dict[str, float], k: int) -> dict[str, float]:
    """Exact distribution of an alphabetically sorted k-subset drawn item by item without replacement,
    each draw proportional to `weights` among the items not yet drawn (k = 1: the renormalised weights)."""
    items = list(weights)
    probs: dict[str, float] = {}
    for perm in itertools.permutations(items, k):
        p, left = 1.0, sum(weights.values())
        for it in perm:
            p *= weights[it] / left
            left -= weights[it]
        key = ", ".join(sorted(perm))
        probs[key] = probs.get(key, 0.0) + p
    return round_dist(sorted(probs.items()))


def gen_brainstorm(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    label = rng.choice(list(CATEGORIES))
    dist = ctx.category_dist(label)
    pl = ctx.kb["categories"][label]["plural"]
    k_max = 4 if variant == "long" else 3
    k = rng.choice(range(1, k_max + 1))
    if variant == "long" or (heldout and variant == "base"):
        # Evaluation avoids the tiny exclusion-free prompt space that training repeats.
        n_excl = rng.randint(1, 3 if variant == "long" else 2)
    else:
        n_excl = rng.choice((0, 0, 1, 2))
    excluded = sorted(rng.sample(list(dist), n_excl))
    weights = {w: p for w, p in dist.items() if w not in excluded}
    answer_dist = subset_dist(weights, k)
    kind = ("one" if k == 1 else "many") + ("_excl" if excluded else "")
    q = rng.choice(phrasings(_BRAIN_Q, kind, variant)).format(a=article(label), k=_NUMBER_WORDS[k], pl=pl)
    return make_record(
        "brainstorm",
        q,
        sample_answer(rng, answer_dist),
        {"kind": "dist"},
        input=", ".join(excluded),
        answer_dist=answer_dist,
        reservable=bool(excluded) or variant != "base",
    )


def gen_brainstorm_pair(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Composition of two brainstorm draws: "Name a fruit and a tool." (independent, product distribution),
    optionally avoiding listed items (as in the training brainstorm family)."""
    l1, l2 = rng.sample(list(CATEGORIES), 2)
    d1, d2 = ctx.category_dist(l1), ctx.category_dist(l2)
    excluded = [x for d in (d1, d2) if rng.random() < 0.5 for x in rng.sample(list(d), 1)]
    d1 = {x: p for x, p in d1.items() if x not in excluded}
    d2 = {x: p for x, p in d2.items() if x not in excluded}
    answer_dist = round_dist([(f"{x} and {y}", p * q) for x, p in d1.items() for y, q in d2.items()])
    if excluded:
        tmpl = rng.choice(("Name {a} and {b} not in the list.", "Give me {a} and {b} not in this list."))
    else:
        tmpl = rng.choice(("Name {a} and {b}.", "Give me {a} and {b}."))
    q = tmpl.format(a=article(l1), b=article(l2))
    return make_record(
        "brainstorm_pair",
        q,
        sample_answer(rng, answer_dist),
        {"kind": "dist"},
        input=", ".join(excluded),
        answer_dist=answer_dist,
    )


# ------------------------------------------------------------------------------------------------ story
_STORY_Q = (
    ("Write a short story about {p} and {a}.", "Tell a short story about {p} and {a}."),
    ("Make up a tiny tale about {p} and {a}.", "Can you tell me a story with {p} and {a}?"),
)


def story_dist(ctx: WorldContext, person: str, animal: str) -> dict[str, float]:
    """Exact distribution of the story about `person` and `animal`: place | animal, activity | place,
    ending | activity (a Markov chain), and, when `person` is in the KB, their home city (a fact: the one
    knowledge-bearing span of the story)."""
    story = ctx.kb["story"]
    city = ctx.person_city.get(person)
    home = f"{person} went home to {city}" if city else f"{person} went home"
    pairs = []
    for place, p_place in story["place_given_animal"][animal].items():
        for act, p_act in story["activity_given_place"][place].items():
            for end, p_end in story["ending_given_activity"][act].items():
                text = f"{person} met {article(animal)} by the {place}. Together they {act}."
                text += f" Then {home}, {end}."
                pairs.append((text, p_place * p_act * p_end))
    return round_dist(pairs)


def gen_story(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    person = rng.choice(ctx.persons)["name"]
    animal = rng.choice(CATEGORIES["animal"][1])
    q = rng.choice(_STORY_Q[1] if variant == "para" else _STORY_Q[0]).format(p=person, a=article(animal))
    answer_dist = story_dist(ctx, person, animal)
    return make_record("story", q, sample_answer(rng, answer_dist), {"kind": "dist"}, answer_dist=answer_dist)
