"""Wrong references in a share of the training records, as human-written instruction data has them.

`add_reference_noise(records, rng, share)` picks `share` of the records with a checkable answer (judge
kind other than `dist`) at random and gives each a wrong answer of the right form: the answer of a
*donor*, another record of the same family whose answer differs and, unless the answer is a number,
whose instruction has the same skeleton (names and numbers masked) and the same `attribute`. How the
answer changes goes by the record's judge kind:

    exact   one key (a random one of several) replaced, as a whole word, by the donor's key in that slot
            ("Rusa likes yellow." -> "Rusa likes blue."), both keys of one type (number or word)
    number  the value replaced by the donor's value ("Sigu has 35 carrots." -> "Sigu has 57 carrots.")
    list    the whole output replaced by the donor's ("f, j, c, d" -> "t, c, p")
    dist    untouched: a stochastic answer is one sample of many already

The record's `judge` is kept as it was (its keys name the true answer); a noisy record carries
`"noisy": true`. A drawn record with no donor stays clean, so the share of noisy records can fall short
of `share`; the world's manifest counts them per family. A single wrong reference is what a teacher that
knows the truth can correct and SFT cannot; whether a teacher knows it is measured, not assumed
(docs/results/reference-noise-2026-12-07).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from atkd.data.families import Record

_MASK = re.compile(r"\b(?:[A-Z][a-z]+|\d+)\b")


def skeleton(instruction: str) -> str:
    """The instruction with capitalised words and numbers masked: records of one skeleton ask the same
    kind of question about different people, places or quantities."""
    first, _, rest = instruction.partition(" ")
    return first + " " + _MASK.sub("#", rest)


def _replace_word(text: str, old: str, new: str) -> str | None:
    """`text` with every whole-word `old` replaced by `new`; None where `old` does not occur."""
    pattern = re.compile(rf"(?<!\w){re.escape(old)}(?!\w)")
    out, n = pattern.subn(new, text)
    return out if n else None


def _same_type(a: str, b: str) -> bool:
    return a.isdigit() == b.isdigit()


def wrong_output(record: Record, donor: Record, rng: random.Random) -> str | None:
    """`record`'s output with the donor's answer in place of its own, or None where they do not fit."""
    judge, djudge = record["judge"], donor["judge"]
    kind = judge["kind"]
    if kind != djudge["kind"]:
        return None
    if kind == "number":
        old, new = str(judge["value"]), str(djudge["value"])
        return None if old == new else _replace_word(record["output"], old, new)
    if kind == "list":
        return None if donor["output"] == record["output"] else donor["output"]
    if kind == "exact":
        keys, dkeys = judge["keys"], djudge["keys"]
        if len(keys) != len(dkeys):
            return None
        slot = rng.randrange(len(keys))
        old, new = keys[slot], dkeys[slot]
        if old == new or not _same_type(old, new) or new in keys:
            return None
        return _replace_word(record["output"], old, new)
    return None


def _group(record: Record) -> tuple[str, str, Any]:
    """Records that can donate answers to one another: a wrong number fits any question of the family."""
    if record["judge"]["kind"] == "number":
        return record["family"], "", None
    return record["family"], skeleton(record["instruction"]), record.get("attribute")


def add_reference_noise(
    records: Sequence[Record], rng: random.Random, share: float, tries: int = 20
) -> list[Record]:
    """Copies of `records` with a wrong answer in about `share` of them (see the module docstring).

    Deterministic in `rng`'s state; records keep their order. `tries` donors are drawn per record before
    it is left clean."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"reference noise share must be in [0, 1), got {share}")
    out = [dict(r) for r in records]
    if share == 0.0:
        return out
    groups: dict[tuple[str, str, Any], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[_group(r)].append(i)
    checkable = [i for i, r in enumerate(records) if r["judge"]["kind"] != "dist"]
    for i in sorted(rng.sample(checkable, round(share * len(checkable)))):
        rec = records[i]
        group = groups[_group(rec)]
        for _ in range(tries if len(group) > 1 else 0):
            j = group[rng.randrange(len(group))]
            if j == i:
                continue
            wrong = wrong_output(rec, records[j], rng)
            if wrong is not None:  # never the output itself: the donor's answer differs
                out[i] = {**rec, "output": wrong, "noisy": True}
                break
    return out
