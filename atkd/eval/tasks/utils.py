"""Helpers the task YAMLs in this folder name with `!function utils.<name>`: data loading, per-document
scoring and the judge's ratio aggregation.

Stateless on purpose: lm-eval imports this file by path (as its own module), and tests import it as
`atkd.eval.tasks.utils`; both copies must behave the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from atkd.data.jsonl import read_jsonl
from atkd.data.judge import judge_score
from atkd.data.template import prompt_for, question
from atkd.eval.llm_judge.protocol import ratio

# Fields a record of each task kind must have (read_jsonl checks presence and type, with file:line).
REQUIRED_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "generation": {"instruction": str, "output": str},
    "multiple_choice": {"instruction": str, "output": str, "choices": list, "gold": int},
    "instruct": {"instruction": str, "output": str},
}


@lru_cache(maxsize=2)
def _tokenizer(path: str) -> Any:
    from atkd.models.tokenizer import load_tokenizer

    return load_tokenizer(path)


def _doc(
    record: Mapping[str, Any], fallback_id: str, kind: str, where: str, tokenizer: Any = None
) -> dict[str, Any]:
    """One flat lm-eval document: its prompt as training builds it (`prompt_for`: the chat template of
    `tokenizer` if given, else the suite's template) and the bare request (`question`, what a judge is
    shown). The full record travels as a JSON string in `record`, because its nested, heterogeneous
    fields (`judge`, `answer_dist`) would otherwise be widened by Arrow's schema inference into structs
    full of nulls that the judge cannot read back."""
    doc = {
        "id": str(record.get("id", fallback_id)),
        "prompt": prompt_for(record["instruction"], record.get("input"), tokenizer),
        "question": question(record["instruction"], record.get("input")),
        "reference": record["output"],
        "record": json.dumps(record, ensure_ascii=False),
    }
    if kind == "multiple_choice":
        choices = [str(c) for c in record["choices"]]
        if not 0 <= record["gold"] < len(choices):
            raise ValueError(f"{where}: gold index {record['gold']} outside the {len(choices)} choices")
        doc["choices"], doc["gold"] = choices, record["gold"]
    return doc


def read_docs(path: str | Path, kind: str, tokenizer: str | None = None) -> list[dict[str, Any]]:
    """Read a suite file into flat documents (errors name file and line); `tokenizer` (a path) prompts
    through its chat template."""
    if kind not in REQUIRED_FIELDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(REQUIRED_FIELDS)}")
    path = Path(path)
    if not path.is_file():
        hint = "" if kind == "instruct" else " (generate the world with `atkd world`)"
        raise FileNotFoundError(f"suite file not found: {path}{hint}")
    chat = None if tokenizer is None else _tokenizer(str(tokenizer))
    docs = [
        _doc(rec, f"{path.stem}-{i:06d}", kind, f"{path}: record {i + 1}", chat)
        for i, rec in enumerate(read_jsonl(path, REQUIRED_FIELDS[kind], optional={"input": str}))
    ]
    if not docs:
        raise ValueError(f"{path}: no records")
    return docs


def load_suite(
    path: str, kind: str, fewshot_path: str | None = None, tokenizer: str | None = None, **_: Any
) -> Any:
    """`custom_dataset` of every task: a DatasetDict with split `test` (and `fewshot` if a pool is given).

    lm-eval calls this with the task's `metadata` and `dataset_kwargs` as keyword arguments; the path
    (and, for a model with a chat template, its `tokenizer`) arrives in `dataset_kwargs`, written at run
    time into the run's task YAML (see atkd.eval.harness).
    """
    import datasets

    splits = {"test": datasets.Dataset.from_list(read_docs(path, kind, tokenizer))}
    if fewshot_path:
        splits["fewshot"] = datasets.Dataset.from_list(read_docs(fewshot_path, kind, tokenizer))
    return datasets.DatasetDict(splits)


# ------------------------------------------------------------------------------------------- metrics
@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    """Rouge-L F-measure of `prediction` against `reference` (rouge_score, Porter stemming), in [0, 1]."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def _record(doc: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(doc["record"])


def process_generation(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """Per-document scores of a generation suite: Rouge-L against the reference answer, and the
    programmatic judge's (answer score, reference score) pair on the 1-10 scale, which `judge_ratio`
    aggregates into the study's ratio."""
    answer = results[0]
    record = _record(doc)
    return {
        "rougeL": rouge_l(answer, doc["reference"]),
        "judge_ratio": (judge_score(record, answer), judge_score(record, record["output"])),
    }


def process_instruct(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """Per-document score of an outside instruction set: Rouge-L against the reference answer."""
    return {"rougeL": rouge_l(results[0], doc["reference"])}


# The study's task score over the documents' (answer, reference) judge score pairs: sum / sum, the same
# ratio the LLM judge reports (generation.yaml's `aggregation: !function utils.judge_ratio`).
judge_ratio = ratio
