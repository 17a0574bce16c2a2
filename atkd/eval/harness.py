"""Evaluate a model on the world's suites through lm-evaluation-harness, in-process, into tidy files.

`evaluate` checks everything it is given (suites, instruction sets, benchmarks), writes the run's task
YAMLs (`atkd.eval.registry`), loads the model once, runs lm-eval over the suites (once, or once per sample
seed), then over the benchmarks (grouped by few-shot count), and turns the results into tidy rows
(`atkd.eval.rows`).

Outputs in `out_dir`, each written atomically (temp file + os.replace), `metrics.csv` last, so its presence
means the run finished:
    tasks/atkd_<suite>.yaml   the run's task configs
    generations.jsonl         per document: task, id, prompt (exactly what the model saw), answer,
                              reference, scores
    doc_scores.csv            per document: [meta columns...], task, doc, metric, value for the metrics
                              that may score a task (`doc_score_rows`; their mean is metrics.csv's value)
    lm_eval_results.json      lm-eval's aggregate results and task configs (provenance)
    metrics.csv               tidy rows: [meta columns...], task, metric, value, n
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atkd.data.jsonl import dumps_jsonl
from atkd.data.suites import SUITE_NAMES
from atkd.eval.benchmarks import benchmark_task_manager, check_benchmarks
from atkd.eval.instruct_sets import TASK_NAME, check_instruct_sets, resolve_instruct_sets
from atkd.eval.registry import (
    DEFAULT_MAX_NEW_TOKENS,
    SUITE_KIND,
    TASK_PREFIX,
    task_manager,
    validate_suites,
    write_task_yamls,
)
from atkd.eval.rows import (
    DOC_COLUMNS,
    METRIC_COLUMNS,
    benchmark_records,
    benchmark_rows,
    check_meta,
    doc_score_rows,
    generation_records,
    metric_rows,
    seeded_rows,
)
from atkd.fsutil import atomic_write_rows, atomic_write_text

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM

log = logging.getLogger(__name__)

DEFAULT_FEWSHOT_SEED = 1234  # lm-eval's default; fixed so that few-shot prompts do not change with `seed`

# lm-eval's results of each run over the suites with its sample seed (None: run once), and of each
# benchmark group with its specs.
SuiteResults = list[tuple[dict[str, Any], int | None]]
BenchmarkResults = list[tuple[dict[str, Any], dict[str, dict]]]


# ------------------------------------------------------------------------------------------ evaluate
def evaluate(
    model: str | Path,
    world_dir: str | Path | None,
    suites: Sequence[str],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    device: str = "auto",
    seed: int = 0,
    temperature: float = 0.0,
    fewshot_seed: int = DEFAULT_FEWSHOT_SEED,
    sample_seeds: Sequence[int] | None = None,
    num_fewshot: Mapping[str, int] | None = None,
    instruct_sets: Mapping[str, str | Path] | None = None,
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
    benchmark_include_path: str | Path | None = None,
    threads: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate `model` (HF directory or Hub id) on `suites` of the world in `world_dir`; write the run's
    task YAMLs, `generations.jsonl`, `doc_scores.csv`, `lm_eval_results.json` and `metrics.csv` into
    `out_dir`, and return the metric rows.

    `limit` evaluates the first N documents of each suite; `seed` seeds Python, NumPy and torch (it only
    matters when sampling, `temperature` > 0); `sample_seeds` (the MiniLLM/DistiLLM protocol: 10 20 30 40
    50 at temperature 1) samples the generation tasks once per seed, writing `<metric>@<seed>` rows and the
    mean over seeds as `<metric>`, while understanding suites run once; `fewshot_seed` picks the few-shot
    examples and `num_fewshot` ({suite: n}) overrides how many an understanding suite shows; `threads` sets
    torch's intra-op threads for the call (set it to the cores the job really has: oversubscribed CPU
    threads made evaluation ~10x slower on a loaded 2-core machine); `meta` columns (e.g. run, student,
    teacher, method, atkd, seed) are prepended to every output row.
    """
    sets = check_instruct_sets(instruct_sets)
    bench_tm = benchmark_task_manager(benchmark_include_path) if benchmarks else None
    bench = check_benchmarks(benchmarks, bench_tm)
    suites = validate_suites(suites) if suites or not (sets or bench) else []
    meta = check_meta(meta)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if sample_seeds is not None:
        sample_seeds = list(dict.fromkeys(int(x) for x in sample_seeds))
        if not sample_seeds or not temperature > 0:
            raise ValueError("sample_seeds needs at least one seed and a temperature > 0 (e.g. 1.0)")
    out_dir = Path(out_dir)
    tasks_dir = out_dir / "tasks"
    # Everything that can fail on bad input fails here, before the model is loaded.
    if suites or sets:
        write_task_yamls(
            suites,
            world_dir,
            tasks_dir,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            num_fewshot=num_fewshot,
            instruct_sets=sets,
            chat_tokenizer=_chat_tokenizer(model, tasks_dir),
        )
    suites = [*suites, *sets]
    plan = _plan(suites, sets, seed, sample_seeds)

    start = time.perf_counter()
    ran = _run_lm_eval(
        model,
        plan,
        bench,
        bench_tm,
        tasks_dir,
        limit=limit,
        batch_size=batch_size,
        device=device,
        seed=seed,
        fewshot_seed=fewshot_seed,
        threads=threads,
    )
    if ran is None:  # only on non-zero ranks of a distributed run
        return []
    outputs, bench_results = ran
    suites = [*suites, *bench]
    rows, gens = _tidy(outputs, bench_results, meta, suites)
    wall_seconds = _write_outputs(out_dir, model, rows, gens, outputs, bench_results, meta, start)
    log.info("evaluated %s on %s in %.1f s -> %s", model, ", ".join(suites), wall_seconds, out_dir)
    return rows


