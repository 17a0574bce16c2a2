"""The one prompt template of the suite, used identically for training and evaluation.

Alpaca-style and deliberately short (prompt tokens carry no loss, so long templates only cost compute).
The loss covers the response tokens and the end-of-sequence token, never the prompt or padding.
"""

from __future__ import annotations

INSTRUCTION_HEADER = "### Instruction:\n"
INPUT_HEADER = "\n### Input:\n"
RESPONSE_HEADER = "\n### Response:\n"


def format_prompt(instruction: str, input: str | None = None) -> str:
    """Return the prompt text for one example; the response follows it directly."""
    text = INSTRUCTION_HEADER + instruction.strip()
    if input is not None and input.strip():
        text += INPUT_HEADER + input.strip()
    return text + RESPONSE_HEADER


def format_example(example: dict) -> tuple[str, str]:
    """Return (prompt, response) for a record with `instruction`, optional `input`, and `output`."""
    return format_prompt(example["instruction"], example.get("input")), example["output"].strip()


def parse_prompt(prompt: str) -> tuple[str, str]:
    """(instruction, input) of a prompt made by `format_prompt` (the last one, if few-shot examples
    precede it); the inverse used to show a judge the question without the template's headers."""
    start = prompt.rfind(INSTRUCTION_HEADER)
    if start < 0 or not prompt.endswith(RESPONSE_HEADER):
        raise ValueError("not a prompt of the suite's template (### Instruction: ... ### Response:)")
    body = prompt[start + len(INSTRUCTION_HEADER) : -len(RESPONSE_HEADER)]
    instruction, _, input = body.partition(INPUT_HEADER)
    return instruction, input
