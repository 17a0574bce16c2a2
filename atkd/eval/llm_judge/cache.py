"""The judge's on-disk cache: every judgement, in SQLite, committed as soon as it arrives.

Keyed by (judge model, decoding settings, system prompt, the full user prompt in its presentation order),
so a rerun never pays twice and a run that dies midway resumes where it stopped. One cache file may be
shared by every judge job (`atkd judge --cache`): identical (question, reference, answer) triples from
different models' runs are then paid once; concurrent writers wait for each other (SQLite busy timeout).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

CACHE_BUSY_TIMEOUT = 120.0  # seconds a cache writer waits while another process writes the same file


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
