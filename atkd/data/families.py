"""Instruction families of the synthetic world: one generator per family, each drawing one record.

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

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atkd.data.kb import (
    CATEGORIES,
    COUNTABLE,
    STORY_PLACES,
    article,
    lexicon_words,
    object_words,
    plural,
    round_dist,
)
from atkd.data.template import format_prompt

Record = dict[str, Any]
Generator = Callable[[random.Random, "WorldContext", str, bool], Record]

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


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


def _record(
    family: str,
    instruction: str,
    output: str,
    judge: dict[str, Any],
    input: str = "",
    answer_dist: dict[str, float] | None = None,
    reservable: bool = True,
    **extra: Any,
) -> Record:
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


def _templates(table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], key: str, variant: str):
    train, para = table[key]
    return para if variant == "para" else train


def _join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---------------------------------------------------------------------------------------------- open QA
# attribute -> (training phrasings, paraphrases used only by the Koala stand-in)
_OPEN_QA_Q = {
    "city": (
        ("Where does {p} live?", "Which city does {p} live in?", "In which city does {p} live?"),
        ("Tell me where {p} lives.", "What is {p}'s home city?"),
    ),
    "job": (
        ("What is {p}'s job?", "What does {p} do for work?", "What work does {p} do?"),
        ("Tell me {p}'s job.", "What is the occupation of {p}?"),
    ),
    "colour": (
        ("What is {p}'s favourite colour?", "Which colour does {p} like?", "What colour does {p} like best?"),
        ("Tell me {p}'s favourite colour.", "What colour does {p} prefer?"),
    ),
    "pet": (
        ("What pet does {p} have?", "Which animal does {p} keep?", "What animal does {p} have as a pet?"),
        ("Tell me what pet {p} owns.", "What kind of pet does {p} own?"),
    ),
    "age": (
        ("How old is {p}?", "What age is {p}?", "What is {p}'s age?"),
        ("Tell me the age of {p}.", "How many years old is {p}?"),
    ),
    "country": (
        ("In which country is {p}?", "Which country is {p} in?", "What country is {p} in?"),
        ("Tell me the country of {p}.", "{p} lies in which country?"),
    ),
}


def fact_answer(attr: str, subject: str, value: Any) -> str:
    """The open-QA answer sentence for a KB fact (also the first phrasing of the pre-training bios)."""
    return {
        "city": "{s} lives in {v}.",
        "job": "{s} is {av}.",
        "colour": "{s} likes {v}.",
        "pet": "{s} has {av}.",
        "age": "{s} is {v} years old.",
        "country": "{s} is in {v}.",
    }[attr].format(s=subject, v=value, av=article(str(value)))


def kb_facts(ctx: WorldContext) -> list[tuple[str, str, Any]]:
    """Every KB fact as (attribute, subject, value), in KB order."""
    facts = [(a, p["name"], p[a]) for p in ctx.persons for a in ("city", "job", "colour", "pet", "age")]
    return facts + [("country", c, ctx.city_country[c]) for c in ctx.city_names]


def _next_fact(rng: random.Random, ctx: WorldContext, cycle: bool) -> tuple[str, str, Any]:
    """A KB fact: uniformly random, or (cycle) the next one of a reshuffled round-robin."""
    if not cycle:
        return rng.choice(kb_facts(ctx))
    if not ctx.fact_queue:
        ctx.fact_queue = kb_facts(ctx)
        rng.shuffle(ctx.fact_queue)
    return ctx.fact_queue.pop()


def gen_open_qa(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    cycle = not heldout and variant == "base"
    for _ in range(len(ctx.fact_queue) + len(ctx.persons) * 5 + len(ctx.city_names) + 1):
        attr, subject, value = _next_fact(rng, ctx, cycle)
        free = [
            t.format(p=subject)
            for t in _templates(_OPEN_QA_Q, attr, variant)
            if not cycle or format_prompt(t.format(p=subject)) not in ctx.reserved
        ]
        if free:
            break
    else:
        raise RuntimeError("every training phrasing of every KB fact is held out; raise n_entities")
    q = rng.choice(free)
    answer = fact_answer(attr, subject, value)
    judge = {"kind": "exact", "keys": [str(value)]}
    return _record("open_qa", q, answer, judge, subject=subject, attribute=attr)


# -------------------------------------------------------------------------------------------- closed QA
_CLOSED_QA_Q = {
    "job": (
        ("What is {p}'s job?", "What does {p} do?"),
        ("What does {p} do for a living?", "Name the job of {p}."),
    ),
    "city": (
        ("Where is {p} from?", "Which city is {p} from?"),
        ("What city does {p} come from?", "Name the home town of {p}."),
    ),
    "pet": (
        ("What pet does {p} have?", "Which animal does {p} have?"),
        ("Which animal does {p} keep?", "Name the pet of {p}."),
    ),
}


def gen_closed_qa(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    n = 3 if variant == "long" else rng.choice((1, 2))
    names = rng.sample(ctx.extra_names, n)
    jobs = rng.sample(ctx.kb["professions"], n)
    cities = rng.sample(ctx.city_names, n)
    pets = rng.sample(CATEGORIES["animal"][1], n)
    with_pet = [variant == "long" or rng.random() < 0.5 for _ in range(n)]
    sentences = []
    for i in range(n):
        sentences.append(f"{names[i]} is {article(jobs[i])} from {cities[i]}.")
        if with_pet[i]:
            sentences.append(f"{names[i]} has {article(pets[i])}.")
    target = rng.randrange(n)
    attrs = ["job", "city"] + (["pet"] if with_pet[target] else [])
    attr = rng.choice(attrs)
    value = {"job": jobs, "city": cities, "pet": pets}[attr][target]
    q = rng.choice(_templates(_CLOSED_QA_Q, attr, variant)).format(p=names[target])
    answer = {"job": "{p} is {av}.", "city": "{p} is from {v}.", "pet": "{p} has {av}."}[attr]
    answer = answer.format(p=names[target], v=value, av=article(value))
    return _record("closed_qa", q, answer, {"kind": "exact", "keys": [value]}, input=" ".join(sentences))


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
    q = rng.choice(_templates(_ARITH_Q, op, variant)).format(n=name, a=a, b=b, c=c, x=items)
    return _record("arithmetic", q, f"{name} has {result} {items}.", {"kind": "number", "value": result})


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


def _list_record(family: str, q: str, op: str, words: list[str]) -> Record:
    result = _list_op(op, words)
    if isinstance(result, int):
        out = f"There are {result} words."
        return _record(family, q, out, {"kind": "number", "value": result}, input=", ".join(words))
    return _record(
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
    q = rng.choice(_templates(_LIST_Q, op, variant))
    return _list_record("list_transform", q, op, words)


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
        q = rng.choice(_templates(_CLASS_Q, "category", variant)).format(w=word, o=_or_list(options))
        out = f"{word.capitalize()} is {article(label)}."
        return _record("classification", q, out, {"kind": "exact", "keys": [label]})
    positive = rng.random() < 0.5
    adjs = _POSITIVE if positive else _NEGATIVE
    n = 2 if variant == "long" else 1
    things = rng.sample(_REVIEW_THINGS, n)
    review = " ".join(f"The {t} was {rng.choice(_INTENSIFIERS)}{rng.choice(adjs)}." for t in things)
    label = "positive" if positive else "negative"
    q = rng.choice(_templates(_CLASS_Q, "sentiment", variant))
    out = f"The review is {label}."
    return _record("classification", q, out, {"kind": "exact", "keys": [label]}, input=review)


def _or_list(options: list[str]) -> str:
    return ", ".join(options[:-1]) + " or " + options[-1]


# ------------------------------------------------------------------------------------------- extraction
_EXTRACT_Q = {
    "people": (
        ("List the people mentioned in the text.", "Who is mentioned in the text?"),
        ("Name everyone who appears in the text.", "Which people does the text talk about?"),
    ),
    "numbers": (
        ("List the numbers in the text.", "Extract all numbers from the text."),
        ("Which numbers appear in the text?", "Write down every number in the text."),
    ),
}


def _people_text(rng: random.Random, ctx: WorldContext, names: list[str]) -> str:
    sentences, i = [], 0
    while i < len(names):
        if i + 1 < len(names) and rng.random() < 0.6:
            a, b = names[i], names[i + 1]
            pattern = rng.choice(
                ("{a} met {b} in {c}.", "{a} gave {w} to {b}.", "{a} and {b} went to the {pl}.")
            )
            i += 2
        else:
            a, b = names[i], ""
            pattern = rng.choice(("{a} stayed in {c}.", "{a} saw {an}.", "{a} bought {w}."))
            i += 1
        sentences.append(
            pattern.format(
                a=a,
                b=b,
                c=rng.choice(ctx.city_names),
                w=article(rng.choice(ctx.objects)),
                an=article(rng.choice(CATEGORIES["animal"][1])),
                pl=rng.choice(STORY_PLACES),
            )
        )
    return " ".join(sentences)


def gen_extraction(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    long = variant == "long"
    if rng.random() < 0.6:
        names = rng.sample(ctx.extra_names, rng.randint(4, 5) if long else rng.randint(2, 3))
        text = _people_text(rng, ctx, names)
        q = rng.choice(_templates(_EXTRACT_Q, "people", variant))
        return _record(
            "extraction", q, ", ".join(names), {"kind": "list", "items": names, "ordered": False}, input=text
        )
    n = rng.randint(3, 4) if long else 2
    numbers = [str(x) for x in rng.sample(range(1, 100), n)]
    name = rng.choice(ctx.extra_names)
    items = [plural(w) for w in rng.sample(CATEGORIES[rng.choice(COUNTABLE)][1], n)]
    parts = [f"{x} {w}" for x, w in zip(numbers, items)]
    if n == 2:
        text = f"{name} bought {parts[0]} and {parts[1]}."
    else:
        text = f"{name} bought {parts[0]} and {parts[1]}. Later {name} sold {_join_names(parts[2:])}."
    q = rng.choice(_templates(_EXTRACT_Q, "numbers", variant))
    return _record(
        "extraction", q, ", ".join(numbers), {"kind": "list", "items": numbers, "ordered": False}, input=text
    )


# ---------------------------------------------------------------------------------------- summarization
_SUMMARY_Q = (
    ("Summarise the text in one sentence.", "Write a one-sentence summary."),
    ("Sum up this text in a single sentence.", "Condense the text into one sentence."),
)


def summary_sentence(name: str, facts: dict[str, Any]) -> str:
    """Canonical one-sentence summary of a person's facts (job is always present)."""
    head = f"{name} is "
    head += f"a {facts['age']}-year-old {facts['job']}" if "age" in facts else article(facts["job"])
    if "city" in facts:
        head += f" from {facts['city']}"
    tails = []
    if "pet" in facts:
        tails.append(f"has {article(facts['pet'])}")
    if "colour" in facts:
        tails.append(f"likes {facts['colour']}")
    return head + (" who " + " and ".join(tails) if tails else "") + "."


