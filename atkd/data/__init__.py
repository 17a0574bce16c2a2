"""Data: the prompt template, the synthetic instruction world, and JSONL loading."""

from atkd.data.template import format_example, format_prompt

__all__ = ["format_example", "format_prompt"]
