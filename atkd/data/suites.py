"""The eight evaluation suites standing in for the study's eight tasks.

Five generation suites (judged against the world's ground truth, study's ratio score):

- `dolly`    DollyEval stand-in: in-distribution (training family mix and phrasings, held-out prompts).
- `vicuna`   VicunaEval stand-in: shifted family mix towards open-ended chat (stories, brainstorming,
             knowledge questions), where several answers are valid.
- `selfinst` Self-Instruct stand-in: task-with-input families with longer inputs (3-person passages,
             5-7 word lists, 4-5 names or numbers to extract, 4-5 facts to summarise, 3-step arithmetic).
- `koala`    Koala stand-in: the training families asked with instruction phrasings never seen in training.
- `wizardlm` WizardLM stand-in: compositions of two skills (KB fact + arithmetic, two KB hops, two facts in
             one answer, passage reading + arithmetic, two list operations, two brainstorm draws); each is
             1% of the training mix, a long tail that only models with capacity to spare learn.

Three understanding suites (accuracy), each multiple choice with its own few-shot pool:

- `mmlu` 4 options over KB facts (5-shot in the study; the options are not listed in the question).
- `drop` reading comprehension with numbers over a 3-5-person passage (3-shot): reading one count,
         comparing two, counting holders (the training family `passage_numbers` teaches these), or
         adding and subtracting two counts (only adding is trained, as the rare composition
         `passage_arith`); 4 numbers as options (the other quantities a wrong reading gives, then near
         misses), or the 2 names of a comparison.
- `bbh`  multi-step symbolic reasoning (3-shot): boolean expressions of 2-3 operators (2 options); the
         training `logic` family has only single-operator ones.

Every option is scored by its log-likelihood as the *answer sentence* a model trained on the world writes
("Tova is a baker.", "Tata has more rakes.", "Tata and Kuva have 17 bells together."), so a 2M-parameter
model that knows the fact or can do the step shows it, whatever its fluency in bare words; `chance_level` is
the expected accuracy of a uniform guess (the mean of 1 / number of options). Records carry `choices`,
`gold`, the short gold `answer`, and `instruction`/`input`/`output` (output = the gold sentence), so the one
prompt template applies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from atkd.data.families import PARA_MIX, TRAIN_MIX, Record, WorldContext, fact_answer, number_passage
from atkd.data.kb import AGE_RANGE, CATEGORIES, PROFESSIONS


@dataclass(frozen=True)
class GenerationSuite:
    """A generation suite: family mix, family variant, and what it shifts relative to training."""

    mix: dict[str, float]
    variant: str
    shift: str


GENERATION_SUITES: dict[str, GenerationSuite] = {
    "dolly": GenerationSuite(
        TRAIN_MIX, "base", "in-distribution: training mix and phrasings, held-out prompts"
    ),
    "vicuna": GenerationSuite(
        {
            "story": 0.25,
            "brainstorm": 0.25,
            "open_qa": 0.15,
            "describe": 0.15,
            "classification": 0.1,
            "summarization": 0.1,
        },
        "base",
        "family mix: open-ended chat (stories, brainstorming, knowledge questions and profiles)",
    ),
    "selfinst": GenerationSuite(
        {
            "closed_qa": 0.2,
            "list_transform": 0.2,
            "extraction": 0.2,
            "summarization": 0.15,
            "arithmetic": 0.1,
            "brainstorm": 0.1,
            "classification": 0.05,
        },
        "long",
        "length: longer passages, lists, texts to summarise, 3-step arithmetic",
    ),
    "koala": GenerationSuite(
        PARA_MIX, "para", "phrasing: every instruction uses a template unseen in training"
    ),
    "wizardlm": GenerationSuite(
        {
            "kb_arith": 1 / 6,
            "kb_2hop": 1 / 6,
            "kb_list": 1 / 6,
            "passage_arith": 1 / 6,
            "list_compose": 1 / 6,
            "brainstorm_pair": 1 / 6,
        },
        "base",
        "composition: each instruction needs two skills; each composition is 1% of training",
    ),
}

UNDERSTANDING_SUITES: dict[str, dict[str, Any]] = {
    "mmlu": {"num_fewshot": 5, "shift": "format: 4-way multiple choice over KB facts"},
    "drop": {
        "num_fewshot": 3,
        "shift": "reading + arithmetic: look up, compare, count (trained), add, subtract in a passage",
    },
    "bbh": {"num_fewshot": 3, "shift": "multi-step: boolean expressions of 2-3 operators"},
}
SUITE_NAMES = tuple(GENERATION_SUITES) + tuple(UNDERSTANDING_SUITES)


# ---------------------------------------------------------------------------------------------- MMLU
_MMLU_Q = {
    "job": "Which job does {s} have?",
    "city": "In which city is {s}'s home?",
    "colour": "Which colour is {s}'s favourite?",
    "pet": "Which animal is {s}'s pet?",
    "age": "What is the age of {s}?",
    "country": "Which country is {s} located in?",
}


def gen_mmlu(rng: random.Random, ctx: WorldContext) -> Record:
    """One 4-way multiple-choice question about a KB fact; distractors come from the same attribute."""
    if rng.random() < len(ctx.city_names) / (len(ctx.city_names) + len(ctx.persons)):
        city = rng.choice(ctx.city_names)
        attr, subject, value = "country", city, ctx.city_country[city]
        pool: list[Any] = ctx.country_names
    else:
        person = rng.choice(ctx.persons)
        attr = rng.choice(("job", "city", "colour", "pet", "age"))
        subject, value = person["name"], person[attr]
        pool = {
            "job": list(PROFESSIONS),
            "city": ctx.city_names,
            "colour": list(CATEGORIES["colour"][1]),
            "pet": list(CATEGORIES["animal"][1]),
            "age": list(range(AGE_RANGE[0], AGE_RANGE[1] + 1)),
        }[attr]
    distractors = rng.sample([v for v in pool if v != value], 3)
    values = [str(v) for v in distractors] + [str(value)]
    rng.shuffle(values)
    gold = values.index(str(value))
    question = _MMLU_Q[attr].format(s=subject)
    # The options are not listed in the instruction: each is scored as an answer sentence (cloze style, as
    # lm-eval's ARC), and a listing made the ladder's models copy instead of recall (measured on world v2,
    # largest teacher, 200 questions: 0.90 with the bare question, 0.48 with the list zero-shot, 0.28 with
    # it 5-shot).
    instruction = question
    # Each option is scored as the answer sentence a model trained on the world writes (open QA's).
    choices = [fact_answer(attr, subject, v) for v in values]
    return {
        "subject": attr,
        "entity": subject,
        "question": question,
        "choices": choices,
        "gold": gold,
        "answer": values[gold],
        "instruction": instruction,
        "input": "",
        "output": choices[gold],
    }


# ---------------------------------------------------------------------------------------------- DROP
def gen_drop(rng: random.Random, ctx: WorldContext) -> Record:
    """A passage of who-has-how-many plus one question: reading one count, comparing two or counting the
    holders (the training family `passage_numbers` teaches these), or adding or subtracting two counts
    (reading + arithmetic; only adding two counts is trained, as a rare composition). World v5 also asked
    for the total of 2-4 counts: every model scored below chance on it (0.05-0.15 against 0.25). Its
    distractors are mostly the passage's own counts, each smaller than the total, so the answer was nearly
    always the largest option, and a model that leans to small numbers falls below chance without reading
    anything; v6 leaves it out. The sum question has the same tilt, less strongly (docs/results/DIARY.md,
    world v6: the answer is the smallest option in 5% of sum documents)."""
    holdings, main, passage = number_passage(rng, ctx)
    names = [p for p, _, _ in holdings]
    counts = [c for _, c, _ in holdings]
    holders = [(p, c) for p, c, k in holdings if k == main]
    (a, ca), (b, cb) = rng.sample(holders, 2)
    qtype = rng.choice(("lookup", "compare", "count", "sum", "diff"))
    if qtype == "lookup":
        question, value = f"How many {main} does {a} have?", ca
        say = f"{a} has {{}} {main}.".format
    elif qtype == "sum":
        question, value = f"How many {main} do {a} and {b} have together?", ca + cb
        say = f"{a} and {b} have {{}} {main} together.".format
    elif qtype == "diff":
        (a, ca), (b, cb) = sorted([(a, ca), (b, cb)], key=lambda x: -x[1])
        question, value = f"How many more {main} does {a} have than {b}?", ca - cb
        say = f"{a} has {{}} more {main} than {b}.".format
    elif qtype == "count":
        question, value = f"How many people have {main}?", len(holders)
        say = f"{{}} people have {main}.".format
    if qtype == "compare":
        question, answer = f"Who has more {main}, {a} or {b}?", a if ca > cb else b
        options = [a, b]
        say = f"{{}} has more {main}.".format
    else:
        answer = str(value)
        # Distractors: the other numbers a wrong reading of the passage gives, then near misses.
        near = [ca, cb, ca + cb, abs(ca - cb), len(holders), sum(c for _, c in holders), *counts]
        # Same number of digits as the answer where possible: digits are single tokens, so the options
        # then have equally many tokens.
        pool = [v for v in dict.fromkeys(near) if v > 0 and v != value]
        near_misses = (value + d for d in (1, -1, 2, -2, 3, -3, 5, -5, 10, -10))
        pool += [v for v in near_misses if v > 0 and v not in pool]
        pool = sorted(pool, key=lambda v: len(str(v)) != len(answer))  # stable: same width first
        options = [answer, *rng.sample([str(v) for v in pool[:5]], 3)]
    rng.shuffle(options)
    choices = [say(o) for o in options]
    gold = options.index(answer)
    return {
        "task": qtype,
        "passage": passage,
        "question": question,
        "answer": answer,
        "candidates": list(names) if qtype == "compare" else [],
        "choices": choices,
        "gold": gold,
        "instruction": question,
        "input": passage,
        "output": choices[gold],
    }


# ----------------------------------------------------------------------------------------------- BBH
# Only boolean expressions: the ladder's models do not track objects or order people in context. Measured
# on world v2 (100 questions each, the largest teacher): 3-person object tracking with 1-3 swaps 0.28-0.39
# (chance 0.33) and 3-4-person ordering 0.12 (chance 0.29), against 0.63-0.69 (chance 0.50) here.
BBH_TASKS = ("boolean_expressions",)


def _bool_tree(rng: random.Random, n_ops: int) -> tuple[str, bool, bool]:
    """A random boolean expression with exactly `n_ops` operators: (text, value, is_binary_at_top).

    Binary children and the operand of `not` are parenthesised when binary, so the text is unambiguous
    and Python's own precedence gives the same value."""
    if n_ops == 0:
        v = rng.choice((True, False))
        return str(v), v, False
    if rng.random() < 0.3:
        text, v, binary = _bool_tree(rng, n_ops - 1)
        return f"not {'(' + text + ')' if binary else text}", not v, False
    left_ops = rng.randint(0, n_ops - 1)
    lt, lv, lb = _bool_tree(rng, left_ops)
    rt, rv, rb = _bool_tree(rng, n_ops - 1 - left_ops)
    op = rng.choice(("and", "or"))
    value = (lv and rv) if op == "and" else (lv or rv)
    lt = f"({lt})" if lb else lt
    rt = f"({rt})" if rb else rt
    return f"{lt} {op} {rt}", value, True


