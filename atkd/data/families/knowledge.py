"""Families that ask what the knowledge base holds: open and closed QA, extraction, summaries and
descriptions of people. A model answers them only from facts it memorised in pre-training (open QA,
describe) or read in the input (closed QA, extraction, summarization)."""

from __future__ import annotations

import random
from typing import Any

from atkd.data.families.common import Record, WorldContext, join_names, make_record, phrasings
from atkd.data.kb import CATEGORIES, COUNTABLE, STORY_PLACES, article, plural
from atkd.data.template import format_prompt

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
            for t in phrasings(_OPEN_QA_Q, attr, variant)
            if not cycle or format_prompt(t.format(p=subject)) not in ctx.reserved
        ]
        if free:
            break
    else:
        raise RuntimeError("every training phrasing of every KB fact is held out; raise n_entities")
    q = rng.choice(free)
    answer = fact_answer(attr, subject, value)
    judge = {"kind": "exact", "keys": [str(value)]}
    return make_record("open_qa", q, answer, judge, subject=subject, attribute=attr)


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
    q = rng.choice(phrasings(_CLOSED_QA_Q, attr, variant)).format(p=names[target])
    answer = {"job": "{p} is {av}.", "city": "{p} is from {v}.", "pet": "{p} has {av}."}[attr]
    answer = answer.format(p=names[target], v=value, av=article(value))
    return make_record("closed_qa", q, answer, {"kind": "exact", "keys": [value]}, input=" ".join(sentences))


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
        q = rng.choice(phrasings(_EXTRACT_Q, "people", variant))
        return make_record(
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
        text = f"{name} bought {parts[0]} and {parts[1]}. Later {name} sold {join_names(parts[2:])}."
    q = rng.choice(phrasings(_EXTRACT_Q, "numbers", variant))
    return make_record(
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
    return make_record(
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
    return make_record("describe", q, describe_answer(person), {"kind": "exact", "keys": keys})
