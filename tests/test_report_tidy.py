"""doc_scores.csv, runs.csv and chance.csv: collected from the runs' own files, then read by the report
(per-document bootstrap, "same objective" marks from configuration only, the chance row)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import TASKS, tidy_row

from atkd import cli
from atkd.report import collect, report
from atkd.report.tables import load_runs
from atkd.report.tidy import objective_fields, objective_key

METHODS = ["kd", "dkd", "kd_copy"]
TEACHER = "t-big"
SEEDS = (1, 2, 3)
DOCS = 30
kd_on: dict[tuple[int, str], np.ndarray] = {}  # kd + ATKD's per-document scores, which two others repeat


def summary(method: str, atkd: str, seed: int, **changes) -> dict:
    """A train_summary.json as atkd.train.loop writes it: the run's teacher and full training config.
    kd_copy is kd configured again under another name; dkd + ATKD is a different loss."""
    loss: str | dict = {"kd": "fkl", "kd_copy": "fkl", "dkd": "dkd"}[method]
    if atkd == "on":
        loss = {"name": loss, "atkd": {"k": 0.5, "lam": 0.2}}
    config = {
        "output_dir": f"results/runs/{method}/{TEACHER}/{atkd}/s{seed}",
        "train_data": "results/world/train.jsonl",
        "model": "results/models/student-base/final",
        "teacher_cache": f"results/caches/{TEACHER}/gt",
        "loss": loss,
        "seed": seed,
        "lr": 0.002,
        "epochs": 1.0,
        "threads": 1,
    }
    return {"teacher": f"results/models/teachers/{TEACHER}/final", "steps": 10, "config": config | changes}


def score(method: str, atkd: str, seed: int) -> float:
    """ATKD adds 0.03 to kd and to kd_copy; dkd + ATKD scores exactly as kd + ATKD (ties, other config)."""
    base = 0.5 + 0.01 * seed
    if atkd == "on":
        return base + 0.03
    return base + (0.0 if method != "dkd" else -0.02)


def write_runs(results: Path) -> dict[str, Path]:
    """Per-run eval/metrics.csv, eval/doc_scores.csv and train_summary.json, collected into the tidy files
    with the CLI as the workflow calls it; returns report()'s file arguments."""
    rng = np.random.default_rng(0)
    noise = {task: rng.normal(0, 0.2, DOCS) for task in TASKS}  # document difficulty, shared by students
    metric_files, doc_files, pairs = [], [], []
    for method in METHODS:
        for atkd in ("off", "on"):
            for seed in SEEDS:
                run = f"{method}/{TEACHER}/{atkd}/s{seed}"
                out = results / "runs" / method / TEACHER / atkd / f"s{seed}"
                (out / "eval").mkdir(parents=True)
                value = score(method, atkd, seed)
                rows, docs = [], []
                for task, metric in TASKS.items():
                    extra = rng.normal(0, 0.05, DOCS)  # each student's own document-level luck
                    per_doc = value + noise[task] + extra - (noise[task] + extra).mean()
                    if (method, atkd) in (("dkd", "on"), ("kd_copy", "on")):  # exactly kd + ATKD's scores
                        per_doc = kd_on[(seed, task)]
                    elif (method, atkd) == ("kd", "on"):
                        kd_on[(seed, task)] = per_doc
                    rows.append(
                        tidy_row(run, TEACHER, method, atkd, seed, task, metric, float(per_doc.mean()))
                    )
                    meta = {k: v for k, v in rows[-1].items() if k not in ("task", "metric", "value")}
                    docs += [
                        meta | dict(task=task, doc=f"{task}-{i:03d}", metric=metric, value=v)
                        for i, v in enumerate(per_doc)
                    ]
                pd.DataFrame(rows).to_csv(out / "eval" / "metrics.csv", index=False)
                pd.DataFrame(docs).to_csv(out / "eval" / "doc_scores.csv", index=False)
                (out / "train_summary.json").write_text(json.dumps(summary(method, atkd, seed)))
                metric_files.append(out / "eval" / "metrics.csv")
                doc_files.append(out / "eval" / "doc_scores.csv")
                pairs.append(f"{run}={out / 'train_summary.json'}")
    metrics = results / "metrics.csv"
    collect(metric_files, metrics)
    argv = [
        "collect",
        "--doc-scores",
        *map(str, doc_files),
        "--doc-scores-out",
        str(results / "doc_scores.csv"),
    ]
    argv += ["--metrics", str(metrics), "--runs-out", str(results / "runs.csv"), "--summaries", *pairs]
    assert cli.main(argv) == 0
    models = results / "models.csv"
    pd.DataFrame({"model": [TEACHER, "s"], "role": ["teacher", "student"], "params": [1e6, 5e4]}).to_csv(
        models, index=False
    )
    return dict(
        metrics=metrics, models=models, doc_scores=results / "doc_scores.csv", runs=results / "runs.csv"
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    results = tmp_path_factory.mktemp("study") / "results"
    files = write_runs(results)
    chance = results / "chance.csv"
    # as `atkd world` writes it (workflow rule `chance` copies it to results/)
    levels = {"task": ["mmlu", "dolly"], "chance": [0.25, 0.0], "definition": ["1 / choices", "none"]}
    pd.DataFrame(levels).to_csv(chance, index=False)
    report(**files, tables=results / "tables", figures=results / "figures", methods=METHODS, chance=chance)
    return results, files


def test_objective_keys_follow_the_configuration_only():
    key = objective_key(summary("kd", "on", 1))
    assert objective_key(summary("kd", "on", 2)) == key  # not the seed
    assert objective_key(summary("kd_copy", "on", 1)) == key  # not the method's name or output paths
    assert objective_key(summary("kd", "on", 1, threads=4, log_every=1)) == key  # not cosmetic fields
    same_loss = summary("kd", "on", 1, loss={"name": "fkl", "temperature": 1, "atkd": {"k": 0.5, "lam": 0.2}})
    assert objective_key(same_loss) == key  # resolved loss: defaults written out or not
    live = summary("kd", "on", 1, teacher=f"results/models/teachers/{TEACHER}/final", teacher_cache=None)
    assert objective_key(live) == key  # the live teacher that the cache holds
    for change in (
        dict(lr=0.001),
        dict(epochs=2.0),
        dict(train_data="results/generated/t-big/train.jsonl"),
        dict(loss={"name": "fkl", "atkd": {"k": 0.7, "lam": 0.2}}),
        dict(sampling={"source": "student", "lam": 0.5}),
    ):
        assert objective_key(summary("kd", "on", 1, **change)) != key, change
    other_teacher = summary("kd", "on", 1) | {"teacher": "results/models/teachers/t-small/final"}
    assert objective_key(other_teacher) != key
    assert objective_key(summary("dkd", "on", 1)) != key
    assert objective_fields(summary("kd", "on", 1))["loss"]["name"] == "fkl"
    with pytest.raises(ValueError, match="training config"):
        objective_key({"teacher": None})


def test_runs_csv_one_row_per_run(study):
    _, files = study
    runs = load_runs(files["runs"])
    assert len(runs) == len(METHODS) * 2 * len(SEEDS)
    assert set(runs.columns) >= {"run", "method", "teacher", "atkd", "seed", "objective", "loss"}
    per_arm = runs.groupby(["method", "atkd"])["objective"].nunique()
    assert (per_arm == 1).all()  # seed-independent
    keys = runs.groupby(["method", "atkd"])["objective"].first()
    assert keys[("kd_copy", "on")] == keys[("kd", "on")] != keys[("dkd", "on")]


def test_runs_csv_records_each_runs_epochs(tmp_path):
    """runs.csv carries each run's budget in epochs from its train_summary.json (empty without one), which
    the regime check matches budgets on."""
    from atkd.report.tidy import collect_runs

    rows = [
        tidy_row(f"{m}/s1", "t" if m == "kd" else "", m, "off", 1, "dolly", "judge_ratio", 0.5)
        for m in ("kd", "sft", "rule")
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.csv", index=False)
    summaries = {}
    for m, epochs in (("kd", 4.0), ("sft", 0.5), ("rule", None)):
        config = {"train_data": "train.jsonl", "model": "base", "loss": "fkl", "seed": 1}
        summary = {"teacher": None, "config": config} | ({} if epochs is None else {"epochs": epochs})
        (tmp_path / f"{m}.json").write_text(json.dumps(summary))
        summaries[f"{m}/s1"] = tmp_path / f"{m}.json"
    collect_runs(summaries, tmp_path / "metrics.csv", tmp_path / "runs.csv")
    runs = load_runs(tmp_path / "runs.csv")
    assert dict(zip(runs["method"], runs["epochs"], strict=True)) == {"kd": "4", "sft": "0.5", "rule": ""}


def test_same_objective_marks_from_configuration_not_from_tied_scores(study):
    """dkd + ATKD and kd_copy + ATKD both tie kd + ATKD on every seed, task and document; only kd_copy
    has kd's configuration, so only it is marked."""
    results, _ = study
    text = (results / "REPORT.md").read_text()
    f5 = text[text.index("## F5") : text.index("## F6")]
    rows = {
        ln.split("|")[1].strip(): ln for ln in f5.splitlines() if ln.startswith("| ") and "method" not in ln
    }
    assert set(rows) == set(METHODS)
    assert "same objective as kd + ATKD: equal keys in runs.csv" in rows["kd_copy"]
    assert "same objective" not in rows["dkd"] and "same objective" not in rows["kd"]
    assert "(1 of them share their +ATKD student with another row's" in f5
    f8 = text[text.index("## F8") : text.index("## Power")]
    # kd + ATKD vs dkd without ATKD is a comparison; dkd + ATKD's tie with kd + ATKD says nothing
    assert "- kd + ATKD minus `dkd` at t-big: +0.0500" in f8 and "objective of" not in f8


def test_report_resamples_documents(study):
    results, _ = study
    text = (results / "REPORT.md").read_text()
    f5 = text[text.index("## F5") : text.index("## F6")]
    (kd,) = [ln for ln in f5.splitlines() if ln.startswith("| kd |")]
    assert "(3 seeds x 60 docs; only 3 seeds" in kd and "MDE 0.0" in kd and "| supported |" in kd
    assert "No per-document scores" not in text
    for banned in ("t-interval", "degree(s) of freedom", "degrees of freedom"):
        assert banned not in text
    assert "MDE = (z_0.975 + z_0.80) x SE = 2.80 x SE" in text
    power = text[text.index("## Power") :]
    (row,) = [ln for ln in power.splitlines() if ln.startswith(f"| {TEACHER} |")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert (
        cells[1].startswith("3 seeds x 60 docs; only 3 seeds") and float(cells[2]) > 0 and float(cells[3]) > 0
    )
    assert cells[5].endswith("(at 30 docs per task)") and int(cells[5].split()[0]) >= 1


def test_doc_scores_must_agree_with_metrics(study, tmp_path):
    results, files = study
    docs = pd.read_csv(files["doc_scores"], keep_default_na=False)
    docs.loc[0, "value"] += 0.5
    bad = tmp_path / "doc_scores.csv"
    docs.to_csv(bad, index=False)
    with pytest.raises(ValueError, match="disagrees with metrics.csv"):
        report(**{**files, "doc_scores": bad}, tables=tmp_path / "tables", figures=tmp_path / "figures")


def test_chance_row_in_the_main_table(study):
    results, _ = study
    main = pd.read_csv(results / "tables" / "main.csv", keep_default_na=False)
    chance = main[main["method"] == "chance"].set_index("task")["mean"]
    assert chance.to_dict() == pytest.approx({"dolly": 0.0, "mmlu": 0.25, "avg": 0.125})
    md = (results / "tables" / "main.md").read_text().splitlines()
    assert md[2].startswith("| - | chance |  | 0.000 | 0.250 | 0.125 |")
    assert "chance \\\\" not in (results / "tables" / "main.tex").read_text()
    assert "& chance &" in (results / "tables" / "main.tex").read_text()
    assert "dolly (chance 0.000), mmlu (chance 0.250)" in (results / "REPORT.md").read_text()


def tidy_extras(paths: list[Path], metrics: Path, results: Path) -> None:
    """Next to each run's eval/metrics.csv a doc_scores.csv (three documents around each primary score)
    and a train_summary.json; collected into results/doc_scores.csv and results/runs.csv, plus a
    chance.csv: the report's other tidy inputs (tests/test_report.py's audit of what the report reads)."""
    from atkd.report.tidy import collect_doc_scores, collect_runs

    doc_files, summaries = [], {}
    for path in paths:
        part = pd.read_csv(path, keep_default_na=False)
        primary = part[part["metric"].isin(list(TASKS.values()))].to_dict("records")
        rows = [r | {"doc": f"d{i}", "value": r["value"] + (i - 1) * 0.01} for r in primary for i in range(3)]
        pd.DataFrame(rows).to_csv(path.parent / "doc_scores.csv", index=False)
        doc_files.append(path.parent / "doc_scores.csv")
        config = {"output_dir": str(path.parent.parent), "train_data": "train.jsonl", "model": "base"}
        config |= {"loss": "fkl", "seed": int(part["seed"].iloc[0])}
        (path.parent.parent / "train_summary.json").write_text(
            json.dumps({"teacher": None, "config": config})
        )
        summaries[str(part["run"].iloc[0])] = path.parent.parent / "train_summary.json"
    collect_doc_scores(doc_files, results / "doc_scores.csv")
    collect_runs(summaries, metrics, results / "runs.csv")
    pd.DataFrame({"task": ["dolly", "mmlu"], "chance": [0.0, 0.25]}).to_csv(
        results / "chance.csv", index=False
    )
