"""The prompt of an instruction record, the same in training, teacher caches, generation and evaluation.

Two forms, chosen by the study's tokenizer:
- a tokenizer with a chat template (an instruction-tuned model's, e.g. SmolLM2-Instruct) prompts through
  it: one user turn (the instruction, then the input after a blank line) and the assistant's opening, as
  the model was tuned to see; its EOS (the end of the assistant's turn) ends the response;
- any other tokenizer (the world's BPE, Pythia, OPT) gets the suite's Alpaca-style template, deliberately
  short (prompt tokens carry no loss, so long templates only cost compute).
The loss covers the response tokens and the end-of-sequence token, never the prompt or padding.
"""

from __future__ import annotations

from typing import Any

INSTRUCTION_HEADER = "### Instruction:\n"
INPUT_HEADER = "\n### Input:\n"
RESPONSE_HEADER = "\n### Response:\n"


def format_prompt(instruction: str, input: str | None = None) -> str:
    """Return the prompt text for one example; the response follows it directly."""
    text = INSTRUCTION_HEADER + instruction.strip()
    if input is not None and input.strip():
        text += INPUT_HEADER + input.strip()
    return text + RESPONSE_HEADER


def question(instruction: str, input: str | None = None) -> str:
    """The request as a person would write it: the instruction, then the input after a blank line (the
    chat template's user turn, and what an LLM judge is shown)."""
    text = instruction.strip()
    return text + ("\n\n" + input.strip() if input is not None and input.strip() else "")


def uses_chat(tokenizer: Any) -> bool:
    """Whether prompts go through the tokenizer's chat template (it has one)."""
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_for(instruction: str, input: str | None = None, tokenizer: Any = None) -> str:
    """The prompt text of one request: through `tokenizer`'s chat template if it has one, else the
    Alpaca-style template. The text is tokenised without added special tokens (the chat template writes
    its own)."""
    if not uses_chat(tokenizer):
        return format_prompt(instruction, input)
    turn = [{"role": "user", "content": question(instruction, input)}]
    return tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)


def format_example(example: dict, tokenizer: Any = None) -> tuple[str, str]:
    """Return (prompt, response) for a record with `instruction`, optional `input`, and `output`; the
    prompt's form follows `tokenizer` (`prompt_for`)."""
    prompt = prompt_for(example["instruction"], example.get("input"), tokenizer)
    return prompt, example["output"].strip()


def parse_prompt(prompt: str) -> tuple[str, str]:
    """(instruction, input) of a prompt made by `format_prompt` (the last one, if few-shot examples
    precede it); the inverse used to show a judge the question without the template's headers."""
    start = prompt.rfind(INSTRUCTION_HEADER)
    if start < 0 or not prompt.endswith(RESPONSE_HEADER):
        raise ValueError("not a prompt of the suite's template (### Instruction: ... ### Response:)")
    body = prompt[start + len(INSTRUCTION_HEADER) : -len(RESPONSE_HEADER)]
    instruction, _, input = body.partition(INPUT_HEADER)
    return instruction, input
