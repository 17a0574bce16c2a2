"""Generate the deterministic synthetic instruction world: KB, train/valid, pre-training text, 8 suites.

`generate_world(out_dir, seed=...)` writes (every file atomically, `manifest.json` last):

    kb.json                 the knowledge base and the known answer distributions (ground truth)
    train.jsonl valid.jsonl instruction records {id, family, instruction, input, output, judge[, answer_dist]}
                            with reference_noise, that share of train.jsonl's checkable records has a
                            wrong answer and `"noisy": true` (`atkd.data.noise`); valid.jsonl stays clean
    train_clean.jsonl       with reference_noise, train.jsonl with every true answer (the train.jsonl of
                            the world without noise): what a teacher with `references: clean` tunes on
    pretrain.txt            plain text, one document per line, no template (every model's pre-training);
                            with n_pretrain_qa, also that many "Q: ... A: ..." lines (`qa_documents`)
    pretrain_valid.txt      held-out plain text of the same kinds (pre-training validation loss)
    pretrain.jsonl, pretrain_valid.jsonl  with pretrain_line_breaks > 0, the same text as JSON lines
                            ({"text": ...} per document, some with line breaks: `pretrain.break_lines`)
                            in place of the two .txt files (`pretrain_files` names them)
    pretrain_mentions.json  how many fact documents each person has (fame; see `atkd.data.pretrain`)
    chance.csv              each suite's chance level (task, chance, definition; `suites.chance_level`)
    suites/<name>.jsonl     the eight evaluation suites (see `atkd.data.suites`)
    suites/<name>.fewshot.jsonl  few-shot pools of the understanding suites (mmlu, drop, bbh)
    manifest.json           parameters, counts, family mixes, sizes and sha256 of every file

Same seed and sizes -> byte-identical files (no global RNG, no set-order dependence, no timestamps).
Each part draws from its own `random.Random("atkd-world/<seed>/<part>")`, so e.g. the suites do not
change when only `n_train` changes. No evaluation prompt (template-formatted instruction + input) occurs
in train or valid, and valid prompts do not occur in train, except the tiny prompt spaces that training
must repeat with fresh samples ("Name a fruit.", single-operator boolean questions), which are never
used for evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from atkd.data.families import FAMILIES, STOCHASTIC_FAMILIES, TRAIN_MIX, Record, WorldContext
from atkd.data.jsonl import dumps_jsonl
from atkd.data.kb import build_kb
from atkd.data.noise import add_reference_noise
from atkd.data.pretrain import break_lines, generate_pretrain
from atkd.data.suites import (
    BBH_TASKS,
    CHANCE_DEFINITION,
    GENERATION_SUITES,
    UNDERSTANDING_SUITES,
    chance_level,
    gen_bbh,
    gen_drop,
    gen_mmlu,
)
from atkd.data.template import format_prompt
from atkd.fsutil import atomic_write_json, atomic_write_text

# Bumped whenever the same seed and sizes generate a different world; the workflow's `world` rule reruns on
# a change (its params hold it), so an old results/ folder does not keep a stale world.
WORLD_VERSION = 6
DEFAULTS: dict[str, int] = {
    "n_train": 18_000,
    "n_valid": 1_000,
    "n_eval": 200,
    "n_entities": 300,
    "n_pretrain": 10_000,
    "n_fewshot": 25,
}
# Characters per token under the project's byte-level BPE (vocab 1024, digits split), measured once on the
# default world (instruction records incl. template: 3.2; pre-training text: 2.8). Only used for the
# manifest's approximate token counts; the default train split measured ~643k tokens per epoch.
CHARS_PER_TOKEN = 3.2
PRETRAIN_CHARS_PER_TOKEN = 2.8
_MAX_TRIES = 2_000
CLEAN_TRAIN = "train_clean.jsonl"  # with reference_noise: train.jsonl's records with their true answers


def pretrain_files(line_breaks: float = 0.0) -> tuple[str, str]:
    """The world's pre-training text and its held-out part: `.txt` (one document per line), or `.jsonl`
    (one {"text": ...} record per document, line breaks kept) when `pretrain_line_breaks` > 0."""
    ext = "jsonl" if line_breaks else "txt"
    return f"pretrain.{ext}", f"pretrain_valid.{ext}"


def _corpus(docs: list[str], line_breaks: float) -> str:
    if line_breaks:
        return "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
    return "".join(d + "\n" for d in docs)


def prompt_key(record: Mapping[str, Any]) -> str:
    """The exact prompt a model sees for a record; two records with equal keys are the same question."""
    return format_prompt(record["instruction"], record.get("input"))


def _allocate(n: int, mix: Mapping[str, float]) -> list[tuple[str, int]]:
    """Split `n` over the mix by largest remainder (exact shares, deterministic tie-break by order)."""
    total = sum(mix.values())
    raw = [(name, n * w / total) for name, w in mix.items()]
    counts = {name: int(x) for name, x in raw}
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i][1] - int(raw[i][1])), i))
    for i in order[: n - sum(counts.values())]:
        counts[raw[i][0]] += 1
    return [(name, counts[name]) for name, _ in raw]


def _mmlu_fact_key(record: Mapping[str, Any]) -> str:
    return f"mmlu-fact:{record['entity']}:{record['subject']}"


def _draw(
    make: Callable[[], Record],
    reserved: set[str],
    what: str,
    key: Callable[[Mapping[str, Any]], str] = prompt_key,
) -> Record:
    """Draw records from `make` until one has a key (default: its prompt) outside `reserved`."""
    for _ in range(_MAX_TRIES):
        rec = make()
        if key(rec) not in reserved:
            return rec
    raise RuntimeError(
        f"could not draw a {what} record with a new prompt (or MMLU fact) after {_MAX_TRIES} tries: the "
        "space of distinct questions is exhausted; lower n_eval / n_valid / n_fewshot or raise n_entities"
    )


def _family_records(
    rng: random.Random,
    ctx: WorldContext,
    n: int,
    mix: Mapping[str, float],
    variant: str,
    heldout: bool,
    reserved: set[str],
    prefix: str,
    reserve: bool,
) -> list[Record]:
    """`n` records of a family mix, in shuffled order, with ids `<prefix>-<index>`.

    Prompts in `reserved` are never produced; with `reserve`, each new reservable prompt is added to
    `reserved` (evaluation and validation prompts, so that later splits avoid them)."""
    plan = [name for name, count in _allocate(n, mix) for _ in range(count)]
    rng.shuffle(plan)
    out = []
    for i, family in enumerate(plan):
        gen = FAMILIES[family]
        rec = _draw(partial(gen, rng, ctx, variant, heldout), reserved, f"{prefix}/{family}")
        if reserve and rec.pop("_reservable"):
            reserved.add(prompt_key(rec))
        rec.pop("_reservable", None)
        out.append({"id": f"{prefix}-{i:06d}", **rec})
    return out


def _understanding_records(
    rng: random.Random, ctx: WorldContext, suite: str, n: int, reserved: set[str], prefix: str
) -> list[Record]:
    out = []
    for i in range(n):
        if suite == "mmlu":
            make = partial(gen_mmlu, rng, ctx)
        elif suite == "drop":
            make = partial(gen_drop, rng, ctx)
        else:
            make = partial(gen_bbh, rng, ctx, BBH_TASKS[i % len(BBH_TASKS)])
        # MMLU: one question per KB fact over eval and few-shot pool (other distractors are not a new
        # question, and a few-shot example must never give away an evaluated fact).
        key = _mmlu_fact_key if suite == "mmlu" else prompt_key
        rec = _draw(make, reserved, prefix, key)
        reserved.add(prompt_key(rec))
        reserved.add(key(rec))
        out.append({"id": f"{prefix}-{i:06d}", **rec})
    return out


def qa_documents(rng: random.Random, ctx: WorldContext, n: int, held_out: set[str]) -> list[str]:
    """`n` one-line documents "Q: <instruction> <input> A: <output>": questions of the training families
    (their mix, their answer distributions) answered in plain text, as a web corpus holds them, so that a
    pre-trained base has seen questions answered before any instruction tuning. Never a prompt of
    `held_out` (the train, valid and evaluation prompts): families whose few prompts are all held out
    (e.g. "Name a fruit.") give none."""
    plan = [name for name, count in _allocate(n, TRAIN_MIX) for _ in range(count)]
    docs: list[str] = []
    for _ in range(20 * n):
        if len(docs) == n:
            return docs
        rec = FAMILIES[plan[rng.randrange(len(plan))]](rng, ctx, "base", False)
        if prompt_key(rec) in held_out:
            continue
        question = rec["instruction"] + (f" {rec['input']}" if rec.get("input") else "")
        docs.append(" ".join(f"Q: {question} A: {rec['output']}".split()))
    raise RuntimeError(f"only {len(docs)} of {n} question-answer documents have a held-out prompt")


def _noisy_counts(records: list[Record]) -> dict[str, int]:
    """Training records with a wrong reference, per family (families without any are left out)."""
    return dict(sorted(Counter(r["family"] for r in records if r.get("noisy")).items()))


def chance_csv(suites: Mapping[str, list[Record]], limit: int | None = None) -> str:
    """The chance table (task, chance, definition) of suites' records, on the first `limit` of each (the
    documents an evaluation with that limit scores)."""
    kinds = {n: "generation" for n in GENERATION_SUITES} | {n: "understanding" for n in UNDERSTANDING_SUITES}
    rows = [
        f'{name},{chance_level(recs[:limit]):.6f},"{CHANCE_DEFINITION[kinds[name]]}"\n'
        for name, recs in suites.items()
    ]
    return "task,chance,definition\n" + "".join(rows)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def generate_world(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_train: int = DEFAULTS["n_train"],
    n_valid: int = DEFAULTS["n_valid"],
    n_eval: int = DEFAULTS["n_eval"],
    n_entities: int = DEFAULTS["n_entities"],
    n_pretrain: int = DEFAULTS["n_pretrain"],
    n_fewshot: int = DEFAULTS["n_fewshot"],
    n_pretrain_qa: int = 0,
    pretrain_line_breaks: float = 0.0,
    reference_noise: float = 0.0,
) -> dict[str, Any]:
    """Generate the world into `out_dir` and return its manifest (also written as `manifest.json`).

    `n_eval` is the size of each of the eight suites, `n_fewshot` of each understanding suite's few-shot
    pool (at least 5, the largest shot count). `n_pretrain_qa` adds that many one-line question-answer
    documents to pretrain.txt (`qa_documents`; 0, the default, leaves every file as before).
    `pretrain_line_breaks` > 0 puts the sentences of that share of the prose documents on separate lines
    and writes the pre-training text as JSON lines (`pretrain_files`; 0, the default, leaves every file as
    before). `reference_noise` > 0 gives that share of the training records with a checkable answer a
    wrong one (`atkd.data.noise`; its own random stream, so nothing else changes). Deterministic in all
    arguments.
    """
    if n_pretrain_qa < 0:
        raise ValueError(f"n_pretrain_qa must be at least 0, got {n_pretrain_qa}")
    if not 0.0 <= pretrain_line_breaks <= 1.0:
        raise ValueError(f"pretrain_line_breaks must be between 0 and 1, got {pretrain_line_breaks}")
    if not 0.0 <= reference_noise < 1.0:
        raise ValueError(f"reference_noise must be at least 0 and below 1, got {reference_noise}")
    for name, value in (
        ("n_train", n_train),
        ("n_valid", n_valid),
        ("n_eval", n_eval),
        ("n_pretrain", n_pretrain),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if n_fewshot < 5:
        raise ValueError(f"n_fewshot must be at least 5 (MMLU is 5-shot), got {n_fewshot}")

    def rng_for(part: str) -> random.Random:
        return random.Random(f"atkd-world/{seed}/{part}")

    out = Path(out_dir)
    kb = build_kb(rng_for("kb"), n_entities)
    reserved: set[str] = set()
    ctx = WorldContext(kb, reserved=reserved)
    texts: dict[str, str] = {}
    counts: dict[str, int] = {}
    family_counts: dict[str, dict[str, int]] = {}

    def add_jsonl(rel: str, records: list[Record]) -> None:
        texts[rel] = dumps_jsonl(records)
        counts[rel] = len(records)
        if records and "family" in records[0]:
            family_counts[rel] = dict(sorted(Counter(r["family"] for r in records).items()))

    # Evaluation first, so its prompts are reserved before any training record is drawn.
    for name, spec in GENERATION_SUITES.items():
        recs = _family_records(
            rng_for(f"suite/{name}"), ctx, n_eval, spec.mix, spec.variant, True, reserved, name, reserve=True
        )
        add_jsonl(f"suites/{name}.jsonl", [{**r, "suite": name} for r in recs])
    for name in UNDERSTANDING_SUITES:
        rng = rng_for(f"suite/{name}")
        recs = _understanding_records(rng, ctx, name, n_eval, reserved, name)
        pool = _understanding_records(rng, ctx, name, n_fewshot, reserved, f"{name}-fewshot")
        add_jsonl(f"suites/{name}.jsonl", [{**r, "suite": name} for r in recs])
        add_jsonl(f"suites/{name}.fewshot.jsonl", [{**r, "suite": name} for r in pool])
    valid = _family_records(rng_for("valid"), ctx, n_valid, TRAIN_MIX, "base", False, reserved, "valid", True)
    train = _family_records(
        rng_for("train"), ctx, n_train, TRAIN_MIX, "base", False, reserved, "train", False
    )
    add_jsonl("valid.jsonl", valid)
    if reference_noise:  # answers only: the prompts, and so the pre-training Q&A below, stay as they were
        add_jsonl(CLEAN_TRAIN, train)  # the true answers, for a teacher told them (`references: clean`)
        train = add_reference_noise(train, rng_for("train-noise"), reference_noise)
    add_jsonl("train.jsonl", train)
    pretrain_docs, mentions = generate_pretrain(rng_for("pretrain"), ctx, n_pretrain)
    if n_pretrain_qa:  # questions answered in plain text, as a pre-training corpus holds them
        held_out = reserved | {prompt_key(r) for r in (*train, *valid)}
        pretrain_docs += qa_documents(rng_for("pretrain-qa"), ctx, n_pretrain_qa, held_out)
        rng_for("pretrain-qa-order").shuffle(pretrain_docs)
    # Held-out plain text of the same kinds (its own stream): the base models' validation loss.
    valid_docs, _ = generate_pretrain(rng_for("pretrain-valid"), ctx, max(20, n_pretrain // 50))
    if pretrain_line_breaks:  # own streams: the documents above are drawn as without line breaks
        pretrain_docs = break_lines(pretrain_docs, rng_for("pretrain-lines"), pretrain_line_breaks)
        valid_docs = break_lines(valid_docs, rng_for("pretrain-valid-lines"), pretrain_line_breaks)
    pretrain_name, valid_name = pretrain_files(pretrain_line_breaks)
    texts[pretrain_name] = _corpus(pretrain_docs, pretrain_line_breaks)
    texts[valid_name] = _corpus(valid_docs, pretrain_line_breaks)
    counts[valid_name] = len(valid_docs)
    texts["pretrain_mentions.json"] = json.dumps(mentions, indent=0) + "\n"
    suites = {
        name: [json.loads(line) for line in texts[f"suites/{name}.jsonl"].splitlines()]
        for name in (*GENERATION_SUITES, *UNDERSTANDING_SUITES)
    }
    texts["chance.csv"] = chance_csv(suites)
    counts[pretrain_name] = len(pretrain_docs)
    texts["kb.json"] = json.dumps(kb, indent=1, ensure_ascii=False) + "\n"

    def n_chars(records_text: str) -> tuple[int, int]:
        prompt = response = 0
        for line in records_text.splitlines():
            r = json.loads(line)
            prompt += len(format_prompt(r["instruction"], r.get("input")))
            response += len(r["output"])
        return prompt, response

    train_prompt_chars, train_response_chars = n_chars(texts["train.jsonl"])
    pretrain_chars = sum(len(d) + 1 for d in pretrain_docs)  # as one document per line
    manifest: dict[str, Any] = {
        "world_version": WORLD_VERSION,
        "seed": seed,
        "params": {
            "n_train": n_train,
            "n_valid": n_valid,
            "n_eval": n_eval,
            "n_entities": n_entities,
            "n_pretrain": n_pretrain,
            "n_fewshot": n_fewshot,
            **({"n_pretrain_qa": n_pretrain_qa} if n_pretrain_qa else {}),
            **({"pretrain_line_breaks": pretrain_line_breaks} if pretrain_line_breaks else {}),
            **({"reference_noise": reference_noise} if reference_noise else {}),
        },
        "kb": {
            "countries": len(kb["countries"]),
            "cities": len(kb["cities"]),
            "persons": len(kb["persons"]),
            "facts": 5 * len(kb["persons"]) + len(kb["cities"]),
            # Distinct facts asked by at least one training open-QA record (the rest only in pretrain.txt);
            # with a small KB and large eval/valid splits the held-out phrasings can take whole facts.
            "facts_in_train_open_qa": len(
                {(r["subject"], r["attribute"]) for r in train if r["family"] == "open_qa"}
            ),
        },
        "train_mix": TRAIN_MIX,
        "stochastic_families": list(STOCHASTIC_FAMILIES),
        "suites": {
            **{
                name: {"kind": "generation", "variant": s.variant, "shift": s.shift, "mix": s.mix}
                for name, s in GENERATION_SUITES.items()
            },
            **{name: {"kind": "understanding", **info} for name, info in UNDERSTANDING_SUITES.items()},
        },
        "family_counts": family_counts,
        **({"noisy_train_counts": _noisy_counts(train)} if reference_noise else {}),
        "size": {
            "train_prompt_chars": train_prompt_chars,
            "train_response_chars": train_response_chars,
            "pretrain_chars": pretrain_chars,
            "chars_per_token_estimate": CHARS_PER_TOKEN,
            "approx_train_tokens_per_epoch": round(
                (train_prompt_chars + train_response_chars) / CHARS_PER_TOKEN + n_train  # + one EOS each
            ),
            "approx_train_response_share": round(
                (train_response_chars / CHARS_PER_TOKEN + n_train)
                / ((train_prompt_chars + train_response_chars) / CHARS_PER_TOKEN + n_train),
                3,
            ),
            "approx_pretrain_tokens": round(pretrain_chars / PRETRAIN_CHARS_PER_TOKEN + len(pretrain_docs)),
        },
        "files": {
            rel: {"records": counts.get(rel), "sha256": _sha256(t)} for rel, t in sorted(texts.items())
        },
    }
    for rel, text in texts.items():
        atomic_write_text(out / rel, text)
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def _run_cli(args: argparse.Namespace) -> int:
    manifest = generate_world(
        args.out,
        seed=args.seed,
        n_train=args.n_train,
        n_valid=args.n_valid,
        n_eval=args.n_eval,
        n_entities=args.n_entities,
        n_pretrain=args.n_pretrain,
        n_fewshot=args.n_fewshot,
        n_pretrain_qa=args.n_pretrain_qa,
        pretrain_line_breaks=args.pretrain_line_breaks,
        reference_noise=args.reference_noise,
    )
    size = manifest["size"]
    kb = manifest["kb"]
    qa = f" + {args.n_pretrain_qa} Q&A" if args.n_pretrain_qa else ""
    print(
        f"world seed={manifest['seed']} -> {args.out}\n"
        f"  kb: {kb['persons']} persons, {kb['cities']} cities, {kb['countries']} countries, "
        f"{kb['facts']} facts\n"
        f"  train {manifest['params']['n_train']} / valid {manifest['params']['n_valid']} records, "
        f"~{size['approx_train_tokens_per_epoch']:,} tokens per epoch "
        f"(~{size['approx_train_response_share']:.0%} response), "
        f"pretrain {manifest['params']['n_pretrain']} docs{qa} ~{size['approx_pretrain_tokens']:,} tokens\n"
        f"  suites: {', '.join(manifest['suites'])} ({manifest['params']['n_eval']} each)"
    )
    return 0


def _run_chance(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"atkd chance: --limit must be at least 1, got {args.limit}")
    root = Path(args.world)
    suites = {}
    for name in (*GENERATION_SUITES, *UNDERSTANDING_SUITES):
        path = root / "suites" / f"{name}.jsonl"
        if not path.is_file():
            raise SystemExit(f"atkd chance: {path} not found (is {root} a world made by `atkd world`?)")
        suites[name] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    atomic_write_text(args.out, chance_csv(suites, args.limit))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd world --out DIR [--seed N] [--n-train ...]`: generate the synthetic world."""
    p = subparsers.add_parser(
        "world", help="generate the synthetic instruction world", description=__doc__.splitlines()[0]
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="world seed: the same seed gives the same files")
    p.add_argument("--n-train", type=int, default=DEFAULTS["n_train"], help="training records")
    p.add_argument("--n-valid", type=int, default=DEFAULTS["n_valid"], help="validation records")
    p.add_argument("--n-eval", type=int, default=DEFAULTS["n_eval"], help="records per evaluation suite")
    p.add_argument("--n-entities", type=int, default=DEFAULTS["n_entities"], help="KB entities (>= 20)")
    p.add_argument("--n-pretrain", type=int, default=DEFAULTS["n_pretrain"], help="pre-training documents")
    p.add_argument("--n-fewshot", type=int, default=DEFAULTS["n_fewshot"], help="few-shot pool per suite")
    p.add_argument(
        "--n-pretrain-qa", type=int, default=0, help="question-answer documents added to pretrain.txt"
    )
    p.add_argument(
        "--pretrain-line-breaks",
        type=float,
        default=0.0,
        help="share of prose pre-training documents with one sentence per line (> 0: pretrain.jsonl)",
    )
    p.add_argument(
        "--reference-noise",
        type=float,
        default=0.0,
        help="share of checkable training records drawn for a wrong answer (0 <= x < 1; valid stays clean)",
    )
    p.set_defaults(func=_run_cli)
    c = subparsers.add_parser(
        "chance",
        help="each suite's chance level on the documents an evaluation scores",
        description="Write task,chance,definition for every suite of a world, on its first --limit documents",
    )
    c.add_argument("--world", required=True, help="a world directory (`atkd world`)")
    c.add_argument("--limit", type=int, default=None, help="first N documents per suite (evaluation.limit)")
    c.add_argument("--out", required=True, help="CSV to write")
    c.set_defaults(func=_run_chance)
