"""The request rate limit, shared by every process on the machine that judges with the same endpoint,
model and key variable (several `atkd judge` jobs run at once): the next allowed send time is kept in a
small file under an exclusive `fcntl.flock` (by default in the temp directory, or `--rate-file`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from atkd.eval.llm_judge.config import JudgeConfig

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the rate limit is per process
    fcntl = None  # type: ignore[assignment]


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
