"""Comparisons a config asks for by name (`comparisons:`), beside the study's findings in REPORT.md.

    comparisons:
      - {a: trl_gkd, b: gkd, teacher: neox-208x6}          # variant: off (default), on, or both
      - {a: gkd, b: kd, teacher: neox-208x6, variant: both}

Each is the paired difference A - B of average scores (atkd.report.stats: the hierarchical bootstrap over
seeds then documents, its 95% interval and the minimal detectable effect). No direction is claimed: a
peer's trainer against ours, say, should land close. The line says whether the interval excludes 0
(A above or below B) or not, and how the effect compares with the MDE.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from atkd.report.stats import Evidence, reading

KEYS = ("a", "b", "teacher", "variant")
VARIANTS = {"off": ("off",), "on": ("on",), "both": ("off", "on")}


def parse_comparisons(raw: str | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The `comparisons:` list (as JSON or parsed), checked: a and b required, variant off | on | both."""
    items = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or [])
    if not isinstance(items, list):
        raise ValueError("comparisons: expected a list of {a, b, teacher, variant}")
    out = []
    for i, item in enumerate(items):
        where = f"comparisons[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: expected a mapping {{a, b, teacher, variant}}, got {item!r}")
        if extra := [k for k in item if k not in KEYS]:
            raise ValueError(f"{where}.{extra[0]}: unknown key; valid: {', '.join(KEYS)}")
        for key in ("a", "b"):
            if not isinstance(item.get(key), str):
                raise ValueError(f"{where}.{key}: a method name is required")
        variant = item.get("variant", "off")
        if variant not in VARIANTS:
            raise ValueError(f"{where}.variant: {variant!r}; valid: {', '.join(VARIANTS)}")
        out.append({"a": item["a"], "b": item["b"], "teacher": item.get("teacher", ""), "variant": variant})
    return out


def comparison_lines(comparisons: Sequence[Mapping[str, Any]], evidence: Evidence) -> list[str]:
    """REPORT.md's section for the requested comparisons (nothing when none were asked for)."""
    if not comparisons:
        return []
    lines = [
        "## Requested comparisons",
        "",
        "From the config's `comparisons:` (atkd.report.comparisons): A - B in average score, paired over",
        "seeds and documents; no direction is claimed.",
        "",
        "| A | B | teacher | +ATKD | A - B (average score) | reading |",
        "|---|---|---|---|---|---|",
    ]

    def arm(method: str, teacher: str, atkd: str) -> tuple[str, str, str]:
        # a method without a teacher (SFT) has its scores under the empty teacher
        return (method, teacher, atkd) if evidence.has_arm((method, teacher, atkd)) else (method, "", atkd)

    for c in comparisons:
        for atkd in VARIANTS[c["variant"]]:
            cmp = evidence.compare(arm(c["a"], c["teacher"], atkd), arm(c["b"], c["teacher"], atkd))
            text, verdict = (
                ("not measured", "one of the arms has no scores")
                if cmp is None
                else (cmp.text(), reading(cmp))
            )
            lines.append(f"| {c['a']} | {c['b']} | {c['teacher'] or '-'} | {atkd} | {text} | {verdict} |")
    return lines + [""]
