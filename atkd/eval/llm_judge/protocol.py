"""The judge's protocol: the prompt (the study's pairwise template), reading the verdict, and the task
score.

For each question the judge rates two answers 1-10: the student's and the reference. It is asked twice,
once with the student's answer first and once with the reference first (the authors' release asked in
one order only, and position bias is real), and each answer's score is the mean of its two ratings
(`LLMJudge.judge_pair`). The task score is the study's ratio: sum of student scores / sum of reference
scores (`ratio`, also the aggregation of the synthetic world's programmatic judge in
`atkd/eval/tasks/generation.yaml`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
USER_TEMPLATE = """[Question]
{question}

[The Start of Assistant 1's Answer]
{answer_1}
[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{answer_2}
[The End of Assistant 2's Answer]

[System]
We would like to request your feedback on the performance of two AI assistants in response to the user \
question displayed above.
Please rate the helpfulness, relevance, accuracy, and level of detail of their responses. Each assistant \
receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.
Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, \
respectively. The two scores are separated by a space. In the subsequent line, please provide a \
comprehensive explanation of your evaluation."""

_SCORES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[ ,]\s*(\d+(?:\.\d+)?)\s*$")


def build_prompt(question: str, answer_1: str, answer_2: str) -> str:
    """The judge's user message with the two answers in this presentation order."""
    return USER_TEMPLATE.format(
        question=question.strip(), answer_1=answer_1.strip(), answer_2=answer_2.strip()
    )


def parse_scores(reply: str) -> tuple[float, float]:
    """The two scores on the first non-empty line of a reply ("8 6", "8, 6", "7.5 9"); both in [1, 10]."""
    line = next((ln for ln in reply.splitlines() if ln.strip()), "")
    m = _SCORES.match(line)
    if not m:
        raise ValueError(f"no 'score score' first line in the judge's reply: {line[:80]!r}")
    a, b = float(m.group(1)), float(m.group(2))
    if not (1 <= a <= 10 and 1 <= b <= 10):
        raise ValueError(f"judge scores outside 1-10: {a}, {b}")
    return a, b


def ratio(pairs: Iterable[tuple[float, float] | None]) -> float:
    """The study's task score: sum of student scores / sum of reference scores (unparseable pairs, None,
    are left out)."""
    pairs = [p for p in pairs if p is not None]
    reference = sum(r for _, r in pairs)
    if not pairs or reference <= 0 or math.isnan(reference):
        raise ValueError("ratio needs at least one judged pair with a positive reference score")
    return sum(s for s, _ in pairs) / reference
