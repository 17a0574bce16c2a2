"""Plain pre-training text of the world (no instruction template), one document per line, or with line
breaks inside documents (`break_lines`).

The study distils from and into *pre-trained* language models. This corpus is that stage for every model
here: the student base and each teacher first learn the world's language from it, then the teachers are
instruction-tuned (the student base is not). What it holds:

- KB facts in varied prose: full biographies, partial ones, narrative mentions ("Tova, the baker from
  Kelvik, ...") and residents of a city, each fact in several phrasings. People are *unequally famous*:
  how often a person is written about follows a Zipf law over a seed-drawn ranking (in the default world
  the most famous person has 1,062 fact documents, the median 49, the least 17), with every person
  written about at least once. A larger model memorises further into
  the tail, as real pre-trained models know more rare facts; `mention_counts` gives each person's count.
- Text drawn from the same known distributions as the stochastic families (stories, favourite items).
- Reading-with-numbers passages, arithmetic, one- and two-step logic, reviews: the skills the
  understanding suites test, stated as plain text.

It never contains the instruction template, so the instruction format is only learnt in SFT/KD. Every
prompt of that template holds line breaks, though, and a base that never saw one predicts the first tokens
after it badly (docs/results/base-newlines-2026-12-07): `break_lines` puts the sentences of a share of
the prose documents on lines of their own, as real pre-training text has them.
"""

from __future__ import annotations

import random
import re
from typing import Any

from atkd.data.families import (
    COMPARATIVES,
    WorldContext,
    number_passage,
    sample_answer,
    story_dist,
    subset_dist,
)
from atkd.data.kb import CATEGORIES, COUNTABLE, article, plural

# Document kinds and their shares. "fact" documents (biographies, mentions, residents) carry the KB.
PRETRAIN_MIX = {
    "fact": 0.50,
    "story": 0.10,
    "category": 0.10,
    "passage": 0.10,
    "arithmetic": 0.08,
    "logic": 0.07,
    "review": 0.05,
}
# Fame of a person: P(write about the person of rank r) is proportional to (r + FAME_OFFSET) ** -FAME_S.
FAME_S = 1.0
FAME_OFFSET = 5

# Several phrasings per fact: {p} person, {v} value, {av} value with its article.
_FACT_PHRASES = {
    "job": ("{p} is {av}.", "{p} works as {av}.", "By trade, {p} is {av}.", "{p} earns a living as {av}."),
    "city": ("{p} lives in {v}.", "{p} comes from {v}.", "{p}'s home is in {v}.", "{p} has a house in {v}."),
    "colour": (
        "{p} likes {v}.",
        "{p}'s favourite colour is {v}.",
        "The colour {p} loves most is {v}.",
        "{p} always wears something {v}.",
    ),
    "pet": ("{p} has {av}.", "{p} keeps {av} as a pet.", "{p}'s pet is {av}.", "{p} looks after {av}."),
    "age": ("{p} is {v} years old.", "{p} is {v}.", "{p}'s age is {v}.", "{p} turned {v} this year."),
}
_ATTRS = tuple(_FACT_PHRASES)


def fame_weights(n: int) -> list[float]:
    """Unnormalised fame of ranks 0..n-1 (see FAME_S, FAME_OFFSET)."""
    return [(r + 1 + FAME_OFFSET) ** -FAME_S for r in range(n)]


def _fact(rng: random.Random, person: dict[str, Any], attr: str) -> str:
    value = str(person[attr])
    return rng.choice(_FACT_PHRASES[attr]).format(p=person["name"], v=value, av=article(value))


def _bio(rng: random.Random, person: dict[str, Any]) -> str:
    """All five facts of a person, in random order and phrasing."""
    attrs = list(_ATTRS)
    rng.shuffle(attrs)
    return " ".join(_fact(rng, person, a) for a in attrs)


def _partial(rng: random.Random, person: dict[str, Any]) -> str:
    """Two or three facts of a person."""
    return " ".join(_fact(rng, person, a) for a in rng.sample(_ATTRS, rng.randint(2, 3)))


def _mention(rng: random.Random, ctx: WorldContext, person: dict[str, Any]) -> str:
    """A narrative sentence pair that states facts in passing."""
    p, job, city = person["name"], person["job"], person["city"]
    place = rng.choice(("market", "river", "library", "harbour", "square"))
    first = rng.choice(
        (
            f"{p}, {article(job)} from {city}, went to the {place}.",
            f"In {city}, {p} the {job} met a friend at the {place}.",
            f"Everyone in {city} knows {p}, the {job}.",
        )
    )
    second = rng.choice(
        (
            f"{p} brought {article(person['pet'])} along.",
            f"At {person['age']}, {p} still likes {person['colour']} best.",
            f"{p} wore {person['colour']} that day.",
            f"{p} is {person['age']} years old.",
        )
    )
    return f"{first} {second}"


def _residents(rng: random.Random, ctx: WorldContext, person: dict[str, Any]) -> str:
    city = person["city"]
    others = [q["name"] for q in ctx.persons if q["city"] == city and q["name"] != person["name"]]
    names = [person["name"], *rng.sample(others, min(2, len(others)))]
    rng.shuffle(names)
    verb = "lives" if len(names) == 1 else "live"
    return f"{city} is a city in {ctx.city_country[city]}. {', '.join(names)} {verb} in {city}."


def _fact_doc(rng: random.Random, ctx: WorldContext, person: dict[str, Any]) -> str:
    r = rng.random()
    if r < 0.35:
        return _bio(rng, person)
    if r < 0.65:
        return _partial(rng, person)
    if r < 0.9:
        return _mention(rng, ctx, person)
    return _residents(rng, ctx, person)


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