def gen_summarization(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    name = rng.choice(ctx.extra_names)
    all_facts = {
        "job": rng.choice(ctx.kb["professions"]),
        "city": rng.choice(ctx.city_names),
        "pet": rng.choice(CATEGORIES["animal"][1]),
        "age": rng.randint(20, 69),
        "colour": rng.choice(CATEGORIES["colour"][1]),
    }
    k = rng.randint(3, 4) if variant == "long" else rng.randint(1, 2)
    chosen = ["job"] + rng.sample(["city", "pet", "age", "colour"], k)
    facts = {a: all_facts[a] for a in ("job", "city", "pet", "age", "colour") if a in chosen}
    stated = {
        "job": f"{name} works as {article(str(facts.get('job')))}.",
        "city": f"{name} lives in {facts.get('city')}.",
        "pet": f"{name} has {article(str(facts.get('pet')))}.",
        "age": f"{name} is {facts.get('age')} years old.",
        "colour": f"{name}'s favourite colour is {facts.get('colour')}.",
    }
    order = list(facts)
    rng.shuffle(order)
    text = " ".join(stated[a] for a in order)
    q = rng.choice(_SUMMARY_Q[1] if variant == "para" else _SUMMARY_Q[0])
    keys = [name] + [str(facts[a]) for a in facts]
    return _record(
        "summarization", q, summary_sentence(name, facts), {"kind": "exact", "keys": keys}, input=text
    )


# -------------------------------------------------------------------------------------------- describe
_DESCRIBE_Q = (
    ("Tell me about {p}.", "Who is {p}?", "Describe {p}."),
    ("What do you know about {p}?", "Give me a short profile of {p}."),
)


def describe_answer(person: dict[str, Any]) -> str:
    """The profile of a KB person: all five facts in three fixed sentences (a long, knowledge-only answer)."""
    p = person["name"]
    return (
        f"{p} is {article(person['job'])} from {person['city']}. {p} is {person['age']} years old and "
        f"likes {person['colour']}. {p} has {article(person['pet'])}."
    )


def gen_describe(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Everything the KB says about a person: what a pre-trained model knows shows here at length."""
    person = rng.choice(ctx.persons)
    q = rng.choice(_DESCRIBE_Q[1] if variant == "para" else _DESCRIBE_Q[0]).format(p=person["name"])
    keys = [str(person[a]) for a in ("job", "city", "age", "colour", "pet")]
    return _record("describe", q, describe_answer(person), {"kind": "exact", "keys": keys})


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
    q = rng.choice(_templates(_BRAIN_Q, kind, variant)).format(a=article(label), k=_NUMBER_WORDS[k], pl=pl)
    return _record(
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
    return _record(
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
    return _record("story", q, sample_answer(rng, answer_dist), {"kind": "dist"}, answer_dist=answer_dist)


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
    tmpl = rng.choice(_templates(_LOGIC_Q, kind, variant))
    if kind == "swap":
        a, b = rng.sample(ctx.extra_names, 2)
        x, y = rng.sample(ctx.objects, 2)
        q = tmpl.format(a=a, b=b, x=article(x), y=article(y))
        return _record("logic", q, f"{a} has {article(y)}.", {"kind": "exact", "keys": [y]})
    if kind == "bool":
        if rng.random() < 0.25:
            v = rng.choice((True, False))
            expr, value = f"not {v}", not v
        else:
            v1, v2 = rng.choice((True, False)), rng.choice((True, False))
            op = rng.choice(("and", "or"))
            expr, value = f"{v1} {op} {v2}", (v1 and v2) if op == "and" else (v1 or v2)
        return _record(
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
    return _record("logic", q, out, {"kind": "exact", "keys": [answer]})


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
    q = rng.choice(_templates(_NUMBERS_Q, kind, variant)).format(x=main, a=a, b=b)
    if kind == "lookup":
        return _record(
            "passage_numbers", q, f"{a} has {ca} {main}.", {"kind": "number", "value": ca}, passage
        )
    if kind == "compare":
        win = a if ca > cb else b
        return _record(
            "passage_numbers", q, f"{win} has more {main}.", {"kind": "exact", "keys": [win]}, passage
        )
    n = len(holders)
    return _record("passage_numbers", q, f"{n} people have {main}.", {"kind": "number", "value": n}, passage)


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
    return _record("kb_arith", q, out, {"kind": "number", "value": value})


def gen_kb_2hop(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Two KB hops: person -> home city -> country."""
    person = rng.choice(ctx.persons)
    country = ctx.city_country[person["city"]]
    q = rng.choice(("In which country does {p} live?", "Which country is {p}'s home city in?")).format(
        p=person["name"]
    )
    return _record(
        "kb_2hop", q, f"{person['name']} lives in {country}.", {"kind": "exact", "keys": [country]}
    )


def gen_kb_list(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Two KB facts in one answer: the jobs of two people."""
    p1, p2 = rng.sample(ctx.persons, 2)
    q = f"What are the jobs of {p1['name']} and {p2['name']}?"
    out = f"{p1['name']} is {article(p1['job'])} and {p2['name']} is {article(p2['job'])}."
    keys = [p1["job"], p2["job"]]
    return _record("kb_list", q, out, {"kind": "exact", "keys": keys})


def gen_passage_arith(rng: random.Random, ctx: WorldContext, variant: str, heldout: bool) -> Record:
    """Closed QA + arithmetic: add two quantities stated in a passage."""
    a, b = rng.sample(ctx.extra_names, 2)
    x, y = rng.randint(2, 30), rng.randint(2, 30)
    items = plural(rng.choice(CATEGORIES[rng.choice(COUNTABLE)][1]))
    text = f"{a} has {x} {items}. {b} has {y} {items}."
    q = f"How many {items} do {a} and {b} have together?"
    out = f"They have {x + y} {items}."
    return _record("passage_arith", q, out, {"kind": "number", "value": x + y}, input=text)


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
    return _list_record("list_compose", q, op, rng.sample(ctx.words, rng.randint(3, 5)))


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
