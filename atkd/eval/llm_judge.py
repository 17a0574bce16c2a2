"""An LLM judge for any OpenAI-compatible chat endpoint, in the study's form.

For each question the judge rates two answers 1-10: the student's and the reference. It is asked twice,
once with the student's answer first and once with the reference first (the authors' release asked in
one order only, and position bias is real), and each answer's score is the mean of its two ratings. The
task score is the study's ratio: sum of student scores / sum of reference scores.

Every judgement is stored in an SQLite cache keyed by (endpoint model, prompt, decoding settings) and
committed as soon as it arrives, so a rerun never pays twice and a run that dies midway resumes where it
stopped. Requests have a timeout, retries with exponential backoff (honouring `Retry-After` on 429/503),
and an optional rate limit. The API key is read from an environment variable and is never logged,
cached or written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class JudgeError(RuntimeError):
    """A judgement that could not be obtained (after retries) or parsed."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to ask. `api_key_env` names the environment variable holding the key (may be unset
    for local servers); the key itself is never a field, so it cannot end up in a log or a config dump."""

    url: str  # base URL of the API, e.g. https://api.openai.com/v1 or http://localhost:8000/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 256
    timeout: float = 60.0  # seconds per request
    max_retries: int = 5  # extra attempts after a failed request or an unparsable reply
    backoff: float = 1.0  # first wait in seconds, doubled after each failure (capped at 60 s)
    requests_per_minute: float | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"judge url must start with http:// or https://, got {self.url!r}")
        if not self.model:
            raise ValueError("judge model must be set")
        if self.timeout <= 0 or self.max_retries < 0 or self.backoff < 0:
            raise ValueError("judge timeout must be > 0, max_retries and backoff >= 0")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ValueError("judge requests_per_minute must be > 0 (or null for no limit)")

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"


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


def build_prompt(question: str, answer_1: str, answer_2: str) -> str:
    return USER_TEMPLATE.format(
        question=question.strip(), answer_1=answer_1.strip(), answer_2=answer_2.strip()
    )


class JudgeCache:
    """Judgements on disk (SQLite, one row per prompt), committed one by one; safe across threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, reply TEXT, a REAL, b REAL)"
        )
        self._db.commit()

    def get(self, key: str) -> tuple[float, float] | None:
        with self._lock:
            row = self._db.execute("SELECT a, b FROM judgements WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, key: str, reply: str, scores: tuple[float, float]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?)", (key, reply, scores[0], scores[1])
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class LLMJudge:
    """Rates (student, reference) pairs through an OpenAI-compatible endpoint, with an on-disk cache."""

    def __init__(
        self,
        config: JudgeConfig,
        cache: str | Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.cache = JudgeCache(cache)
        self._sleep = sleep
        self._last_request = 0.0
        self.requests = 0  # HTTP requests actually sent (cache hits send none)

    # ------------------------------------------------------------------------------------ one call
    def _key(self, prompt: str) -> str:
        c = self.config
        ident = json.dumps([c.model, c.temperature, c.max_tokens, SYSTEM_PROMPT, prompt])
        return hashlib.sha256(ident.encode()).hexdigest()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _throttle(self) -> None:
        rpm = self.config.requests_per_minute
        if rpm:
            wait = self._last_request + 60.0 / rpm - time.monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_request = time.monotonic()

    def _post(self, prompt: str) -> str:
        c = self.config
        body = json.dumps(
            {
                "model": c.model,
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": prompt},
                ],
                "temperature": c.temperature,
                "max_tokens": c.max_tokens,
            }
        ).encode()
        self._throttle()
        self.requests += 1
        req = urllib.request.Request(c.endpoint, data=body, headers=self._headers(), method="POST")
        with urllib.request.urlopen(req, timeout=c.timeout) as resp:  # noqa: S310 - http(s) checked
            payload = json.loads(resp.read().decode("utf-8"))
        try:
            return str(payload["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"not a chat completion: {json.dumps(payload)[:120]}") from None

    def rate(self, question: str, answer_1: str, answer_2: str) -> tuple[float, float]:
        """Scores of (answer_1, answer_2) in that presentation order, from the cache or the endpoint."""
        prompt = build_prompt(question, answer_1, answer_2)
        key = self._key(prompt)
        if (hit := self.cache.get(key)) is not None:
            return hit
        wait, last_error = self.config.backoff, ""
        for attempt in range(self.config.max_retries + 1):
            try:
                reply = self._post(prompt)
                scores = parse_scores(reply)
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS:
                    raise JudgeError(f"judge endpoint answered HTTP {err.code} {err.reason}") from None
                last_error = f"HTTP {err.code}"
                retry_after = err.headers.get("Retry-After") if err.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = max(wait, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                last_error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except (ValueError, json.JSONDecodeError) as err:
                last_error = f"unusable reply ({err})"
            else:
                self.cache.put(key, reply, scores)
                return scores
            if attempt < self.config.max_retries:
                log.warning("judge request failed (%s); retry %d in %.1f s", last_error, attempt + 1, wait)
                self._sleep(wait)
                wait = min(60.0, wait * 2 if wait else 0.0)
        raise JudgeError(f"no judgement after {self.config.max_retries + 1} attempts: {last_error}")

    # ----------------------------------------------------------------------------------- one pair
    def judge_pair(self, question: str, student: str, reference: str) -> tuple[float, float]:
        """(student score, reference score), each the mean of its ratings in both presentation orders."""
        s1, r1 = self.rate(question, student, reference)
        r2, s2 = self.rate(question, reference, student)
        return (s1 + s2) / 2, (r1 + r2) / 2

    def judge_all(
        self, items: Sequence[Mapping[str, str]], progress: Callable[[int], None] | None = None
    ) -> list[tuple[float, float]]:
        """Judge every item ({question, answer, reference}); judgements so far stay cached on failure."""
        out = []
        for i, item in enumerate(items):
            out.append(self.judge_pair(item["question"], item["answer"], item["reference"]))
            if progress is not None:
                progress(i + 1)
        return out

    def close(self) -> None:
        self.cache.close()


def ratio(pairs: Iterable[tuple[float, float]]) -> float:
    """The study's task score: sum of student scores / sum of reference scores."""
    pairs = list(pairs)
    reference = sum(r for _, r in pairs)
    if not pairs or reference <= 0 or math.isnan(reference):
        raise ValueError("ratio needs at least one judged pair with a positive reference score")
    return sum(s for s, _ in pairs) / reference


def config_dict(config: JudgeConfig) -> dict[str, Any]:
    """The config as written to result files (no key: only the name of its environment variable)."""
    return asdict(config)


# ---------------------------------------------------------------------------------------------- CLI
def judge_generations(
    generations: str | Path,
    out_dir: str | Path,
    config: JudgeConfig,
    *,
    cache: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    meta: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Judge the answers of an `atkd evaluate` run (its generations.jsonl) on the generation tasks (the
    records scored by Rouge-L; few-shot understanding suites are skipped); write `judgements.jsonl` and
    `metrics.csv` (meta..., task, metric=llm_judge_ratio, value, n)."""
    import csv
    import io

    from tqdm.auto import tqdm

    from atkd.data.jsonl import read_jsonl
    from atkd.data.template import parse_prompt
    from atkd.fsutil import atomic_write_text

    records = [
        r
        for r in read_jsonl(generations, {"task": str, "prompt": str, "answer": str, "reference": str})
        if (tasks is None or r["task"] in tasks) and "rougeL" in r.get("scores", {"rougeL": None})
    ]
    if not records:
        raise ValueError(f"{generations}: no generation-task answers to judge (tasks: {tasks or 'all'})")
    items = []
    for r in records:
        instruction, input = parse_prompt(r["prompt"])
        question = instruction + (f"\n\n{input}" if input else "")
        items.append({"question": question, "answer": r["answer"], "reference": r["reference"]})
    out_dir = Path(out_dir)
    judge = LLMJudge(config, cache or out_dir / "judge_cache.sqlite")
    try:
        bar = tqdm(total=len(items), disable=not progress, desc="judge", dynamic_ncols=True)
        pairs = judge.judge_all(items, progress=lambda n: bar.update(1))
        bar.close()
    finally:
        judge.close()
    lines, by_task = [], {}
    for r, (s, ref) in zip(records, pairs, strict=True):
        lines.append(
            json.dumps({"task": r["task"], "id": r.get("id"), "judge": s, "judge_reference": ref}) + "\n"
        )
        by_task.setdefault(r["task"], []).append((s, ref))
    rows = [
        {**(meta or {}), "task": t, "metric": "llm_judge_ratio", "value": ratio(p), "n": len(p)}
        for t, p in by_task.items()
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "judgements.jsonl", "".join(lines))
    atomic_write_text(out_dir / "metrics.csv", buf.getvalue())
    return rows


def _run_cli(args: Any) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = JudgeConfig(
        url=args.url,
        model=args.model,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        max_retries=args.max_retries,
        requests_per_minute=args.rpm,
    )
    meta = dict(item.split("=", 1) for item in args.meta)
    rows = judge_generations(
        args.generations,
        args.out,
        config,
        cache=args.cache,
        tasks=args.tasks,
        meta=meta,
        progress=not args.no_progress,
    )
    for row in rows:
        print(f"{row['task']}: llm_judge_ratio {row['value']:.4f} (n={row['n']})")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add `atkd judge --generations FILE --out DIR --url URL --model NAME`."""
    p = subparsers.add_parser(
        "judge",
        help="score a run's answers with an LLM judge (OpenAI-compatible endpoint), both orders, cached",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--generations", required=True, help="generations.jsonl of an `atkd evaluate` run")
    p.add_argument("--out", required=True, help="output directory (metrics.csv, judgements.jsonl)")
    p.add_argument("--url", required=True, help="API base URL, e.g. https://api.openai.com/v1")
    p.add_argument("--model", required=True, help="judge model name at that endpoint")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    p.add_argument("--cache", default=None, help="SQLite judgement cache (default: OUT/judge_cache.sqlite)")
    p.add_argument("--tasks", nargs="*", default=None, help="generation tasks to judge (default: all)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument("--rpm", type=float, default=None, help="requests per minute (default: no limit)")
    p.add_argument(
        "--meta", nargs="*", default=[], metavar="KEY=VALUE", help="columns prepended to every row"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_cli)
