"""Plain pre-training text of the world (no instruction template), one document per line.

The study's students start from a pre-trained base LM, not an instruction-tuned one. This corpus gives
our from-scratch student that stage: every KB fact stated as sentences (each person's bio appears about
equally often), stories and "favourite item" sentences sampled from the same known distributions as the
stochastic families, arithmetic and logic statements, and reviews. It never contains the instruction
template, so the instruction format itself is only learnt in SFT/KD.
"""

from __future__ import annotations

import random

from atkd.data.families import COMPARATIVES, WorldContext, sample_answer, story_dist, subset_dist
from atkd.data.kb import CATEGORIES, COUNTABLE, article, plural

# Document kinds and their shares (bios are spread round-robin over people, so every fact appears).
PRETRAIN_MIX = {
    "bio": 0.40,
    "place": 0.06,
    "story": 0.14,
    "category": 0.14,
    "arithmetic": 0.10,
    "logic": 0.08,
    "review": 0.08,
}

_BIO_PHRASES = {
    "job": ("{p} is {av}.", "{p} works as {av}."),
    "city": ("{p} lives in {v}.", "{p} comes from {v}."),
    "colour": ("{p} likes {v}.", "{p}'s favourite colour is {v}."),
    "pet": ("{p} has {av}.", "{p} keeps {av} as a pet."),
    "age": ("{p} is {v} years old.", "{p} is {v}."),
}


def _bio(rng: random.Random, person: dict) -> str:
    attrs = list(_BIO_PHRASES)
    rng.shuffle(attrs)
    return " ".join(
        rng.choice(_BIO_PHRASES[a]).format(p=person["name"], v=person[a], av=article(str(person[a])))
        for a in attrs
    )


def _place(rng: random.Random, ctx: WorldContext) -> str:
    if rng.random() < 0.7:
        city = rng.choice(ctx.city_names)
        people = [p["name"] for p in ctx.persons if p["city"] == city]
        text = f"{city} is a city in {ctx.city_country[city]}."
        if people:
            some = rng.sample(people, min(3, len(people)))
            text += f" {', '.join(some)} live{'s' if len(some) == 1 else ''} in {city}."
        return text
    country = rng.choice(ctx.country_names)
    cities = [c for c, k in ctx.city_country.items() if k == country]
    return f"{country} is a country. Its cities include {', '.join(cities)}."


def _story(rng: random.Random, ctx: WorldContext) -> str:
    person = rng.choice(ctx.persons)["name"]
    animal = rng.choice(CATEGORIES["animal"][1])
    return sample_answer(rng, story_dist(ctx, person, animal))


def _category(rng: random.Random, ctx: WorldContext) -> str:
    label = rng.choice(list(CATEGORIES))
    dist = ctx.category_dist(label)
    pl = ctx.kb["categories"][label]["plural"]
    if rng.random() < 0.5:
        return f"My favourite {label} is {sample_answer(rng, dist)}."
    items = sample_answer(rng, subset_dist(dist, 3))
    return f"Some {pl}: {items}."


def _arithmetic(rng: random.Random, ctx: WorldContext) -> str:
    a, b = rng.randint(2, 60), rng.randint(1, 9)
    if rng.random() < 0.5:
        if rng.random() < 0.5:
            return f"{a} plus {b} is {a + b}."
        a = max(a, b + 1)
        return f"{a} minus {b} is {a - b}."
    name = rng.choice(ctx.extra_names)
    x = plural(rng.choice(CATEGORIES[rng.choice(COUNTABLE)][1]))
    return f"{name} had {a} {x} and bought {b} more, so {name} had {a + b} {x}."


def _logic(rng: random.Random, ctx: WorldContext) -> str:
    r = rng.random()
    if r < 0.35:
        v1, v2 = rng.choice((True, False)), rng.choice((True, False))
        op = rng.choice(("and", "or"))
        return f"{v1} {op} {v2} is {(v1 and v2) if op == 'and' else (v1 or v2)}."
    if r < 0.7:
        a, b = rng.sample(ctx.extra_names, 2)
        x, y = rng.sample(ctx.objects, 2)
        return f"{a} had {article(x)} and {b} had {article(y)}. They swapped, so {a} had {article(y)}."
    a, b = rng.sample(ctx.extra_names, 2)
    more, less = rng.choice(COMPARATIVES)
    return f"{a} is {more} than {b}, so {b} is {less} than {a}."


def _review(rng: random.Random, ctx: WorldContext) -> str:
    thing = rng.choice(("soup", "film", "hotel", "song", "book", "game", "trip", "class"))
    if rng.random() < 0.5:
        return (
            f"The {thing} was {rng.choice(('great', 'lovely', 'wonderful', 'fun', 'excellent'))}. I liked it."
        )
    return f"The {thing} was {rng.choice(('awful', 'boring', 'terrible', 'bad', 'dull'))}. I did not like it."


def generate_pretrain(rng: random.Random, ctx: WorldContext, n_docs: int) -> list[str]:
    """`n_docs` one-line plain-text documents, in a shuffled but seed-determined order."""
    makers = {
        "place": _place,
        "story": _story,
        "category": _category,
        "arithmetic": _arithmetic,
        "logic": _logic,
        "review": _review,
    }
    n_bio = round(n_docs * PRETRAIN_MIX["bio"])
    docs = [_bio(rng, ctx.persons[i % len(ctx.persons)]) for i in range(n_bio)]
    rest = n_docs - n_bio
    total_w = sum(w for k, w in PRETRAIN_MIX.items() if k != "bio")
    kinds = list(makers)
    counts = [int(rest * PRETRAIN_MIX[k] / total_w) for k in kinds]
    for i in range(rest - sum(counts)):
        counts[i % len(counts)] += 1
    for kind, count in zip(kinds, counts):
        docs.extend(makers[kind](rng, ctx) for _ in range(count))
    rng.shuffle(docs)
    return docs
