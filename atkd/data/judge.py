"""The programmatic judge of the synthetic world, on the study's 1-10 scale, and answer matching helpers.

The study asks an LLM judge to rate the student's and the reference answer 1-10 and reports
sum(student scores) / sum(reference scores). Our world knows the ground truth, so the judge is exact
and deterministic. Each generation record says how to judge it in its `judge` field:

- `exact`  (keys): 10 for the reference answer (up to case, spacing and punctuation); otherwise
           1 + 8 x (fraction of key facts present as whole words), so a right fact in other words scores 9
           and a wrong fact 1.
- `number` (value): 10 if every number in the answer is the right one (words around it are free);
           5 if the right number appears among other numbers; else 1.
- `list`   (items, ordered): 1 + 9 x (fraction of positions right) for ordered lists, 1 + 9 x F1 of the
           item multisets for unordered ones.
- `dist`   (uses `answer_dist`): 10 for any valid answer (the support of the known distribution);
           otherwise 1 + 8 x the best token-F1 against a valid answer (partly valid stories or lists).

For stochastic records membership is all a single answer can show: greedy decoding always gives the mode.
`answer_distribution` and `total_variation` expose the distribution for
distribution-level scores (sampled answers, or a model's probability mass on the valid set).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

MIN_SCORE, MAX_SCORE = 1.0, 10.0
_WORD = re.compile(r"[a-z0-9]+")
_INT = re.compile(r"-?\d+")
_LIST_SPLIT = re.compile(r",|\band\b|\n|;")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalize_text(text: str) -> str:
    """Lower-case words and numbers joined by single spaces (punctuation and spacing ignored)."""
    return " ".join(_tokens(text))


def _has_phrase(norm_answer: str, phrase: str) -> bool:
    p = normalize_text(phrase)
    return bool(p) and f" {p} " in f" {norm_answer} "


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between two texts (after `normalize_text`)."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _parse_list(text: str) -> list[str]:
    return [n for n in (normalize_text(x) for x in _LIST_SPLIT.split(text.lower())) if n]


def answer_distribution(record: Mapping[str, Any]) -> dict[str, float]:
    """Every valid answer of a generation record with its probability ({output: 1.0} if deterministic)."""
    dist = record.get("answer_dist")
    if dist:
        return dict(dist)
    return {record["output"]: 1.0}


def total_variation(answer_dist: Mapping[str, float], samples: Sequence[str]) -> float:
    """Total-variation distance between a known answer distribution and the empirical distribution of
    sampled answers (compared after `normalize_text`; invalid answers count as mass off the support).
    0 = samples follow the distribution exactly, 1 = disjoint."""
    if not samples:
        raise ValueError("total_variation needs at least one sample")
    true: Counter[str] = Counter()
    for a, p in answer_dist.items():
        true[normalize_text(a)] += p
    emp = Counter(normalize_text(s) for s in samples)
    n = len(samples)
    keys = set(true) | set(emp)
    return 0.5 * sum(abs(true.get(k, 0.0) - emp.get(k, 0) / n) for k in keys)


def _score_exact(record: Mapping[str, Any], norm: str, spec: Mapping[str, Any]) -> float:
    if norm == normalize_text(record["output"]):
        return MAX_SCORE
    keys = spec.get("keys") or []
    if not keys:
        return MIN_SCORE
    found = sum(_has_phrase(norm, k) for k in keys)
    return MIN_SCORE + 8.0 * found / len(keys)


def _score_number(record: Mapping[str, Any], answer: str, norm: str, spec: Mapping[str, Any]) -> float:
    if norm == normalize_text(record["output"]):
        return MAX_SCORE
    value = int(spec["value"])
    numbers = [int(x) for x in _INT.findall(answer)]
    if numbers and all(x == value for x in numbers):
        return MAX_SCORE
    if value in numbers:
        return 5.0
    return MIN_SCORE


def _score_list(answer: str, spec: Mapping[str, Any]) -> float:
    ref = [normalize_text(x) for x in spec["items"]]
    got = _parse_list(answer)
    if not ref:
        return MAX_SCORE if not got else MIN_SCORE
    if spec.get("ordered", True):
        right = sum(a == b for a, b in zip(got, ref))
        return MIN_SCORE + 9.0 * right / max(len(got), len(ref))
    common = sum((Counter(got) & Counter(ref)).values())
    if common == 0:
        return MIN_SCORE
    precision, recall = common / len(got), common / len(ref)
    return MIN_SCORE + 9.0 * (2 * precision * recall / (precision + recall))


def _score_dist(record: Mapping[str, Any], answer: str, norm: str) -> float:
    support = [normalize_text(a) for a in answer_distribution(record)]
    if norm in support:
        return MAX_SCORE
    best = max(token_f1(answer, a) for a in answer_distribution(record))
    return MIN_SCORE + 8.0 * best


def judge_score(record: Mapping[str, Any], answer: str | None) -> float:
    """Score `answer` to a generation record on the 1-10 scale against the world's ground truth.

    10 = fully correct (any valid answer for stochastic records), 1 = wrong or empty, partial credit in
    between (see the module docstring). Records without a `judge` field are judged by exact match.
    """
    answer = answer or ""
    norm = normalize_text(answer)
    if not norm:
        return MIN_SCORE
    spec = record.get("judge") or {"kind": "exact", "keys": []}
    kind = spec.get("kind", "exact")
    if kind == "exact":
        score = _score_exact(record, norm, spec)
    elif kind == "number":
        score = _score_number(record, answer, norm, spec)
    elif kind == "list":
        score = _score_list(answer, spec)
    elif kind == "dist":
        score = _score_dist(record, answer, norm)
    else:
        raise ValueError(f"record {record.get('id', '?')}: unknown judge kind {kind!r}")
    return min(MAX_SCORE, max(MIN_SCORE, score))


def ratio_score(records: Sequence[Mapping[str, Any]], answers: Sequence[str | None]) -> float:
    """The study's task score: sum of the answers' judge scores / sum of the reference answers' scores
    (the reference `output` judged by the same judge, so the references themselves score exactly 1.0)."""
    if len(records) != len(answers):
        raise ValueError(f"{len(records)} records but {len(answers)} answers")
    if not records:
        raise ValueError("ratio_score needs at least one record")
    student = sum(judge_score(r, a) for r, a in zip(records, answers))
    reference = sum(judge_score(r, r["output"]) for r in records)
    return student / reference
