"""Where and how the judge asks (`JudgeConfig`), and `redact_url` for messages that name an endpoint.

Its own module so that the client and the rate limiter both read it without importing each other.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass


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
