"""An LLM judge for any OpenAI-compatible chat endpoint, in the study's form.

Each answer is rated 1-10 against the reference, in both presentation orders, and a task scores the
study's ratio (sum of answer scores / sum of reference scores). Modules, one concern each:
    protocol    the prompt, reading the verdict, the ratio
    client      the HTTP client: config, retries, both orders (`LLMJudge`)
    cache       every judgement in SQLite, shared by jobs, so no prompt is paid twice
    ratelimit   requests per minute, shared by every process on the machine
    cli         `atkd judge`: an evaluate run's generations.jsonl into judgements.jsonl and metrics.csv
"""

from atkd.eval.llm_judge.cache import JudgeCache
from atkd.eval.llm_judge.cli import judge_generations, register_cli, task_rows
from atkd.eval.llm_judge.client import JudgeError, LLMJudge, retry_after_seconds
from atkd.eval.llm_judge.config import JudgeConfig, redact_url
from atkd.eval.llm_judge.protocol import build_prompt, parse_scores, ratio
from atkd.eval.llm_judge.ratelimit import RateLimiter, default_rate_file

__all__ = [
    "JudgeCache",
    "JudgeConfig",
    "JudgeError",
    "LLMJudge",
    "RateLimiter",
    "build_prompt",
    "default_rate_file",
    "judge_generations",
    "parse_scores",
    "ratio",
    "redact_url",
    "register_cli",
    "retry_after_seconds",
    "task_rows",
]
