"""metrics.jsonl: one JSON object per training log line (means over the steps since the previous line)
and per validation. A resumed run cuts the file back to its checkpoint's step and appends from there, so
it ends with the same lines as an uninterrupted run."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atkd.fsutil import atomic_write_text


class MetricsLog:
    """Appends lines to `path`, each flushed at once (a killed run keeps every line written); with
    `path=None` (processes other than the first) lines go nowhere."""

    def __init__(self, path: Path | None) -> None:
        self._file = (path or Path(os.devnull)).open("a", encoding="utf-8")

    def emit(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def valid_record(step: int, epoch: float, loss: float, seconds: float) -> dict[str, Any]:
    """A validation line: step, epoch, mean CE per target token, seconds it took."""
    return {"step": step, "epoch": round(epoch, 4), "valid_loss": loss, "valid_seconds": round(seconds, 3)}


class Window:
    """Running sums between two log lines: mean loss (and CE), processed tokens per second, and the share
    of steps whose sequences came from the sampling source."""

    def __init__(self) -> None:
        self.loss = self.ce = self.time = self.sampled = 0.0
        self.steps = self.tokens = 0
        self.has_ce = self.has_sampled = False

    def add(self, stats: Mapping[str, float], seconds: float) -> None:
        """Count one step's stats (from `forward_backward`, summed over processes) and its duration."""
        self.loss += stats["loss"]
        self.ce += stats.get("ce", 0.0)
        self.has_ce = self.has_ce or "ce" in stats
        self.sampled += stats.get("sampled", 0.0)
        self.has_sampled = self.has_sampled or "sampled" in stats
        self.steps += 1
        self.tokens += int(stats["tokens"])
        self.time += seconds

    def flush(self) -> dict[str, float]:
        """The window's means, and start a new window."""
        out = {"loss": self.loss / self.steps}
        if self.has_ce:
            out["ce"] = self.ce / self.steps
        if self.has_sampled:
            out["sampled"] = self.sampled / self.steps
        out["tokens_per_s"] = round(self.tokens / max(self.time, 1e-9), 1)
        self.__init__()
        return out


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only metric lines up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line + "\n")
        except json.JSONDecodeError:  # a blank line or one cut short by the kill
            continue
    atomic_write_text(path, "".join(kept))
