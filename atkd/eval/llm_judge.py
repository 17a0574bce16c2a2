"""An LLM judge for any OpenAI-compatible chat endpoint, in the study's form.

For each question the judge rates two answers 1-10: the student's and the reference. It is asked twice,
once with the student's answer first and once with the reference first (the authors' release asked in
one order only, and position bias is real), and each answer's score is the mean of its two ratings. The
task score is the study's ratio: sum of student scores / sum of reference scores. Under the sampling
protocol (generations with a `sample_seed`) each seed gets its own `llm_judge_ratio@<seed>` row and the
headline `llm_judge_ratio` is their mean, as `atkd evaluate` does for its metrics.

Every judgement is stored in an SQLite cache keyed by (judge model, decoding settings, system prompt,
the full user prompt in its presentation order) and committed as soon as it arrives, so a rerun never
pays twice and a run that dies midway resumes where it stopped. One cache file may be shared by every
judge job (`--cache`): identical (question, reference, answer) triples from different models' runs are
then paid once; concurrent writers wait for each other (SQLite busy timeout). The API key is read from an
environment variable and is never logged, cached or written anywhere (nor put in an error message).

What is retried (timeout, then exponential backoff from `backoff` s, doubled up to 60 s; a `Retry-After`
header, in seconds or as an HTTP date, raises the wait, also capped at 60 s):
  * transport failures: connection refused/reset/closed without a reply, socket timeouts, a garbled
    status line, a body cut short (`OSError`, `http.client.HTTPException`);
  * HTTP 408, 409, 425, 429, 500, 502, 503 and 504;
  * a 200 reply that is not a chat completion: a body that is not JSON, JSON without a non-empty
    `choices` list or without `choices[0].message` (a proxy's error page, a gateway's error envelope).
  When these persist past `max_retries`, the run stops with a `JudgeError` naming the endpoint and how
  many judgements the cache holds; nothing is cached for the failing prompt, so a rerun resumes there.
  Other HTTP statuses (401, 403, 404, ...) fail at once: retrying cannot fix them.
What is retried, then recorded as unparseable: a chat completion whose content is the judge's own
  unusable answer: empty or null content (refusal, content filter, tokens spent elsewhere), no
  "score score" first line, or a score outside 1-10. If the last attempt still gives one, the reply is
  cached with null scores (a rerun does not pay for it again), the pair is left out of the ratio, its
  line in judgements.jsonl has null scores, `n` counts judged pairs only, and a warning says how many.

`requests_per_minute` is one limit shared by every process on the machine that judges with the same
endpoint, model and key variable (several `atkd judge` jobs run at once): the next allowed send time is
kept in a small file under an exclusive `fcntl.flock` (default in the temp directory, or `--rate-file`).
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import math
import os
import re
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from atkd.eval.harness import seeded_rows

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the rate limit is per process
    fcntl = None  # type: ignore[assignment]

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
MAX_WAIT = 60.0  # seconds: the longest backoff, and the cap on a server's Retry-After
CACHE_BUSY_TIMEOUT = 120.0  # seconds a cache writer waits while another process writes the same file
# Transport-level failures, all retried: URLError, timeouts, refused/reset connections and a connection
# closed without a reply (OSError); a garbled status line, a body cut short (http.client.HTTPException).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)


class JudgeError(RuntimeError):
    """A judgement that could not be obtained (after retries, or at once for errors retrying cannot fix)."""


class _BadReply(Exception):
    """A reply that is not a chat completion (not JSON, no choices): retried, never cached."""


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
    requests_per_minute: float | None = None  # shared by every process on the machine (see RateLimiter)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"judge url must start with http:// or https://, got {redact_url(self.url)!r}")
        if not self.model:
            raise ValueError("judge model must be set")
        if self.timeout <= 0 or self.max_retries < 0 or self.backoff < 0:
            raise ValueError("judge timeout must be > 0, max_retries and backoff >= 0")
        if self.requests_per_minute is not None and self.requests_per_minute <= 0:
            raise ValueError("judge requests_per_minute must be > 0 (or null for no limit)")

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"


def redact_url(url: str) -> str:
    """`url` without user info, query and fragment (where credentials can hide), for messages."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if p.port is not None:
            host += f":{p.port}"
    except ValueError:
        return "<unparseable url>"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


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


def retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """The wait a `Retry-After` header asks for, as delay-seconds or an HTTP date (RFC 9110), in
    [0, MAX_WAIT]; 0 when absent or unreadable. Capped so a server cannot stall a run for hours."""
    if not value or not value.strip():
        return 0.0
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:  # "-0000" means UTC with no zone information
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return 0.0
    return min(MAX_WAIT, max(0.0, seconds))