def _chat_tokenizer(model: str | Path, tasks_dir: Path) -> Path | None:
    """A copy of the model's tokenizer under the run's task folder if it has a chat template (documents
    are then prompted through it, as in training: atkd.data.template), else None."""
    from atkd.data.template import uses_chat
    from atkd.models import load_tokenizer

    tokenizer = load_tokenizer(model)
    if not uses_chat(tokenizer):
        return None
    folder = tasks_dir / "tokenizer"
    tokenizer.save_pretrained(folder)
    return folder


def _plan(
    suites: Sequence[str], sets: Mapping[str, Path], seed: int, sample_seeds: Sequence[int] | None
) -> list[tuple[list[str], int, int | None]]:
    """The lm-eval runs over the suites as (tasks, seed, sample seed or None): the tasks that are not
    sampled once with `seed`, then under `sample_seeds` the generation tasks once per sample seed."""
    sampled = [t for t in suites if t in sets or SUITE_KIND.get(t) == "generation"] if sample_seeds else []
    plan: list[tuple[list[str], int, int | None]] = []
    if once := [t for t in suites if t not in sampled]:
        plan.append((once, seed, None))
    plan += [(sampled, int(s), int(s)) for s in sample_seeds or []]
    if not once and not sampled:
        plan = []
    return plan


def _run_lm_eval(
    model: str | Path,
    plan: Sequence[tuple[list[str], int, int | None]],
    bench: Mapping[str, dict],
    bench_tm: Any,
    tasks_dir: Path,
    *,
    limit: int | None,
    batch_size: int,
    device: str,
    seed: int,
    fewshot_seed: int,
    threads: int | None,
) -> tuple[SuiteResults, BenchmarkResults] | None:
    """Load the model once and run lm-eval: the plan's runs over the run's task folder, then the
    benchmarks, one run per few-shot count. None on the non-zero ranks of a distributed run (lm-eval
    returns results on rank 0 only)."""
    import lm_eval
    import torch

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    outputs: SuiteResults = []
    bench_results: BenchmarkResults = []
    try:
        lm = make_lm(model, batch_size=batch_size, device=device)
        tasks = task_manager(tasks_dir) if plan else None
        for names, run_seed, sample_seed in plan:
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=[TASK_PREFIX + t for t in names],
                task_manager=tasks,
                limit=limit,
                bootstrap_iters=0,
                log_samples=True,
                random_seed=run_seed,
                numpy_random_seed=run_seed,
                torch_random_seed=run_seed,
                fewshot_random_seed=fewshot_seed,
            )
            if results is None:
                return None
            outputs.append((results, sample_seed))
        for shots in sorted({b["num_fewshot"] for b in bench.values()}):
            group = {k: b for k, b in bench.items() if b["num_fewshot"] == shots}
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=sorted({b["task"] for b in group.values()}),
                num_fewshot=shots,
                task_manager=bench_tm,
                limit=limit,
                bootstrap_iters=0,
                log_samples=True,  # the generations file holds every benchmark answer too
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=fewshot_seed,
            )
            if results is None:
                return None
            bench_results.append((results, group))
    finally:
        torch.set_num_threads(previous_threads)
    return outputs, bench_results


