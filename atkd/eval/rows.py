"""Tidy result rows from lm-eval's results: `metrics.csv` rows (meta..., task, metric, value, n), one
`generations.jsonl` record per document, and `doc_scores.csv` rows (meta..., task, doc, metric, value),
for the world's suites, outside instruction sets and benchmarks alike. Under the sampling protocol each
seed's rows become `metric@<seed>` rows plus their mean (`seeded_rows`, shared with `atkd judge`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from atkd.eval.registry import suite_of

log = logging.getLogger(__name__)

# The metrics that may score a task in the report's tables, in the order the report prefers them when
# the config does not say (atkd.report.tables): the study's judge ratio (the synthetic world's
# programmatic judge, or the LLM judge on real instruction sets), then accuracy, exact match, Rouge-L.
# `doc_scores.csv` holds the per-document scores of each of these that a task has.
PRIMARY_PREFERENCE = ("judge_ratio", "llm_judge_ratio", "acc_norm", "acc", "exact_match", "rougeL")
METRIC_COLUMNS = ("task", "metric", "value", "n")
DOC_COLUMNS = ("task", "doc", "metric", "value")


def check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """`meta` (the columns prepended to every output row) as a dict; keys that clash with an output
    column raise ValueError, since they would silently overwrite it."""
    meta = dict(meta or {})
    output = ("id", "doc", "prompt", "answer", "reference", "scores")
    clash = [k for k in meta if k in METRIC_COLUMNS or k in output]
    if clash:
        raise ValueError(f"meta keys {clash} clash with the output columns")
    return meta


def metric_rows(results: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Tidy rows (meta..., task, metric, value, n) from lm-eval's results (stderr entries dropped)."""
    rows = []
    for task_name, metrics in results["results"].items():
        n = int(results["n-samples"][task_name]["effective"])
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or isinstance(value, str):
                continue
            rows.append(
                {
                    **(meta or {}),
                    "task": suite_of(task_name),
                    "metric": metric,
                    "value": float(value),
                    "n": n,
                }
            )
    return rows


