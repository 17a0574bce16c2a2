"""The knowledge base and lexicon of the synthetic world.

Everything a model must know about the world lives here: invented people, cities and countries with
attributes (deterministic facts to memorise), and the "preference" distributions behind the stochastic
families (Zipf-like popularity of the items of each category, and the story model). The KB is plain JSON
(`kb.json`), so the ground truth is inspectable and every evaluation score can be traced back to it.

Sizes follow what 2 CPU cores can train: about 300 entities, i.e. ~1,300 facts, which a 0.2-1M parameter model
memorises only partially in minutes (facts accuracy 0.1-0.3): knowledge is the "hard token" part.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

# Zipf exponent of every popularity distribution: p(rank r) proportional to r ** -ZIPF_S.
ZIPF_S = 1.0
# Probabilities are stored with this many decimals (the largest entry absorbs the rounding residual).
PROB_DECIMALS = 6

# Category label -> (plural label, items). Eight items each; item popularity order is drawn per seed.
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "fruit": ("fruits", ("apple", "pear", "plum", "kiwi", "mango", "lemon", "cherry", "grape")),
    "animal": ("animals", ("cat", "dog", "fox", "owl", "horse", "rabbit", "goat", "frog")),
    "colour": ("colours", ("red", "blue", "green", "yellow", "purple", "pink", "brown", "grey")),
    "tool": ("tools", ("hammer", "saw", "drill", "wrench", "shovel", "rake", "axe", "chisel")),
    "vehicle": ("vehicles", ("car", "bus", "boat", "train", "bike", "truck", "plane", "tram")),
    "vegetable": ("vegetables", ("carrot", "onion", "potato", "leek", "pea", "bean", "radish", "cabbage")),
    "instrument": ("instruments", ("drum", "flute", "harp", "violin", "piano", "guitar", "horn", "bell")),
    "drink": ("drinks", ("tea", "coffee", "juice", "milk", "water", "soda", "cocoa", "lemonade")),
}
# Categories whose items can be counted ("3 plums"); used by arithmetic and reading-with-numbers.
COUNTABLE = ("fruit", "vegetable", "tool", "instrument")
_IRREGULAR_PLURALS = {
    "cherry": "cherries",
    "mango": "mangoes",
    "potato": "potatoes",
    "radish": "radishes",
    "bus": "buses",
    "piano": "pianos",
    "fox": "foxes",
    "wrench": "wrenches",
}

PROFESSIONS = (
    "baker",
    "pilot",
    "farmer",
    "teacher",
    "doctor",
    "painter",
    "singer",
    "tailor",
    "sailor",
    "miner",
)
PERSON_ATTRIBUTES = ("city", "job", "colour", "pet", "age")
AGE_RANGE = (20, 69)

# Story model: where a person meets an animal depends on the animal, what they do depends on the place.
STORY_PLACES = ("river", "forest", "hill", "market", "lake")
STORY_ACTIVITIES = ("played a game", "sang a song", "ate some bread", "watched the stars")
STORY_ENDINGS = (
    "feeling happy",
    "feeling tired",
    "humming a tune",
    "thinking about the day",
)

_ONSETS = "bdfghklmnprstvz"
_VOWELS = "aeiou"
_CITY_SUFFIXES = ("vik", "mar", "dal", "ton", "sk", "burg")
_RESERVED_WORDS = {"true", "false", "none", "the", "and"}
# Names must not read as English words ("Some is faster than ..."): person names never end in "e" and
# these common words of the same shape are refused.
_ENGLISH_LOOKALIKES = set(
    "demo hugo lava sofa tuna hero zero menu tofu data kilo solo polo logo memo taxi halo judo limo mini "
    "nova pita sumo toga vita veto tutu tuba diva gala mama papa nana lulu dodo kudo bingo lima mona rosa "
    "sara tina lisa gina nina dana rita hula kimono banana tomato domino bikini safari salami tempo hobo "
    "puma lama samba rumba gusto moto deli radio sushi bonito fido dino lido rio mimosa pagoda saliva "
    "retina sonata tapioca veranda vanilla gorilla paprika pizza mafia coma soma zeta beta delta gamma "
    "kappa sigma toto boba ago ego spa via visa".split()
)


def plural(word: str) -> str:
    """English plural of a lexicon noun."""
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    return word + "s"


def article(word: str) -> str:
    """`word` with its indefinite article ("an apple", "a kiwi")."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def lexicon_words() -> list[str]:
    """Every item word of every category, in a fixed order."""
    return [w for _, items in CATEGORIES.values() for w in items]


def object_words() -> list[str]:
    """Item words that read well as things a person holds ("has a harp"): no colours, no drinks."""
    return [w for label, (_, items) in CATEGORIES.items() if label not in ("colour", "drink") for w in items]