def build_prompt(question: str, answer_1: str, answer_2: str) -> str:
    """The judge's user message with the two answers in this presentation order."""
    return USER_TEMPLATE.format(
        question=question.strip(), answer_1=answer_1.strip(), answer_2=answer_2.strip()
    )


def default_rate_file(config: JudgeConfig) -> Path:
    """The machine-wide rate-limit file for this endpoint, model and key variable (per user), so every
    `atkd judge` process that shares an API quota shares one pace without being told a path."""
    ident = json.dumps([config.endpoint, config.model, config.api_key_env])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    uid = getattr(os, "getuid", lambda: 0)()
    return Path(tempfile.gettempdir()) / f"atkd-judge-rate-{uid}-{digest}"


class RateLimiter:
    """At most `rpm` sends per minute over every process and thread on the machine that uses `path`.

    The file holds the earliest time (Unix seconds) of the next send. A sender takes an exclusive
    `fcntl.flock` on it, sleeps until that time while holding the lock (the others queue in the kernel),
    writes its own send time + 60/rpm and lets go; the spacing is thus measured from when each sender
    actually woke, not from a reserved slot. The kernel drops the lock of a killed process. Without fcntl
    (not POSIX) the limit is per process.
    """

    def __init__(
        self,
        rpm: float,
        path: str | Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rpm <= 0:
            raise ValueError("rpm must be > 0")
        self.interval = 60.0 / rpm
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sleep, self._clock = sleep, clock
        self._local, self._next = threading.Lock(), 0.0

    def _pace(self, stored: float) -> tuple[float, float]:
        """Wait for `stored` (the next allowed send time); return (seconds waited, the next one after us)."""
        now = self._clock()
        if not math.isfinite(stored) or stored - now > max(3600.0, self.interval):
            stored = now  # unreadable, or written before the clock was set back
        waited = max(0.0, stored - now)
        if waited:
            self._sleep(waited)
        return waited, max(self._clock(), stored) + self.interval

    def wait(self) -> float:
        """Block until this caller may send; return the seconds waited."""
        if fcntl is None:  # pragma: no cover - not POSIX
            with self._local:
                waited, self._next = self._pace(self._next)
            return waited
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                stored = float(os.pread(fd, 64, 0).decode() or 0.0)
            except ValueError:
                stored = 0.0
            waited, after = self._pace(stored)
            os.ftruncate(fd, 0)
            os.pwrite(fd, repr(after).encode(), 0)
        finally:
            os.close(fd)  # also releases the lock
        return waited


class JudgeCache:
    """Judgements on disk (SQLite, one row per prompt), committed one by one; safe across threads and
    across processes sharing the file (each write is its own transaction; writers wait up to
    `busy_timeout` s for each other). Rows with null scores record unparseable judge answers."""

    def __init__(self, path: str | Path, *, busy_timeout: float = CACHE_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Autocommit (isolation_level=None): no transaction is left open between statements, so another
        # process never waits on this one for longer than one write. Rollback journal, not WAL: WAL needs
        # shared memory and breaks on network file systems, and one write per API reply needs no more.
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, reply TEXT, a REAL, b REAL)"
        )

    def get(self, key: str) -> tuple[float | None, float | None] | None:
        """None when not cached; (None, None) when cached as unparseable."""
        with self._lock:
            row = self._db.execute("SELECT a, b FROM judgements WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def put(self, key: str, reply: str, scores: tuple[float, float] | None) -> None:
        """Store one judgement (`scores` None: the judge's reply was unparseable)."""
        a, b = scores if scores is not None else (None, None)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?)", (key, reply, a, b))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content list; else ""."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