def generation_records(
    results: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One record per evaluated document: what the model was given, what it answered, and its scores."""
    out = []
    for task_name, samples in results.get("samples", {}).items():
        suite = suite_of(task_name)
        for s in sorted(samples, key=lambda s: s["doc_id"]):
            doc = s["doc"]
            rec: dict[str, Any] = {
                **(meta or {}),
                "task": suite,
                "id": doc["id"],
                "prompt": s["arguments"][0][0],
            }
            if "question" in doc:  # the bare request, for a judge (documents of the suite's tasks)
                rec["question"] = doc["question"]
            if "choices" in doc and "gold" in doc:
                lls = [float(ll) for ll, _ in s["filtered_resps"]]
                # The answer is the option the primary metric picks: per character when acc_norm is scored.
                per_char = [ll / max(len(c), 1) for ll, c in zip(lls, doc["choices"])]
                score = per_char if "acc_norm" in s else lls
                best = max(range(len(lls)), key=score.__getitem__)
                rec |= {"answer": doc["choices"][best], "reference": doc["choices"][doc["gold"]]}
                rec["scores"] = {k: float(s[k]) for k in ("acc", "acc_norm") if k in s}
                rec["scores"]["loglikelihoods"] = lls
            else:
                rec |= {"answer": s["filtered_resps"][0], "reference": doc["reference"]}
                scores: dict[str, Any] = {k: s[k] for k in ("rougeL", "acc", "exact_match", "f1") if k in s}
                if "judge_ratio" in s:
                    scores["judge"], scores["judge_reference"] = s["judge_ratio"]
                rec["scores"] = scores
            out.append(rec)
    return out


def doc_score_rows(
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
    *,
    rel: float = 1e-6,
) -> list[dict[str, Any]]:
    """Per-document scores (meta..., task, doc, metric, value) of each task's metrics that may score it in
    the report (PRIMARY_PREFERENCE; a benchmark's metric under an lm-eval filter as `metric[filter]`),
    from the generation records, so that the report can resample documents (atkd.report.stats).

    A document's value is its score averaged over sample seeds; for the judge ratio (sum of the answers'
    judge scores / sum of the references') it is the answer's judge score over the mean reference score of
    the task's documents (per sample seed). So in every case the mean over documents is the task's value
    in `rows` (metrics.csv). A metric whose documents disagree with that value (e.g. a benchmark group
    that lm-eval averages by subtask) or differ between sample seeds is left out, with a warning."""
    wanted = {
        (r["task"], r["metric"]): float(r["value"])
        for r in rows
        if "@" not in r["metric"] and r["metric"].split("[")[0] in PRIMARY_PREFERENCE
    }
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["task"], rec.get("sample_seed")), []).append(rec)
    values: dict[tuple[str, str], dict[Any, dict[str, float]]] = {}  # (task, metric) -> seed -> doc -> v
    repeated: set[tuple[str, str]] = set()
    for (task, seed), recs in groups.items():
        refs = [
            float(r["scores"]["judge_reference"]) for r in recs if "judge_reference" in r.get("scores", {})
        ]
        ref_mean = sum(refs) / len(refs) if refs else math.nan
        for rec in recs:
            doc = f"{rec['subtask']}/{rec['id']}" if "subtask" in rec else str(rec["id"])
            filt = rec.get("filter", "none")
            for key, value in rec.get("scores", {}).items():
                if key == "judge":
                    metric, value = "judge_ratio", float(value) / ref_mean
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                else:
                    metric = key if filt == "none" else f"{key}[{filt}]"
                if (task, metric) not in wanted:
                    continue
                docs = values.setdefault((task, metric), {}).setdefault(seed, {})
                if doc in docs:
                    repeated.add((task, metric))
                docs[doc] = float(value)
    out: list[dict[str, Any]] = []
    for (task, metric), by_seed in values.items():
        docs = list(next(iter(by_seed.values())))
        if (task, metric) in repeated or any(set(d) != set(docs) for d in by_seed.values()):
            log.warning("%s %s: documents repeat or differ between seeds: not per document", task, metric)
            continue
        per_doc = {doc: sum(d[doc] for d in by_seed.values()) / len(by_seed) for doc in docs}
        mean, table = sum(per_doc.values()) / len(per_doc), wanted[(task, metric)]
        if abs(mean - table) > rel * max(1.0, abs(table)):
            log.warning(
                "%s %s: document mean %r is not the task's %r: not per document", task, metric, mean, table
            )
            continue
        out += [
            {**(meta or {}), "task": task, "doc": doc, "metric": metric, "value": v}
            for doc, v in per_doc.items()
        ]
    return out


def seeded_rows(by_seed: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The sampling protocol's tidy rows from each sample seed's rows: every row as `metric@<seed>`, then
    per (task, metric) the mean over seeds as `metric` (the protocol's number; the first seed's n).
    `atkd evaluate` and `atkd judge` both write their sampled scores this way."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for seed, rows in by_seed.items():
        for row in rows:
            groups.setdefault((row["task"], row["metric"]), []).append(row)
            out.append({**row, "metric": f"{row['metric']}@{seed}"})
    for (_, metric), seeded in groups.items():
        out.append({**seeded[0], "metric": metric, "value": sum(r["value"] for r in seeded) / len(seeded)})
    return out


def benchmark_rows(
    results: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Tidy rows of the benchmarks' top-level scores (a group's aggregate, not its subtasks); a metric
    under a named lm-eval filter is written `metric[filter]`."""
    rows = []
    for name, spec in specs.items():
        task = spec["task"]
        metrics = results.get("results", {}).get(task) or results.get("groups", {}).get(task) or {}
        n_info = results.get("n-samples", {}).get(task, {})
        n = n_info.get("effective", "") if isinstance(n_info, Mapping) else ""
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if not filt or metric.endswith("_stderr") or not isinstance(value, int | float):
                continue
            label = metric if filt == "none" else f"{metric}[{filt}]"
            rows.append({**(meta or {}), "task": name, "metric": label, "value": float(value), "n": n})
    return rows


def benchmark_records(
    results: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One generation record per benchmark document, as for the suites: `task` (the config's name),
    `subtask` (lm-eval's, e.g. a subject of MMLU), id, prompt, answer (the chosen option of a
    log-likelihood task, else the generated text after lm-eval's filter), reference (lm-eval's target)
    and the document's numeric scores. Benchmarks' documents differ in shape, so only these fields."""
    owner: dict[str, str] = {}
    children = results.get("group_subtasks", {})

    def claim(task: str, name: str) -> None:
        owner.setdefault(task, name)
        for child in children.get(task, []):
            claim(child, name)

    for name, spec in specs.items():
        claim(spec["task"], name)
    out = []
    for subtask, samples in sorted(results.get("samples", {}).items()):
        for s in sorted(samples, key=lambda s: s["doc_id"]):
            args = [list(a) if isinstance(a, list | tuple) else [a] for a in s.get("arguments", [])]
            resps = s.get("filtered_resps", [])
            metrics = s.get("metrics") or [k for k in s if k not in ("doc_id", "target")]
            scored = {k: float(s[k]) for k in metrics if isinstance(s.get(k), int | float) and k in s}
            rec: dict[str, Any] = {
                **(meta or {}),
                "task": owner.get(subtask, subtask),
                "subtask": subtask,
                "filter": s.get("filter", "none"),
                "id": s["doc_id"],
                "prompt": str(args[0][0]) if args else "",
            }
            target = s.get("target", "")
            options = len(args) > 1 and all(len(a) > 1 and isinstance(a[1], str) for a in args)
            if options:  # a log-likelihood task: the answer is the most likely option, the target its index
                lls = [float(r[0] if isinstance(r, list | tuple) else r) for r in resps]
                best = max(range(len(lls)), key=lls.__getitem__) if lls else None
                rec["answer"] = args[best][1].strip() if best is not None else ""
                scored["loglikelihoods"] = lls
                if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(args):
                    target = args[target][1].strip()
            else:
                first = resps[0] if resps else ""
                rec["answer"] = first if isinstance(first, str) else json.dumps(first, default=str)
            rec["reference"] = target if isinstance(target, str) else json.dumps(target, default=str)
            rec["scores"] = scored
            out.append(rec)
    return out