def make_lm(model: str | Path, *, batch_size: int = 8, device: str = "auto") -> HFLM:
    """Load model and tokenizer with `from_pretrained` (local directory or Hub id alike) and wrap them in
    lm-eval's HFLM. `add_bos_token=False`: prompts are tokenised as in training (no special tokens added)."""
    from lm_eval.models.huggingface import HFLM

    from atkd.models import load_model, load_tokenizer, resolve_device

    tokenizer = load_tokenizer(model)
    hf_model = load_model(model, device=resolve_device(device)).eval()
    if hf_model.generation_config.eos_token_id is None:  # generation must stop at EOS
        hf_model.generation_config.eos_token_id = tokenizer.eos_token_id
    return HFLM(pretrained=hf_model, tokenizer=tokenizer, batch_size=batch_size, add_bos_token=False)


def _tidy(
    outputs: SuiteResults, bench_results: BenchmarkResults, meta: Mapping[str, Any], order: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(metric rows, generation records) of every run, sampled runs as per-seed rows and their mean,
    sorted by task in `order` (stably: within a task in the order lm-eval gave them)."""
    rows, gens, by_seed = [], [], {}
    for results, sample_seed in outputs:
        if sample_seed is None:
            rows += metric_rows(results, meta)
            gens += generation_records(results, meta)
            continue
        by_seed[sample_seed] = metric_rows(results, meta)
        gens += [{**g, "sample_seed": sample_seed} for g in generation_records(results, meta)]
    rows += seeded_rows(by_seed)
    for results, group in bench_results:
        rows += benchmark_rows(results, group, meta)
        gens += benchmark_records(results, group, meta)
    position = {s: i for i, s in enumerate(order)}
    rows.sort(key=lambda r: position[r["task"]])
    gens.sort(key=lambda r: position[r["task"]])
    return rows, gens


def _write_outputs(
    out_dir: Path,
    model: str | Path,
    rows: Sequence[Mapping[str, Any]],
    gens: Sequence[Mapping[str, Any]],
    outputs: SuiteResults,
    bench_results: BenchmarkResults,
    meta: Mapping[str, Any],
    start: float,
) -> float:
    """Write generations.jsonl, doc_scores.csv, lm_eval_results.json and metrics.csv (last: its presence
    means the run finished); returns the run's wall seconds since `start`, as recorded in the provenance."""
    from lm_eval.utils import handle_non_serializable

    atomic_write_text(out_dir / "generations.jsonl", dumps_jsonl(gens))
    docs = doc_score_rows(gens, rows, meta)
    atomic_write_rows(out_dir / "doc_scores.csv", docs, [*meta, *DOC_COLUMNS])
    provenance: dict[str, Any] = {
        "runs": [
            {
                "sample_seed": sample_seed,
                **{
                    k: res.get(k) for k in ("results", "n-shot", "n-samples", "versions", "config", "configs")
                },
            }
            for res, sample_seed in outputs
        ],
        "benchmarks": [
            {k: res.get(k) for k in ("results", "groups", "n-shot", "versions")} for res, _ in bench_results
        ],
    }
    provenance["model"] = str(model)
    provenance["wall_seconds"] = round(time.perf_counter() - start, 3)
    atomic_write_text(
        out_dir / "lm_eval_results.json",
        json.dumps(provenance, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n",
    )
    atomic_write_rows(out_dir / "metrics.csv", rows, [*meta, *METRIC_COLUMNS])
    return provenance["wall_seconds"]


# ----------------------------------------------------------------------------------------------- CLI
def _meta_item(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
    return key, value


def _instruct_item(item: str) -> tuple[str | None, str]:
    """`NAME=PATH`, or a path or glob pattern whose files are named by their stems."""
    key, sep, value = item.partition("=")
    if sep and TASK_NAME.fullmatch(key):
        return key, value
    return None, item


def _shots_item(item: str) -> tuple[str, int]:
    key, value = _meta_item(item)
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SUITE=N with an integer N, got {item!r}") from None


def _benchmark_item(item: str) -> tuple[str, dict[str, Any]]:
    name, value = _meta_item(item)
    task, _, shots = value.partition(":")
    try:
        return name, {"task": task, "num_fewshot": int(shots or 0)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=TASK[:SHOTS], got {item!r}") from None


def _run_cli(args: argparse.Namespace) -> int:
    named = {name: path for name, path in args.instruct_set if name is not None}
    patterns = [path for name, path in args.instruct_set if name is None]
    try:
        found = {str(k): str(v) for k, v in resolve_instruct_sets(patterns).items()}
    except ValueError as err:
        raise SystemExit(f"atkd evaluate: --instruct-set: {err}") from None
    clash = sorted(set(found) & set(named))
    if clash:
        raise SystemExit(f"atkd evaluate: --instruct-set: two instruction sets are named {clash[0]!r}")
    sets = found | named
    suites = args.suites if args.suites is not None else ([] if sets or args.benchmark else list(SUITE_NAMES))
    if suites and args.world is None:
        raise SystemExit("atkd evaluate: --world is required for the world's suites")
    rows = evaluate(
        args.model,
        Path(args.world) if args.world else None,
        suites,
        Path(args.out),
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        seed=args.seed,
        temperature=args.temperature,
        threads=args.threads,
        meta=dict(args.meta),
        num_fewshot=dict(args.num_fewshot),
        instruct_sets=sets,
        sample_seeds=args.sample_seeds,
        benchmarks=dict(args.benchmark),
    )
    for r in rows:
        print(f"{r['task']:<10} {r['metric']:<12} {r['value']:.4f}  (n={r['n']})")
    print(f"wrote {Path(args.out) / 'metrics.csv'} and {Path(args.out) / 'generations.jsonl'}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd evaluate --model DIR --world DIR --suites ... --out DIR [--limit N] [--meta k=v ...]`."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on the world's suites with lm-evaluation-harness",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", required=True, help="model directory or Hub id (tokenizer alongside)")
    p.add_argument("--world", default=None, help="world directory (from `atkd world`), for its suites")
    p.add_argument(
        "--suites",
        nargs="*",
        default=None,
        choices=SUITE_NAMES,
        metavar="SUITE",
        help=f"default: all ({' '.join(SUITE_NAMES)}), or none when --instruct-set is given",
    )
    p.add_argument(
        "--benchmark",
        nargs="*",
        type=_benchmark_item,
        default=[],
        metavar="NAME=TASK[:SHOTS]",
        help="lm-eval tasks by name, e.g. mmlu=mmlu:5 drop=drop:3 bbh=bbh_cot_fewshot:3 (data from the Hub)",
    )
    p.add_argument(
        "--instruct-set",
        nargs="*",
        type=_instruct_item,
        default=[],
        metavar="NAME=PATH|PATTERN",
        help="outside instruction sets (JSONL: instruction, optional input, output) as generation tasks:"
        " NAME=PATH, or paths / glob patterns (quoted) whose files are named by their stems",
    )
    p.add_argument("--out", required=True, help="output directory (metrics.csv, generations.jsonl, ...)")
    p.add_argument("--limit", type=int, default=None, help="first N documents of each suite")
    p.add_argument("--batch-size", type=int, default=8, help="documents per forward pass")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"tokens an answer may have (default: {DEFAULT_MAX_NEW_TOKENS}, the study's budget)",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the study); >0 samples")
    p.add_argument("--device", default="auto", help="auto (a GPU where visible), cpu, cuda, cuda:N")
    p.add_argument(
        "--seed", type=int, default=0, help="seeds Python, NumPy and torch (matters when sampling)"
    )
    p.add_argument(
        "--sample-seeds",
        nargs="+",
        type=int,
        default=None,
        help="sample the generation tasks once per seed at --temperature (MiniLLM/DistiLLM: 10 20 30 40 50)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--num-fewshot",
        nargs="*",
        type=_shots_item,
        default=[],
        metavar="SUITE=N",
        help="few-shot examples of an understanding suite (default: mmlu=5 drop=3 bbh=3)",
    )
    p.add_argument(
        "--meta",
        nargs="*",
        type=_meta_item,
        default=[],
        metavar="KEY=VALUE",
        help="columns prepended to every row",
    )
    p.set_defaults(func=_run_cli)
