"""The judge's HTTP client for any OpenAI-compatible chat endpoint (configured by config.JudgeConfig):
one rating with retries (`LLMJudge.rate`, through the cache and the rate limit), and a pair in both
presentation orders (`LLMJudge.judge_pair`). The API key is read from an environment variable and is
never logged, cached or written anywhere (nor put in an error message).

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
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from atkd.eval.llm_judge.cache import JudgeCache
from atkd.eval.llm_judge.config import JudgeConfig, redact_url
from atkd.eval.llm_judge.protocol import SYSTEM_PROMPT, build_prompt, parse_scores
from atkd.eval.llm_judge.ratelimit import RateLimiter, default_rate_file

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_WAIT = 60.0  # seconds: the longest backoff, and the cap on a server's Retry-After
# Transport-level failures, all retried: URLError, timeouts, refused/reset connections and a connection
# closed without a reply (OSError); a garbled status line, a body cut short (http.client.HTTPException).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)


class JudgeError(RuntimeError):
    """A judgement that could not be obtained (after retries, or at once for errors retrying cannot fix)."""


class _BadReply(Exception):
    """A reply that is not a chat completion (not JSON, no choices): retried, never cached."""


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