class LLMJudge:
    """Rates (student, reference) pairs through an OpenAI-compatible endpoint, with an on-disk cache."""

    def __init__(
        self,
        config: JudgeConfig,
        cache: str | Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rate_file: str | Path | None = None,
    ) -> None:
        self.config = config
        self.cache = JudgeCache(cache)
        self._sleep = sleep
        rpm = config.requests_per_minute
        self.limiter = (
            None if rpm is None else RateLimiter(rpm, rate_file or default_rate_file(config), sleep=sleep)
        )
        self.requests = 0  # HTTP requests actually sent (cache hits send none)

    # ------------------------------------------------------------------------------------ one call
    def _key(self, prompt: str) -> str:
        c = self.config
        ident = json.dumps([c.model, c.temperature, c.max_tokens, SYSTEM_PROMPT, prompt])
        return hashlib.sha256(ident.encode()).hexdigest()

    def _api_key(self) -> str:
        return os.environ.get(self.config.api_key_env, "").strip()

    def _scrub(self, text: str) -> str:
        """`text` with the key (should a server echo it) masked: for every log line and error message."""
        key = self._api_key()
        return text.replace(key, "***") if key else text

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key := self._api_key():
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _failure(self, what: str) -> JudgeError:
        """An error naming the endpoint (without credentials) and what the cache keeps for a rerun."""
        return JudgeError(
            self._scrub(
                f"judge endpoint {redact_url(self.config.endpoint)} {what}; {len(self.cache)} judgement(s)"
                f" are kept in the cache {self.cache.path}, a rerun resumes from them"
            )
        )

    def _post(self, prompt: str) -> str:
        """The content of the endpoint's reply (raises HTTPError, a transport error or _BadReply)."""
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
        if self.limiter is not None:
            self.limiter.wait()
        self.requests += 1
        req = urllib.request.Request(c.endpoint, data=body, headers=self._headers(), method="POST")
        with urllib.request.urlopen(req, timeout=c.timeout) as resp:  # noqa: S310 - http(s) checked
            raw = resp.read()
        try:
            payload = json.loads(raw.decode("utf-8"))
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            raise _BadReply(f"body is not JSON: {raw[:80]!r}") from None
        try:
            message = payload["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise _BadReply(f"not a chat completion: {json.dumps(payload)[:120]}") from None
        return _content_text(message.get("content"))

    def rate(self, question: str, answer_1: str, answer_2: str) -> tuple[float, float] | None:
        """Scores of (answer_1, answer_2) in that presentation order, from the cache or the endpoint;
        None when the judge's answer is recorded as unparseable (see the module docstring)."""
        prompt = build_prompt(question, answer_1, answer_2)
        key = self._key(prompt)
        if (hit := self.cache.get(key)) is not None:
            a, b = hit
            return None if a is None or b is None else (a, b)
        attempts = self.config.max_retries + 1
        wait, last_error = self.config.backoff, ""
        for attempt in range(attempts):
            unusable: str | None = None
            try:
                reply = self._post(prompt)
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS:
                    raise self._failure(f"answered HTTP {err.code} {err.reason}") from None
                last_error = f"HTTP {err.code}"
                wait = max(wait, retry_after_seconds(err.headers.get("Retry-After") if err.headers else None))
            except _BadReply as err:
                last_error = f"unusable reply ({err})"
            except (ValueError, http.client.InvalidURL) as err:  # the request cannot be made: no retry
                raise self._failure(f"could not be asked ({err})") from None
            except TRANSPORT_ERRORS as err:
                last_error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            else:
                try:
                    if not reply.strip():
                        raise ValueError("empty answer")
                    scores = parse_scores(reply)
                except ValueError as err:
                    last_error, unusable = f"unparseable judgement ({err})", reply
                else:
                    self.cache.put(key, reply, scores)
                    return scores
            if attempt < attempts - 1:
                log.warning(
                    "%s",
                    self._scrub(f"judge request failed ({last_error}); retry {attempt + 1} in {wait:.1f} s"),
                )
                self._sleep(wait)
                wait = min(MAX_WAIT, wait * 2)
        if unusable is not None:  # the judge answered, but not with two scores: keep it, pay no more
            log.warning("%s", self._scrub(f"recorded as unparseable after {attempts} attempts: {last_error}"))
            self.cache.put(key, unusable, None)
            return None
        raise self._failure(f"gave no judgement after {attempts} attempts: {last_error}")

    # ----------------------------------------------------------------------------------- one pair
    def judge_pair(self, question: str, student: str, reference: str) -> tuple[float, float] | None:
        """(student score, reference score), each the mean of its ratings in both presentation orders;
        None when either order's answer is unparseable (the second order is then not asked)."""
        first = self.rate(question, student, reference)
        if first is None:
            return None
        second = self.rate(question, reference, student)
        if second is None:
            return None
        (s1, r1), (r2, s2) = first, second
        return (s1 + s2) / 2, (r1 + r2) / 2

    def judge_all(
        self, items: Sequence[Mapping[str, str]], progress: Callable[[int], None] | None = None
    ) -> list[tuple[float, float] | None]:
        """Judge every item ({question, answer, reference}); judgements so far stay cached on failure."""
        out = []
        for i, item in enumerate(items):
            out.append(self.judge_pair(item["question"], item["answer"], item["reference"]))
            if progress is not None:
                progress(i + 1)
        return out

    def close(self) -> None:
        self.cache.close()


def ratio(pairs: Iterable[tuple[float, float] | None]) -> float:
    """The study's task score: sum of student scores / sum of reference scores (unparseable pairs, None,
    are left out)."""
    pairs = [p for p in pairs if p is not None]
    reference = sum(r for _, r in pairs)
    if not pairs or reference <= 0 or math.isnan(reference):
        raise ValueError("ratio needs at least one judged pair with a positive reference score")
    return sum(s for s, _ in pairs) / reference


def config_dict(config: JudgeConfig) -> dict[str, Any]:
    """The config as written to result files (no key: only the name of its environment variable)."""
    return asdict(config)


def task_rows(
    task: str, by_seed: Mapping[int | None, Sequence[tuple[float, float] | None]], meta: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A task's tidy rows, in `atkd evaluate`'s form: one `llm_judge_ratio` row for greedy answers (seed
    None); under sampling one `llm_judge_ratio@<seed>` row per seed and their mean as `llm_judge_ratio`
    (with the first seed's n). `n` counts judged pairs (unparseable ones are left out)."""

    def row(metric: str, pairs: Sequence[tuple[float, float] | None]) -> dict[str, Any]:
        judged = [p for p in pairs if p is not None]
        if not judged:
            raise ValueError(
                f"{task}: no answer could be judged for {metric} (every judge reply unparseable)"
            )
        return {**meta, "task": task, "metric": metric, "value": ratio(judged), "n": len(judged)}

    if list(by_seed) == [None]:
        return [row("llm_judge_ratio", by_seed[None])]
    if None in by_seed:
        raise ValueError(f"{task}: generations mix sampled (with sample_seed) and greedy answers")
    return seeded_rows({seed: [row("llm_judge_ratio", pairs)] for seed, pairs in by_seed.items()})


# ---------------------------------------------------------------------------------------------- CLI
def judge_generations(
    generations: str | Path,
    out_dir: str | Path,
    config: JudgeConfig,
    *,
    cache: str | Path | None = None,
    rate_file: str | Path | None = None,
    tasks: Sequence[str] | None = None,
    meta: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Judge the answers of an `atkd evaluate` run (its generations.jsonl) on the generation tasks (the
    records scored by Rouge-L; few-shot understanding suites are skipped); write `judgements.jsonl` (task,
    id, sample_seed, judge, judge_reference) and `metrics.csv` (meta..., task, metric, value, n; per-seed
    rows and their mean under sampling, see `task_rows`). `cache` defaults to OUT/judge_cache.sqlite."""
    import csv
    import io

    from tqdm.auto import tqdm

    from atkd.data.jsonl import read_jsonl
    from atkd.data.template import parse_prompt
    from atkd.fsutil import atomic_write_text

    records = [
        r
        for r in read_jsonl(
            generations,
            {"task": str, "prompt": str, "answer": str, "reference": str},
            optional={"sample_seed": int},
        )
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
    judge = LLMJudge(config, cache or out_dir / "judge_cache.sqlite", rate_file=rate_file)
    try:
        bar = tqdm(total=len(items), disable=not progress, desc="judge", dynamic_ncols=True)
        pairs = judge.judge_all(items, progress=lambda n: bar.update(1))
        bar.close()
    finally:
        judge.close()
    lines: list[str] = []
    groups: dict[str, dict[int | None, list[tuple[float, float] | None]]] = {}
    for r, pair in zip(records, pairs, strict=True):
        seed = r.get("sample_seed")
        s, ref = pair if pair is not None else (None, None)
        record = {
            "task": r["task"],
            "id": r.get("id"),
            "sample_seed": seed,
            "judge": s,
            "judge_reference": ref,
        }
        lines.append(json.dumps(record) + "\n")
        groups.setdefault(r["task"], {}).setdefault(seed, []).append(pair)
    if unparseable := sum(p is None for p in pairs):
        log.warning(
            "%d of %d answers could not be judged (unparseable judge replies)", unparseable, len(pairs)
        )
    rows = [row for task, by_seed in groups.items() for row in task_rows(task, by_seed, meta or {})]
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
        rate_file=args.rate_file,
        tasks=args.tasks,
        meta=meta,
        progress=not args.no_progress,
    )
    for row in rows:
        print(f"{row['task']}: {row['metric']} {row['value']:.4f} (n={row['n']})")
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
    p.add_argument(
        "--cache",
        default=None,
        help="SQLite judgement cache (default: OUT/judge_cache.sqlite); give every judge job the same file"
        " to pay once for answers that several models share (concurrent jobs may write it)",
    )
    p.add_argument(
        "--rate-file",
        default=None,
        help="file holding the --rpm pace shared by every process using it (default: one per endpoint,"
        " model and key variable in the temp directory, i.e. shared machine-wide)",
    )
    p.add_argument("--tasks", nargs="*", default=None, help="generation tasks to judge (default: all)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--max-retries", type=int, default=5)
    p.add_argument(
        "--rpm",
        type=float,
        default=None,
        help="requests per minute, shared by all judge processes on this machine (default: no limit)",
    )
    p.add_argument(
        "--meta", nargs="*", default=[], metavar="KEY=VALUE", help="columns prepended to every row"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_cli)
