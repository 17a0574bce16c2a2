"""`atkd judge`: score the answers of an `atkd evaluate` run (its generations.jsonl) with the LLM judge,
into `judgements.jsonl` and tidy `metrics.csv` rows. Under the sampling protocol (generations with a
`sample_seed`) each seed gets its own `llm_judge_ratio@<seed>` row and the headline `llm_judge_ratio` is
their mean, as `atkd evaluate` does for its metrics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atkd.data.jsonl import read_jsonl
from atkd.data.template import parse_prompt
from atkd.eval.llm_judge.client import LLMJudge
from atkd.eval.llm_judge.config import JudgeConfig
from atkd.eval.llm_judge.protocol import ratio
from atkd.eval.rows import seeded_rows
from atkd.fsutil import atomic_write_rows, atomic_write_text

log = logging.getLogger(__name__)


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
    from tqdm.auto import tqdm

    records = [
        r
        for r in read_jsonl(
            generations,
            {"task": str, "prompt": str, "answer": str, "reference": str},
            optional={"sample_seed": int, "question": str},
        )
        if (tasks is None or r["task"] in tasks) and "rougeL" in r.get("scores", {"rougeL": None})
    ]
    if not records:
        raise ValueError(f"{generations}: no generation-task answers to judge (tasks: {tasks or 'all'})")
    items = []
    for r in records:
        if "question" in r:
            question = r["question"]
        else:  # a generations file written before documents carried their request
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
    atomic_write_text(out_dir / "judgements.jsonl", "".join(lines))
    atomic_write_rows(out_dir / "metrics.csv", rows, list(rows[0]))
    return rows


# ---------------------------------------------------------------------------------------------- CLI
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
        description="An LLM judge for any OpenAI-compatible chat endpoint, in the study's form.",
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
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument(
        "--max-retries",
        type=int,
        default=5,
        help="extra attempts after a failed request or an unparseable reply",
    )
    p.add_argument(
        "--rpm",
        type=float,
        default=None,
        help="requests per minute, shared by all judge processes on this machine (default: no limit)",
    )
    p.add_argument(
        "--meta", nargs="*", default=[], metavar="KEY=VALUE", help="columns prepended to every row"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_cli)