def zipf_probs(n: int, s: float = ZIPF_S) -> list[float]:
    """Normalised Zipf probabilities for ranks 1..n."""
    weights = [1.0 / (r**s) for r in range(1, n + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def round_dist(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Round a distribution to PROB_DECIMALS, fix the residual on the largest entry, and order it
    deterministically (probability descending, then text), so stored distributions sum to 1 and files
    are byte-stable."""
    total = sum(p for _, p in pairs)
    items = sorted(((a, p / total) for a, p in pairs), key=lambda ap: (-ap[1], ap[0]))
    rounded = [(a, round(p, PROB_DECIMALS)) for a, p in items]
    residual = round(1.0 - sum(p for _, p in rounded), PROB_DECIMALS)
    a0, p0 = rounded[0]
    rounded[0] = (a0, round(p0 + residual, PROB_DECIMALS))
    return {a: p for a, p in rounded if p > 0}


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS)


class _NameMaker:
    """Draws unique invented names that never collide with lexicon words or with each other."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = {w.lower() for w in lexicon_words()} | set(_RESERVED_WORDS)
        self.used |= set(PROFESSIONS) | set(STORY_PLACES) | set(CATEGORIES)

    def _unique(self, make) -> str:
        for _ in range(10_000):
            name = make()
            if name and name.lower() not in self.used:
                self.used.add(name.lower())
                return name
        raise RuntimeError("could not draw a new unique name; the name space is exhausted")

    def person(self) -> str:
        def make() -> str:
            n = 2 if self.rng.random() < 0.7 else 3
            name = "".join(_syllable(self.rng) for _ in range(n))
            return "" if name.endswith("e") or name in _ENGLISH_LOOKALIKES else name.capitalize()

        return self._unique(make)

    def city(self) -> str:
        return self._unique(
            lambda: (_syllable(self.rng) + _syllable(self.rng) + self.rng.choice(_CITY_SUFFIXES)).capitalize()
        )

    def country(self) -> str:
        return self._unique(lambda: (_syllable(self.rng) + _syllable(self.rng) + "ria").capitalize())


def _ranked_dist(rng: random.Random, items: Sequence[str]) -> dict[str, float]:
    order = list(items)
    rng.shuffle(order)
    return round_dist(list(zip(order, zipf_probs(len(order)))))


def entity_counts(n_entities: int) -> tuple[int, int, int]:
    """Split `n_entities` into (countries, cities, persons): about 3% / 10% / 87%."""
    if n_entities < 20:
        raise ValueError(f"n_entities must be at least 20, got {n_entities}")
    n_countries = max(4, round(n_entities * 0.03))
    n_cities = max(6, round(n_entities * 0.10))
    return n_countries, n_cities, n_entities - n_countries - n_cities


def build_kb(rng: random.Random, n_entities: int = 300, n_extra_names: int = 300) -> dict[str, Any]:
    """Draw the knowledge base: countries, cities (-> country), persons (-> city, job, favourite colour,
    pet, age), the popularity distribution of every category, the story model, and a pool of extra names
    (people who are *not* in the KB, used in passages so that stated facts never contradict the KB)."""
    n_countries, n_cities, n_persons = entity_counts(n_entities)
    names = _NameMaker(rng)
    countries = [{"name": names.country()} for _ in range(n_countries)]
    cities = []
    for i in range(n_cities):
        # Every country gets at least one city, the rest at random.
        country = countries[i]["name"] if i < n_countries else rng.choice(countries)["name"]
        cities.append({"name": names.city(), "country": country})
    persons = []
    for _ in range(n_persons):
        persons.append(
            {
                "name": names.person(),
                "city": rng.choice(cities)["name"],
                "job": rng.choice(PROFESSIONS),
                "colour": rng.choice(CATEGORIES["colour"][1]),
                "pet": rng.choice(CATEGORIES["animal"][1]),
                "age": rng.randint(*AGE_RANGE),
            }
        )
    categories = {
        label: {"plural": plural_label, "items": list(items), "dist": _ranked_dist(rng, items)}
        for label, (plural_label, items) in CATEGORIES.items()
    }
    story = {
        "places": list(STORY_PLACES),
        "activities": list(STORY_ACTIVITIES),
        "place_given_animal": {a: _ranked_dist(rng, STORY_PLACES) for a in CATEGORIES["animal"][1]},
        "activity_given_place": {p: _ranked_dist(rng, STORY_ACTIVITIES) for p in STORY_PLACES},
        "endings": list(STORY_ENDINGS),
        "ending_given_activity": {a: _ranked_dist(rng, STORY_ENDINGS) for a in STORY_ACTIVITIES},
    }
    extra_names = [names.person() for _ in range(n_extra_names)]
    return {
        "countries": countries,
        "cities": cities,
        "persons": persons,
        "professions": list(PROFESSIONS),
        "categories": categories,
        "story": story,
        "extra_names": extra_names,
        "zipf_s": ZIPF_S,
    }