def _passage(rng: random.Random, ctx: WorldContext) -> str:
    """A who-has-how-many passage (as DROP and `passage_numbers` write them), then one to three things a
    reader takes from it, each half the time after the question that asks it: a count read back (most
    often), who of two has more, how many people hold a kind, and now and then a sum or a difference.
    World v5 followed a 3-person passage only with a sum, a difference, a comparison or a total, so no
    model saw a count read back before instruction tuning, and none read them well."""
    holdings, main, text = number_passage(rng, ctx)
    holders = [(p, c) for p, c, k in holdings if k == main]
    said = [text]
    for _ in range(rng.randint(1, 3)):
        (a, ca), (b, cb) = rng.sample(holders, 2)
        r = rng.random()
        if r < 0.4:
            p, c, k = rng.choice(holdings)
            q, answer = f"How many {k} does {p} have?", f"{p} has {c} {k}."
        elif r < 0.6:
            win, lose = (a, b) if ca > cb else (b, a)
            q, answer = f"Who has more {main}, {a} or {b}?", f"{win} has more {main} than {lose}."
        elif r < 0.8:
            q, answer = f"How many people have {main}?", f"{len(holders)} people have {main}."
        elif r < 0.9:
            q = f"How many {main} do {a} and {b} have together?"
            answer = f"{a} and {b} have {ca + cb} {main} together."
        else:
            (a, ca), (b, cb) = sorted([(a, ca), (b, cb)], key=lambda x: -x[1])
            q = f"How many more {main} does {a} have than {b}?"
            answer = f"{a} has {ca - cb} more {main} than {b}."
        said += [q, answer] if rng.random() < 0.5 else [answer]
    return " ".join(said)


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
    if r < 0.3:
        v1, v2 = rng.choice((True, False)), rng.choice((True, False))
        op = rng.choice(("and", "or"))
        return f"{v1} {op} {v2} is {(v1 and v2) if op == 'and' else (v1 or v2)}."
    if r < 0.45:
        v = rng.choice((True, False))
        return f"not {v} is {not v}."
    if r < 0.75:
        a, b = rng.sample(ctx.extra_names, 2)
        x, y = rng.sample(ctx.objects, 2)
        return f"{a} had {article(x)} and {b} had {article(y)}. They swapped, so {a} had {article(y)}."
    a, b, c = rng.sample(ctx.extra_names, 3)
    more, less = rng.choice(COMPARATIVES)
    if rng.random() < 0.5:
        return f"{a} is {more} than {b}, so {b} is {less} than {a}."
    return f"{a} is {more} than {b} and {b} is {more} than {c}, so {a} is {more} than {c}."


def _review(rng: random.Random, ctx: WorldContext) -> str:
    thing = rng.choice(("soup", "film", "hotel", "song", "book", "game", "trip", "class"))
    if rng.random() < 0.5:
        return (
            f"The {thing} was {rng.choice(('great', 'lovely', 'wonderful', 'fun', 'excellent'))}. I liked it."
        )
    return f"The {thing} was {rng.choice(('awful', 'boring', 'terrible', 'bad', 'dull'))}. I did not like it."


def generate_pretrain(rng: random.Random, ctx: WorldContext, n_docs: int) -> tuple[list[str], dict[str, int]]:
    """`n_docs` one-line plain-text documents in a seed-determined order, and each person's number of fact
    documents (every person at least one when there are enough fact documents; the rest follow fame)."""
    makers = {
        "story": _story,
        "category": _category,
        "passage": _passage,
        "arithmetic": _arithmetic,
        "logic": _logic,
        "review": _review,
    }
    persons = list(ctx.persons)
    ranking = list(range(len(persons)))
    rng.shuffle(ranking)  # ranking[r] = index of the person of fame rank r
    weights = fame_weights(len(persons))
    n_fact = round(n_docs * PRETRAIN_MIX["fact"])
    subjects = [ranking[i] for i in range(min(n_fact, len(persons)))]
    subjects += rng.choices(ranking, weights=weights, k=n_fact - len(subjects))
    docs = [_fact_doc(rng, ctx, persons[i]) for i in subjects]
    mentions = {p["name"]: 0 for p in persons}
    for i in subjects:
        mentions[persons[i]["name"]] += 1
    rest = n_docs - n_fact
    total_w = sum(w for k, w in PRETRAIN_MIX.items() if k != "fact")
    kinds = list(makers)
    counts = [int(rest * PRETRAIN_MIX[k] / total_w) for k in kinds]
    for i in range(rest - sum(counts)):
        counts[i % len(counts)] += 1
    for kind, count in zip(kinds, counts):
        docs.extend(makers[kind](rng, ctx) for _ in range(count))
    rng.shuffle(docs)
    return docs, mentions


# A sentence ends at ". ", "? " or "! " before a capital or a digit (the world's prose has no abbreviations).
SENTENCE_END = re.compile(r"(?<=[.?!]) (?=[A-Z0-9])")


def break_lines(docs: list[str], rng: random.Random, share: float) -> list[str]:
    """`docs` with the sentences of a `share` of the multi-sentence prose documents on separate lines (one
    draw of `rng` per such document, in order); "Q: ... A: ..." documents and one-sentence documents stay
    as they are."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"pretrain_line_breaks must be between 0 and 1, got {share}")
    out = []
    for doc in docs:
        sentences = [] if doc.startswith("Q: ") else SENTENCE_END.split(doc)
        out.append("\n".join(sentences) if len(sentences) > 1 and rng.random() < share else doc)
    return out