def gen_bbh(rng: random.Random, ctx: WorldContext, task: str) -> Record:
    """One multi-step reasoning question of `task` (see BBH_TASKS)."""
    if task != "boolean_expressions":
        raise ValueError(f"unknown BBH task {task!r}; expected one of {BBH_TASKS}")
    expr, value, _ = _bool_tree(rng, rng.randint(2, 3))
    question, answer = f"What is {expr}?", str(value)
    # Multiple choice over the two truth values (chance = 1/2).
    options = ["True", "False"]
    rng.shuffle(options)
    return {
        "task": task,
        "question": question,
        "answer": answer,
        "candidates": ["True", "False"],
        "choices": list(options),
        "gold": options.index(answer),
        "instruction": question,
        "input": "",
        "output": answer,
    }


# -------------------------------------------------------------------------------------------- chance
CHANCE_DEFINITION = {
    "understanding": "uniform guess: mean over documents of 1 / number of options",
    "generation": "judge ratio of a well-formed wrong answer: each document answered with the reference of "
    "the next document of the same family",
}


def chance_level(records: list[Record]) -> float:
    """The score a model gets without solving the task (see CHANCE_DEFINITION), on one suite's records.

    Multiple choice: the expected accuracy of a uniform guess. Generation: the study's judge ratio when
    every document is answered with another document's reference answer of the same family (cyclically
    in file order), i.e. a fluent answer of the right form that ignores the question. A family with a
    single document is answered with an empty string."""
    if not records:
        raise ValueError("chance_level needs at least one record")
    if all("choices" in r for r in records):
        return sum(1 / len(r["choices"]) for r in records) / len(records)
    from atkd.data.judge import judge_score

    by_family: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_family.setdefault(r["family"], []).append(i)
    got = ref = 0.0
    for members in by_family.values():
        for j, i in enumerate(members):
            other = members[(j + 1) % len(members)]
            answer = records[other]["output"] if other != i else ""
            got += judge_score(records[i], answer)
            ref += judge_score(records[i], records[i]["output"])
    return got / ref
