"""Evaluation through lm-eval: task YAMLs, the harness's files, prompts, few-shot counts, metrics, CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from atkd import cli  # noqa: E402
from atkd.data.judge import judge_score, ratio_score  # noqa: E402
from atkd.data.suites import GENERATION_SUITES, SUITE_NAMES, UNDERSTANDING_SUITES  # noqa: E402
from atkd.data.template import INSTRUCTION_HEADER, format_prompt  # noqa: E402
from atkd.data.world import generate_world  # noqa: E402
from atkd.eval import evaluate, validate_suites  # noqa: E402
from atkd.eval.instruct_sets import check_instruct_sets, resolve_instruct_sets  # noqa: E402
from atkd.eval.registry import suite_files, task_config  # noqa: E402
from atkd.eval.tasks import utils  # noqa: E402
from atkd.models import build_model, save_model, train_tokenizer  # noqa: E402
from atkd.models.tokenizer import iter_texts  # noqa: E402

LIMIT = 3


def read_records(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=0, n_train=200, n_valid=10, n_eval=8, n_entities=30, n_pretrain=10, n_fewshot=6)
    return root


@pytest.fixture(scope="module")
def model_dir(world, tmp_path_factory) -> Path:
    """A tiny randomly initialised GPT-NeoX with the project's tokenizer, saved as an HF directory."""
    tok = train_tokenizer(iter_texts([world / "train.jsonl"]), vocab_size=300)
    model = build_model(
        "neox-32x2", len(tok), seed=0, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    return save_model(model, tmp_path_factory.mktemp("model") / "m", tok)


@pytest.fixture(scope="module")
def run(world, model_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("eval") / "out"
    rows = evaluate(
        model_dir,
        world,
        ["dolly", "mmlu"],
        out,
        limit=LIMIT,
        batch_size=2,
        max_new_tokens=8,
        threads=1,
        meta={"run": "r0", "seed": 7},
    )
    return out, rows


# ------------------------------------------------------------------------------------- end to end
def test_evaluate_writes_tidy_metrics_and_generations(run):
    out, rows = run
    assert sorted(p.name for p in out.iterdir()) == [
        "doc_scores.csv",
        "generations.jsonl",
        "lm_eval_results.json",
        "metrics.csv",
        "tasks",
    ]  # no temporary files left behind
    assert sorted(p.name for p in (out / "tasks").iterdir()) == ["atkd_dolly.yaml", "atkd_mmlu.yaml"]
    columns, csv_rows = read_csv(out / "metrics.csv")
    assert columns == ["run", "seed", "task", "metric", "value", "n"]
    assert {(r["task"], r["metric"]) for r in csv_rows} == {
        ("dolly", "rougeL"),
        ("dolly", "judge_ratio"),
        ("mmlu", "acc"),
        ("mmlu", "acc_norm"),
    }
    assert all(r["run"] == "r0" and r["seed"] == "7" and int(r["n"]) == LIMIT for r in csv_rows)
    assert [(r["task"], r["metric"], float(r["value"])) for r in csv_rows] == [
        (r["task"], r["metric"], r["value"]) for r in rows
    ]
    for r in rows:
        assert 0.0 <= r["value"] <= (10.0 if r["metric"] == "judge_ratio" else 1.0)

    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [g["task"] for g in gens] == ["dolly"] * LIMIT + ["mmlu"] * LIMIT
    for g in gens:
        assert {"run", "seed", "task", "id", "prompt", "answer", "reference", "scores"} <= set(g)
        assert isinstance(g["answer"], str)


def _doc_means(path: Path) -> dict[tuple[str, str], float]:
    """(task, metric) -> mean over documents of doc_scores.csv, checking one row per document."""
    _, rows = read_csv(path)
    keys = [(r["task"], r["metric"], r["doc"]) for r in rows]
    assert len(keys) == len(set(keys))
    out: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        out.setdefault((r["task"], r["metric"]), []).append(float(r["value"]))
    return {k: sum(v) / len(v) for k, v in out.items()}


def test_doc_scores_average_to_the_task_scores(run):
    """doc_scores.csv: the meta columns, task, doc, metric, value of each task's primary metrics, one row
    per document; the mean over documents is metrics.csv's value (the judge ratio too: sum over sum)."""
    out, rows = run
    columns, docs = read_csv(out / "doc_scores.csv")
    assert columns == ["run", "seed", "task", "doc", "metric", "value"]
    assert all(r["run"] == "r0" and r["seed"] == "7" for r in docs)
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert {(r["task"], r["doc"]) for r in docs} == {(g["task"], g["id"]) for g in gens}
    means = _doc_means(out / "doc_scores.csv")
    table = {(r["task"], r["metric"]): r["value"] for r in rows}
    assert set(means) == {
        ("dolly", "judge_ratio"),
        ("dolly", "rougeL"),
        ("mmlu", "acc"),
        ("mmlu", "acc_norm"),
    }
    for key, mean in means.items():
        assert mean == pytest.approx(table[key], rel=1e-9, abs=1e-12)


def test_doc_score_rows_from_records():
    """The judge ratio per document is the answer's score over the mean reference score (per sample seed),
    averaged over seeds; a benchmark's filtered metric keeps its label; documents whose mean is not the
    task's value (a group averaged by subtask) are left out."""
    from atkd.eval.rows import doc_score_rows

    recs = [
        {
            "task": "g",
            "id": f"g{i}",
            "sample_seed": s,
            "scores": {"judge": a, "judge_reference": r, "rougeL": 0.5},
        }
        for s, pairs in ((10, [(2.0, 8.0), (6.0, 4.0)]), (20, [(4.0, 8.0), (2.0, 4.0)]))
        for i, (a, r) in enumerate(pairs)
    ]
    recs += [
        {"task": "b", "subtask": sub, "filter": "strict", "id": 0, "scores": {"exact_match": v}}
        for sub, v in (("b_x", 1.0), ("b_y", 0.0))
    ]
    rows = [
        {"task": "g", "metric": "judge_ratio", "value": (8 / 12 + 6 / 12) / 2},
        {"task": "g", "metric": "judge_ratio@10", "value": 8 / 12},
        {"task": "g", "metric": "rougeL", "value": 0.5},
        {"task": "b", "metric": "exact_match[strict]", "value": 0.5},
    ]
    got = {(r["task"], r["doc"], r["metric"]): r["value"] for r in doc_score_rows(recs, rows, {"run": "x"})}
    assert got == pytest.approx(
        {
            ("g", "g0", "judge_ratio"): (2 / 6 + 4 / 6) / 2,
            ("g", "g1", "judge_ratio"): (6 / 6 + 2 / 6) / 2,
            ("g", "g0", "rougeL"): 0.5,
            ("g", "g1", "rougeL"): 0.5,
            ("b", "b_x/0", "exact_match[strict]"): 1.0,
            ("b", "b_y/0", "exact_match[strict]"): 0.0,
        }
    )
    rows[-1]["value"] = 0.75  # e.g. lm-eval weighting subtasks, not documents
    assert {r["task"] for r in doc_score_rows(recs, rows)} == {"g"}


def test_generation_prompt_is_the_training_template_and_scores_match_the_judge(run, world):
    out, rows = run
    records = read_records(world / "suites" / "dolly.jsonl")
    gens = [
        g
        for g in map(json.loads, (out / "generations.jsonl").read_text().splitlines())
        if g["task"] == "dolly"
    ]
    assert [g["id"] for g in gens] == list(records)[:LIMIT]  # `limit` takes the first N, in file order
    for g in gens:
        rec = records[g["id"]]
        assert g["prompt"] == format_prompt(rec["instruction"], rec.get("input"))  # nothing else around it
        assert g["reference"] == rec["output"]
        assert g["scores"]["judge"] == judge_score(rec, g["answer"])
        assert g["scores"]["judge_reference"] == judge_score(rec, rec["output"])
        assert g["scores"]["rougeL"] == pytest.approx(utils.rouge_l(g["answer"], rec["output"]))
    # The aggregated task score is the study's ratio exactly as the data module defines it.
    judge_row = next(r for r in rows if r["task"] == "dolly" and r["metric"] == "judge_ratio")
    expected = ratio_score([records[g["id"]] for g in gens], [g["answer"] for g in gens])
    assert judge_row["value"] == pytest.approx(expected)


def test_multiple_choice_uses_the_fewshot_pool_and_count(run, world):
    out, rows = run
    shots = UNDERSTANDING_SUITES["mmlu"]["num_fewshot"]
    records = read_records(world / "suites" / "mmlu.jsonl")
    pool = {
        format_prompt(r["instruction"], r.get("input")) + r["output"]
        for r in read_records(world / "suites" / "mmlu.fewshot.jsonl").values()
    }
    gens = [
        g
        for g in map(json.loads, (out / "generations.jsonl").read_text().splitlines())
        if g["task"] == "mmlu"
    ]
    correct = 0
    for g in gens:
        rec = records[g["id"]]
        assert g["prompt"].count(INSTRUCTION_HEADER) == shots + 1
        examples = g["prompt"].split("\n\n")
        assert len(examples) == shots + 1
        assert examples[-1] == format_prompt(rec["instruction"], rec.get("input"))
        assert all(e in pool for e in examples[:-1])
        lls = g["scores"]["loglikelihoods"]
        assert len(lls) == len(rec["choices"])
        summed = max(range(len(lls)), key=lls.__getitem__)
        # The answer is acc_norm's pick: the highest log-likelihood per character of the option.
        per_char = [ll / len(c) for ll, c in zip(lls, rec["choices"])]
        assert g["answer"] == rec["choices"][max(range(len(lls)), key=per_char.__getitem__)]
        assert g["reference"] == rec["choices"][rec["gold"]]
        assert g["scores"]["acc_norm"] == float(g["answer"] == g["reference"])
        assert g["scores"]["acc"] == float(summed == rec["gold"])
        correct += g["scores"]["acc_norm"]
    acc = next(r["value"] for r in rows if r["task"] == "mmlu" and r["metric"] == "acc_norm")
    assert acc == pytest.approx(correct / len(gens))


def test_cli_understanding_suite_with_meta_columns(world, model_dir, tmp_path):
    out = tmp_path / "cli"
    argv = [
        "evaluate",
        "--model",
        str(model_dir),
        "--world",
        str(world),
        "--suites",
        "drop",
        "--out",
        str(out),
    ]
    argv += [
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--threads",
        "1",
        "--meta",
        "run=cli",
        "method=kd",
        "atkd=true",
    ]
    threads = torch.get_num_threads()
    assert cli.main(argv) == 0
    assert torch.get_num_threads() == threads  # restored after the call
    columns, rows = read_csv(out / "metrics.csv")
    assert columns == ["run", "method", "atkd", "task", "metric", "value", "n"]
    assert {(r["task"], r["metric"], r["n"]) for r in rows} == {
        ("drop", "acc", "2"),
        ("drop", "acc_norm", "2"),
    }
    gens = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    shots = UNDERSTANDING_SUITES["drop"]["num_fewshot"]
    assert all(g["prompt"].count(INSTRUCTION_HEADER) == shots + 1 for g in gens)
    docs = {r["id"]: r for r in map(json.loads, (world / "suites" / "drop.jsonl").read_text().splitlines())}
    for g in gens:  # multiple choice over the options' answer sentences
        assert g["answer"] in docs[g["id"]]["choices"] and g["reference"] == docs[g["id"]]["output"]


def test_batched_generation_equals_one_at_a_time(world, model_dir, tmp_path):
    """Left-padded batches must not change greedy answers (positions and masks are handled)."""
    answers = []
    for bs in (1, 4):
        evaluate(
            model_dir,
            world,
            ["vicuna"],
            tmp_path / f"bs{bs}",
            limit=4,
            batch_size=bs,
            max_new_tokens=8,
            threads=1,
        )
        answers.append([json.loads(x)["answer"] for x in (tmp_path / f"bs{bs}" / "generations.jsonl").open()])
    assert answers[0] == answers[1]


# ----------------------------------------------------------------------------------- validation
def test_unknown_suite_fails_before_anything_runs_and_lists_valid_names(world, model_dir, tmp_path):
    with pytest.raises(ValueError) as err:
        evaluate(model_dir, world, ["dolly", "squad"], tmp_path / "out")
    message = str(err.value)
    assert "'squad'" in message and all(name in message for name in SUITE_NAMES)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="valid suites"):
        validate_suites([])
    assert validate_suites(["mmlu", "dolly", "mmlu"]) == ["mmlu", "dolly"]


def test_missing_world_and_bad_meta_fail_early(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="dolly.jsonl"):
        evaluate(model_dir, tmp_path / "no-world", ["dolly"], tmp_path / "out")
    with pytest.raises(ValueError, match="clash"):
        evaluate(model_dir, tmp_path / "no-world", ["dolly"], tmp_path / "out", meta={"task": "x"})
    assert not (tmp_path / "out").exists()


def test_task_config_settings(world):
    gen = task_config("koala", world, max_new_tokens=64, temperature=1.0)
    assert gen["generation_kwargs"] == {
        "until": [],
        "do_sample": True,
        "max_gen_toks": 64,
        "temperature": 1.0,
    }
    assert "num_fewshot" not in gen and gen["dataset_kwargs"]["kind"] == "generation"
    greedy = task_config("koala", world)["generation_kwargs"]
    assert greedy["do_sample"] is False and greedy["max_gen_toks"] == 256
    bbh = task_config("bbh", world, max_new_tokens=512, temperature=1.0)
    assert bbh["num_fewshot"] == UNDERSTANDING_SUITES["bbh"]["num_fewshot"]
    assert "generation_kwargs" not in bbh  # multiple choice: scored by log-likelihood, never sampled
    assert Path(task_config("mmlu", world)["dataset_kwargs"]["fewshot_path"]).name == "mmlu.fewshot.jsonl"
    with pytest.raises(ValueError, match="max_new_tokens"):
        task_config("dolly", world, max_new_tokens=0)


# ------------------------------------------------------------------------------------ task utils
def test_references_score_one_under_rouge_and_the_judge_ratio(world):
    for suite in GENERATION_SUITES:
        docs = utils.read_docs(world / "suites" / f"{suite}.jsonl", "generation")
        per_doc = [utils.process_generation(doc, [doc["reference"]]) for doc in docs]
        assert all(d["rougeL"] == pytest.approx(1.0) for d in per_doc)
        assert utils.judge_ratio([d["judge_ratio"] for d in per_doc]) == pytest.approx(1.0)


def test_judge_ratio_is_sum_over_sum_not_mean_of_ratios(world):
    records = list(read_records(world / "suites" / "wizardlm.jsonl").values())
    docs = utils.read_docs(world / "suites" / "wizardlm.jsonl", "generation")
    answers = ["", *[r["output"] for r in records[1:4]], "no idea"]
    pairs = [utils.process_generation(d, [a])["judge_ratio"] for d, a in zip(docs, answers)]
    assert utils.judge_ratio(pairs) == pytest.approx(ratio_score(records[: len(answers)], answers))
    assert utils.judge_ratio([(5.0, 10.0), (1.0, 5.0)]) == pytest.approx(6.0 / 15.0)
    with pytest.raises(ValueError):
        utils.judge_ratio([])


def test_rouge_l_uses_stemming_and_f_measure():
    assert utils.rouge_l("the cats are running", "the cat is running") == pytest.approx(
        utils.rouge_l("the cat is running", "the cat is running") * 3 / 4
    )
    assert utils.rouge_l("", "some reference") == 0.0


def _short_doc(answer: str, output: str, candidates: list[str] | None = None, **extra) -> dict:
    record = {"instruction": "q", "output": output, "answer": answer, **extra}
    if candidates is not None:
        record["candidates"] = candidates
    return {"reference": output, "record": json.dumps(record)}


def test_num_fewshot_override(world):
    assert task_config("bbh", world)["num_fewshot"] == UNDERSTANDING_SUITES["bbh"]["num_fewshot"]
    assert task_config("bbh", world, num_fewshot=0)["num_fewshot"] == 0
    with pytest.raises(ValueError, match="only understanding suites"):
        task_config("dolly", world, num_fewshot=1)
    with pytest.raises(ValueError, match="only understanding suites"):
        task_config("drop", world, num_fewshot=-1)


def test_read_docs_fails_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: missing required field 'output'"):
        utils.read_docs(path, "generation")
    path.write_text(
        '{"instruction": "a", "output": "b", "choices": ["x", "y"], "gold": 2}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match="gold index 2"):
        utils.read_docs(path, "multiple_choice")
    docs = utils.read_docs(tmp_path / "bad.jsonl", "generation")
    assert docs[0]["id"] == "bad-000000"  # records without an id (e.g. real instruction sets) get one
    assert docs[0]["prompt"] == format_prompt("a")


def test_tokenisation_matches_training(world, model_dir):
    """HFLM encodes a prompt to exactly the token ids the training data pipeline uses for it."""
    from atkd.eval.harness import make_lm
    from atkd.models import load_tokenizer
    from atkd.train.data import encode_record

    lm = make_lm(model_dir, batch_size=1)
    tok = load_tokenizer(model_dir)
    for rec in list(read_records(world / "suites" / "selfinst.jsonl").values())[:4]:
        ex = encode_record(rec, tok, max_length=512)
        n_prompt = next(i for i, y in enumerate(ex.labels) if y != -100)
        prompt = format_prompt(rec["instruction"], rec.get("input"))
        assert lm.tok_encode(prompt) == list(ex.input_ids[:n_prompt])
        ids, _ = lm.tok_batch_encode([prompt])
        assert ids[0].tolist() == list(ex.input_ids[:n_prompt])


CHAT_TEMPLATE = (
    "{% for m in messages %}<user>{{ m['content'] }}</user>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def chat_model_dir(model_dir, tmp_path_factory) -> Path:
    """The tiny model with a chat template on its tokenizer, as an instruction-tuned model's."""
    import shutil

    from atkd.models import load_tokenizer

    out = tmp_path_factory.mktemp("chat") / "m"
    shutil.copytree(model_dir, out)
    tok = load_tokenizer(out)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    return out


def test_a_chat_template_prompts_training_and_evaluation_alike(chat_model_dir, tmp_path):
    """A model whose tokenizer has a chat template sees its requests through that template in
    evaluation, token for token as the training pipeline encodes them; the judge gets the bare request."""
    from atkd.data.template import format_example, prompt_for, uses_chat
    from atkd.eval.harness import make_lm
    from atkd.models import load_tokenizer
    from atkd.train.data import encode_record

    tok = load_tokenizer(chat_model_dir)
    assert uses_chat(tok)
    data = _instruct_file(tmp_path / "my-set.jsonl")
    evaluate(
        chat_model_dir, None, [], tmp_path / "out", instruct_sets={"myset": data}, max_new_tokens=4, threads=1
    )
    gens = [json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert (
        gens[1]["prompt"]
        == "<user>Summarise the text.\n\nThe cat sat on the mat all day.</user>\n<assistant>"
    )
    assert [g["question"] for g in gens] == [
        "Name a colour.",
        "Summarise the text.\n\nThe cat sat on the mat all day.",
        "Say hi.",
    ]
    lm = make_lm(chat_model_dir, batch_size=1)
    records = [json.loads(line) for line in data.read_text().splitlines()]
    for rec, g in zip(records, gens, strict=True):
        assert g["prompt"] == prompt_for(rec["instruction"], rec.get("input"), tok)
        ex = encode_record(rec, tok, max_length=512)
        n_prompt = next(i for i, y in enumerate(ex.labels) if y != -100)
        assert lm.tok_encode(g["prompt"]) == list(ex.input_ids[:n_prompt])
        response = tok(format_example(rec, tok)[1], add_special_tokens=False)["input_ids"]
        assert list(ex.labels[n_prompt:]) == [*response, tok.eos_token_id]
    assert prompt_for("Say hi.") == format_prompt("Say hi.")  # no chat template: the suite's own


# ------------------------------------------------------------------------------ outside instruction sets
SHARED_SETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct-eval"


def _instruct_file(path: Path) -> Path:
    recs = [
        {"instruction": "Name a colour.", "output": "Red."},
        {
            "instruction": "Summarise the text.",
            "input": "The cat sat on the mat all day.",
            "output": "A cat sat.",
        },
        {"topic": "extra fields are kept", "instruction": "Say hi.", "input": "", "output": "Hi!"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_outside_instruction_set_is_a_generation_task(model_dir, tmp_path):
    data = _instruct_file(tmp_path / "my-set.jsonl")
    rows = evaluate(
        model_dir, None, [], tmp_path / "out", instruct_sets={"myset": data}, max_new_tokens=6, threads=1
    )
    assert [(r["task"], r["metric"], r["n"]) for r in rows] == [("myset", "rougeL", 3)]
    gens = [json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert [g["prompt"] for g in gens] == [
        format_prompt("Name a colour."),
        format_prompt("Summarise the text.", "The cat sat on the mat all day."),
        format_prompt("Say hi."),
    ]
    assert [g["reference"] for g in gens] == ["Red.", "A cat sat.", "Hi!"]
    for g in gens:
        assert g["scores"]["rougeL"] == pytest.approx(utils.rouge_l(g["answer"], g["reference"]))


def test_cli_instruct_sets_by_glob_and_name_sampled_over_seeds(model_dir, tmp_path, monkeypatch):
    """`--instruct-set` takes patterns (files named by stem) and NAME=PATH; the sampling protocol gives
    per-seed Rouge-L rows and their mean for outside sets too, and each generation records its seed."""
    sets = tmp_path / "sets"
    sets.mkdir()
    _instruct_file(sets / "dolly.jsonl")  # a built-in suite's name: becomes `dollyeval`
    _instruct_file(sets / "koalas.jsonl")
    named = _instruct_file(tmp_path / "x.jsonl")
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "--model", str(model_dir), "--out", "out", "--max-new-tokens", "4", "--threads", "1"]
    argv += [
        "--instruct-set",
        "sets/*.jsonl",
        f"mine={named}",
        "--temperature",
        "1",
        "--sample-seeds",
        "10",
        "20",
    ]
    assert cli.main(argv) == 0
    _, rows = read_csv(tmp_path / "out" / "metrics.csv")
    got = {(r["task"], r["metric"]): float(r["value"]) for r in rows}
    assert set(got) == {
        (t, m) for t in ("dollyeval", "koalas", "mine") for m in ("rougeL", "rougeL@10", "rougeL@20")
    }
    for task in ("dollyeval", "koalas", "mine"):
        assert got[(task, "rougeL")] == pytest.approx(
            (got[(task, "rougeL@10")] + got[(task, "rougeL@20")]) / 2
        )
    gens = [json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 3 * 3 * 2 and {g["sample_seed"] for g in gens} == {10, 20}


def test_outside_sets_fail_early_with_file_and_line(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 3}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: field 'output'"):
        evaluate(model_dir, None, [], tmp_path / "out", instruct_sets={"bad": bad})
    with pytest.raises(ValueError, match="built-in suite"):
        evaluate(
            model_dir,
            None,
            [],
            tmp_path / "out",
            instruct_sets={"dolly": _instruct_file(tmp_path / "x.jsonl")},
        )
    with pytest.raises(FileNotFoundError):
        evaluate(model_dir, None, [], tmp_path / "out", instruct_sets={"gone": tmp_path / "gone.jsonl"})
    assert not (tmp_path / "out").exists()


def test_instruct_sets_by_name_glob_or_list(tmp_path, monkeypatch):
    """Every config form resolves to {name: absolute path}; relative paths from the working directory."""
    sets = tmp_path / "sets"
    sets.mkdir()
    a, b = _instruct_file(sets / "alpha.jsonl"), _instruct_file(sets / "beta-2.jsonl")
    (sets / "notes.txt").write_text("not a set")
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    assert check_instruct_sets("../sets/*.jsonl") == {"alpha": a, "beta-2": b}
    assert check_instruct_sets(["../sets/beta-2.jsonl", str(a)]) == {"beta-2": b, "alpha": a}
    assert check_instruct_sets({"mine": "../sets/alpha.jsonl"}) == {"mine": a}
    assert resolve_instruct_sets("*.jsonl", base=sets) == {"alpha": a, "beta-2": b}
    with pytest.raises(
        ValueError, match=r"'\.\./sets/\*\.json' matches no file \(relative patterns are resolved"
    ):
        check_instruct_sets("../sets/*.json")
    with pytest.raises(ValueError, match="a named set is one file"):
        check_instruct_sets({"all": "../sets/*.jsonl"})
    other = tmp_path / "other"
    other.mkdir()
    _instruct_file(other / "alpha.jsonl")
    with pytest.raises(ValueError, match="two instruction sets are named 'alpha'"):
        check_instruct_sets(["../sets/*.jsonl", "../other/*.jsonl"])
    _instruct_file(other / "2024.jsonl")
    with pytest.raises(ValueError, match=r"name '2024' .*\(name the set"):
        check_instruct_sets("../other/2024.jsonl")
    with pytest.raises(FileNotFoundError, match="file not found: .*gone.jsonl"):
        check_instruct_sets(["../sets/gone.jsonl"])
    with pytest.raises(
        ValueError, match=r"'\.\./sets' is a directory; name its files, e\.g\. \.\./sets/\*\.jsonl"
    ):
        check_instruct_sets("../sets")
    odd = tmp_path / "proj[1]"  # glob characters in a real path: the existing file is meant
    odd.mkdir()
    c = _instruct_file(odd / "gamma.jsonl")
    assert check_instruct_sets([str(c)]) == {"gamma": c} == check_instruct_sets({"gamma": str(c)})


def test_instruct_set_input_of_the_wrong_type_fails_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = [
        '{"instruction": "a", "input": null, "output": "b"}',
        "",
        '{"instruction": "c", "input": 5, "output": "d"}',
    ]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: field 'input' must be"):
        check_instruct_sets({"bad": bad})


@pytest.mark.skipif(not SHARED_SETS.is_dir(), reason="the shared instruct-eval sets are not on this machine")
def test_the_shared_sets_by_the_issue_s_relative_glob(monkeypatch):
    """A config in the repository names `../shared/data/instruct-eval/*.jsonl` and gets every set."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the repository, a sibling of ../shared
    sets = check_instruct_sets("../shared/data/instruct-eval/*.jsonl")
    assert set(sets) >= {"dollyeval", "self-inst", "vicunaeval"}  # not the synthetic dolly and vicuna
    assert all(p.parent == SHARED_SETS.resolve() for p in sets.values())


@pytest.mark.skipif(not SHARED_SETS.is_dir(), reason="the shared instruct-eval sets are not on this machine")
def test_the_shared_real_sets_load_and_run(model_dir, tmp_path):
    sets = {p.stem.replace("-", "_"): p for p in sorted(SHARED_SETS.glob("*.jsonl"))}
    assert set(sets) >= {"dolly", "self_inst", "vicuna"}
    sets = {f"real_{k}": v for k, v in sets.items()}
    rows = evaluate(
        model_dir, None, [], tmp_path / "out", instruct_sets=sets, limit=2, max_new_tokens=4, threads=1
    )
    assert {r["task"] for r in rows} == set(sets) and all(r["n"] == 2 for r in rows)


def test_sampling_protocol_over_seeds(world, model_dir, tmp_path):
    """MiniLLM/DistiLLM protocol: generation tasks sampled once per seed, per-seed rows and their mean;
    understanding suites once; the same seeds give the same answers."""
    kw = dict(limit=3, batch_size=3, max_new_tokens=6, threads=1, temperature=1.0, sample_seeds=[10, 20])
    rows = evaluate(model_dir, world, ["dolly", "mmlu"], tmp_path / "a", **kw)
    got = {(r["task"], r["metric"]): r["value"] for r in rows}
    for metric in ("rougeL", "judge_ratio"):
        assert got[("dolly", metric)] == pytest.approx(
            (got[("dolly", f"{metric}@10")] + got[("dolly", f"{metric}@20")]) / 2
        )
    assert ("mmlu", "acc") in got and not any(m.startswith("acc@") for _, m in got)
    gens = [json.loads(x) for x in (tmp_path / "a" / "generations.jsonl").read_text().splitlines()]
    dolly = [g for g in gens if g["task"] == "dolly"]
    assert sorted({g["sample_seed"] for g in dolly}) == [10, 20] and len(dolly) == 6
    assert all("sample_seed" not in g for g in gens if g["task"] == "mmlu")
    by_seed = {s: [g["answer"] for g in dolly if g["sample_seed"] == s] for s in (10, 20)}
    assert by_seed[10] != by_seed[20]  # different seeds sample different answers
    means = _doc_means(tmp_path / "a" / "doc_scores.csv")  # per document: the mean over sample seeds
    for key in (("dolly", "judge_ratio"), ("dolly", "rougeL"), ("mmlu", "acc")):
        assert means[key] == pytest.approx(got[key], rel=1e-9, abs=1e-12)
    assert not any("@" in metric for _, metric in means)
    evaluate(model_dir, world, ["dolly", "mmlu"], tmp_path / "b", **kw)
    assert (tmp_path / "b" / "generations.jsonl").read_text() == (
        tmp_path / "a" / "generations.jsonl"
    ).read_text()
    with pytest.raises(ValueError, match="temperature > 0"):
        evaluate(model_dir, world, ["dolly"], tmp_path / "c", sample_seeds=[10])


def test_benchmarks_by_lm_eval_name(world, model_dir, tmp_path):
    """lm-eval tasks named in a config run through the same engine into the same tidy rows (here tasks
    from an include path stand in for lm-eval's own, whose data needs the Hub)."""
    from atkd.eval.benchmarks import benchmark_task_manager, check_benchmarks
    from atkd.eval.registry import write_task_yamls

    include = tmp_path / "bench-tasks"
    write_task_yamls(["mmlu", "dolly"], world, include)
    specs = {"mc": {"task": "atkd_mmlu", "num_fewshot": 2}, "gen": {"task": "atkd_dolly"}}
    rows = evaluate(
        model_dir,
        None,
        [],
        tmp_path / "out",
        benchmarks=specs,
        benchmark_include_path=include,
        limit=2,
        batch_size=2,
        max_new_tokens=4,
        threads=1,
        meta={"run": "b"},
    )
    got = {(r["task"], r["metric"]): r for r in rows}
    assert set(got) == {("mc", "acc"), ("mc", "acc_norm"), ("gen", "rougeL"), ("gen", "judge_ratio")}
    assert got[("mc", "acc")]["n"] == 2 and got[("mc", "acc")]["run"] == "b"
    # every benchmark answer is in the generations file, scored as in the tidy rows
    gens = [json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert (
        sorted((g["task"], g["subtask"]) for g in gens)
        == [("gen", "atkd_dolly")] * 2 + [("mc", "atkd_mmlu")] * 2
    )
    mc = [g for g in gens if g["task"] == "mc"]
    assert all(
        g["run"] == "b" and g["prompt"].count(INSTRUCTION_HEADER) == 3 for g in mc
    )  # 2 shots + question
    docs = {d["id"]: d for d in utils.read_docs(suite_files(world, "mmlu")[0], "multiple_choice")}
    for g, doc in zip(mc, list(docs.values())[:2], strict=True):  # lm-eval's doc ids: the first two
        lls = g["scores"]["loglikelihoods"]
        per_char = [ll / len(c) for ll, c in zip(lls, doc["choices"], strict=True)]
        assert g["answer"] == doc["choices"][per_char.index(max(per_char))]  # acc_norm's pick
        assert g["reference"] == doc["choices"][doc["gold"]]
        assert g["scores"]["acc_norm"] == float(g["answer"] == g["reference"])
        assert g["scores"]["acc"] == float(lls.index(max(lls)) == doc["gold"])
    for metric in ("acc", "acc_norm"):
        assert sum(g["scores"][metric] for g in mc) / 2 == pytest.approx(got[("mc", metric)]["value"])
    gen = [g for g in gens if g["task"] == "gen"]
    assert all(isinstance(g["answer"], str) and g["reference"] for g in gen)
    assert sum(g["scores"]["rougeL"] for g in gen) / 2 == pytest.approx(got[("gen", "rougeL")]["value"])
    with pytest.raises(ValueError, match=r"lm-eval has no task 'atkd_mmlo'; close: atkd_mmlu"):
        check_benchmarks({"x": {"task": "atkd_mmlo"}}, benchmark_task_manager(include))
    with pytest.raises(ValueError, match="not a suite"):
        check_benchmarks({"dolly": {"task": "atkd_dolly"}}, benchmark_task_manager(include))
