"""The report stage reads only the tidy files and computes what the tables say."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from atkd.report import collect, report
from atkd.report.curves import write_curves
from atkd.report.tables import load_metrics, load_models, main_table, primary_metrics

TASKS = {"dolly": "judge_ratio", "mmlu": "acc"}


def tidy_row(
    run: str, teacher: str, method: str, atkd: str, seed: int, task: str, metric: str, value: float
) -> dict:
    """One row of metrics.csv (student `s`)."""
    return dict(
        run=run, student="s", teacher=teacher, method=method, atkd=atkd, seed=seed, task=task, metric=metric
    ) | {"value": value}


def tidy_rows() -> list[dict]:
    rows = []
    for teacher in ("t-small", "t-big"):
        for atkd in ("off", "on"):
            for seed in (1, 2):
                for task, metric in TASKS.items():
                    value = 0.5 + 0.1 * (atkd == "on") + 0.01 * seed + (0.05 if teacher == "t-big" else 0)
                    run = f"kd-{teacher}-{atkd}-{seed}"
                    rows.append(tidy_row(run, teacher, "kd", atkd, seed, task, metric, value))
                    rows.append(tidy_row(run, teacher, "kd", atkd, seed, task, "rougeL", 0.2))
    for seed in (1, 2):
        for task, metric in TASKS.items():
            rows.append(tidy_row(f"sft-{seed}", "", "sft", "off", seed, task, metric, 0.4 + 0.02 * seed))
    return rows


def test_main_table_means_stds_and_deltas():
    df = pd.DataFrame(tidy_rows())
    stats = main_table(df, primary_metrics(df), ["sft", "kd"])
    row = stats[
        (stats.teacher == "t-big") & (stats.method == "kd") & (stats.atkd == "on") & (stats.task == "avg")
    ]
    assert row["mean"].item() == pytest.approx(0.5 + 0.1 + 0.015 + 0.05)
    assert row["std"].item() == pytest.approx(pd.Series([0.01, 0.02]).std())
    assert row["delta_atkd"].item() == pytest.approx(0.1)
    assert row["n"].item() == 2
    sft = stats[(stats.method == "sft") & (stats.task == "dolly")]
    assert sft["mean"].item() == pytest.approx(0.43)


def test_primary_metric_preference_and_errors():
    df = pd.DataFrame(tidy_rows())
    assert primary_metrics(df) == TASKS
    assert primary_metrics(df, {"dolly": "rougeL"})["dolly"] == "rougeL"
    with pytest.raises(ValueError, match="has no metric 'bleu'"):
        primary_metrics(df, {"dolly": "bleu"})


# Every file the report opens for reading, while a test sets _OPENED to a list (the hook is inert
# otherwise: an audit hook cannot be removed once added, so it is added once, on first use).
_OPENED: list[str] | None = None
_HOOKED = False


def _audit(event: str, args: tuple) -> None:
    if _OPENED is None or event != "open":
        return
    path, _mode, flags = args
    if isinstance(path, (str, bytes, os.PathLike)) and flags & os.O_ACCMODE != os.O_WRONLY:
        if not flags & os.O_CREAT:  # opened to read an existing file, not to create one
            _OPENED.append(os.path.realpath(os.fsdecode(path)))


@contextmanager
def files_read() -> Iterator[list[str]]:
    """Record the real paths of the files opened for reading inside the block."""
    global _OPENED, _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


TIDY = re.compile(
    r"(metrics\.csv|models\.csv|curves\.csv|probes/[^/]+/(summary|tokens)\.csv"
    r"|landscape/(.+/)?(summary|landscape)\.csv)"
)
# the report's other tidy inputs: per-document scores, run objectives (atkd.report.tidy), chance levels
TIDY = re.compile(rf"{TIDY.pattern}|doc_scores\.csv|runs\.csv|chance\.csv")


def untidy_reads(opened: list[str], results: Path) -> list[str]:
    """The files under `results` the report read that are not tidy result files."""
    root = os.path.realpath(results)
    inside = [os.path.relpath(p, root) for p in opened if p.startswith(root + os.sep)]
    return sorted({p for p in inside if not TIDY.fullmatch(p)})


def test_report_from_tidy_files_only(tmp_path, monkeypatch):
    results = tmp_path / "results"
    runs = results / "runs"
    df = pd.DataFrame(tidy_rows())
    paths = []
    for run, part in df.groupby("run"):
        path = runs / run / "eval" / "metrics.csv"
        path.parent.mkdir(parents=True)
        part.to_csv(path, index=False)
        (path.parent.parent / "config.yaml").write_text("method: kd\n")  # untidy files next to the tidy
        paths.append(path)
    (results / "config.yaml").write_text("methods: [sft, kd]\n")
    metrics = results / "metrics.csv"
    collect(paths, metrics)
    # curves.csv from training logs (metrics.jsonl) in the workflow's layout <method>/<teacher>/<atkd>/s<seed>
    layout = []
    for (method, teacher, atkd, seed), _ in df.groupby(["method", "teacher", "atkd", "seed"]):
        run = runs / method / (teacher or "none") / atkd / f"s{seed}"
        run.mkdir(parents=True)
        logged = [{"step": s, "epoch": s / 4, "loss": 2 / s, "valid_loss": 3 / s} for s in (2, 4)]
        (run / "metrics.jsonl").write_text("".join(f"{json.dumps(r)}\n" for r in logged))
        layout.append(run)
    curves = results / "curves.csv"
    write_curves(layout, curves)
    from test_report_tidy import tidy_extras

    tidy_extras(paths, metrics, results)  # doc_scores.csv, runs.csv (from train summaries), chance.csv
    assert len(load_metrics(metrics)) == len(df)
    models = results / "models.csv"
    pd.DataFrame(
        {
            "model": ["t-small", "t-big", "s"],
            "role": ["teacher", "teacher", "student"],
            "params": [1e5, 1e6, 5e4],
        }
    ).to_csv(models, index=False)
    probes = [
        _probe_dir(results / "probes", "t-small", [0.5, 0.6, 0.7]),
        _probe_dir(results / "probes", "t-big", [0.1, 0.2, 0.05]),
    ]
    landscapes = [
        _landscape_dir(results / "landscape", atkd, seed, s, two_d=True)
        for atkd, seed, s in [("off", 0, 0.9), ("off", 1, 0.8), ("on", 0, 0.5), ("on", 1, 0.45)]
    ]
    analyses = {"k_sweep": {"variant": "on", "members": {"kd": "k=0.5"}}}

    def run():
        return report(
            metrics,
            models,
            results / "tables",
            tmp_path / "figures",
            ["sft", "kd"],
            probes=probes,
            landscapes=landscapes,
            analyses=analyses,
            doc_scores=results / "doc_scores.csv",
            runs=results / "runs.csv",
            chance=results / "chance.csv",
            curves=curves,
            budget_sweep={"teacher": "t-big", "unit": "epochs", "members": {"kd": 1.0, "kd_b2": 2.0}},
        )

    with files_read() as opened:
        out = run()
    read = {os.path.relpath(p, results.resolve()) for p in opened if p.startswith(str(results.resolve()))}
    # the recorder sees the report's reads: every kind of tidy input, and nothing else under results/
    assert {"metrics.csv", "models.csv", "curves.csv", "probes/t-big/tokens.csv"} <= read
    assert "probes/t-small/summary.csv" in read
    assert (
        "landscape/kd/t-big/on/s1/landscape.csv" in read and "landscape/kd/t-big/off/s0/summary.csv" in read
    )
    assert untidy_reads(opened, results) == []
    assert {"doc_scores.csv", "runs.csv", "chance.csv"} <= read
    names = {p.name for p in out}
    assert {"main.tex", "probes.tex", "analyses.tex", "landscape_2d.png", "REPORT.md"} <= names
    assert {"training_curves.png", "budget_sweep.pdf"} <= names
    assert "\\toprule" in (results / "tables" / "main.tex").read_text()
    md = (results / "tables" / "main.md").read_text()
    assert "dolly (judge_ratio)" in md and "(+0.100)" in md
    assert all(p.stat().st_size > 0 for p in out)

    # the check fails when the report also reads a run's file or a config: a report that peeks
    import atkd.report as rep

    def peeking(path):
        (runs / "kd-t-big-on-1" / "config.yaml").read_text()
        pd.read_csv(runs / "kd-t-big-on-1" / "eval" / "metrics.csv")
        (results / "config.yaml").read_text()
        return load_models(path)

    monkeypatch.setattr(rep, "load_models", peeking)
    with files_read() as opened:
        run()
    assert untidy_reads(opened, results) == [
        "config.yaml",
        "runs/kd-t-big-on-1/config.yaml",
        "runs/kd-t-big-on-1/eval/metrics.csv",
    ]


def test_collect_rejects_duplicates_and_missing_columns(tmp_path):
    df = pd.DataFrame(tidy_rows()[:2])
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df.to_csv(a, index=False)
    df.to_csv(b, index=False)
    with pytest.raises(ValueError, match="duplicate rows"):
        collect([a, b], tmp_path / "out.csv")
    df.drop(columns=["seed"]).to_csv(b, index=False)
    with pytest.raises(ValueError, match="missing column"):
        collect([b], tmp_path / "out.csv")


def _probe_dir(root, name, unc_values):
    d = root / name
    d.mkdir(parents=True)
    n = len(unc_values)
    tokens = pd.DataFrame(
        {
            "model": name,
            "seq": range(n),
            "pos": 1,
            "unc": unc_values,
            "unc_student": 0.5,
            "tkd": 0.2,
            "dkd": 0.4,
            "kd": [0.2 + u * 0.4 for u in unc_values],
        }
    )
    tokens.to_csv(d / "tokens.csv", index=False)
    from atkd.probes import summarise

    summarise(tokens).to_csv(d / "summary.csv", index=False)
    return d


def _landscape_dir(root, atkd, seed, sharpness, method="kd", two_d=False):
    d = root / method / "t-big" / atkd / f"s{seed}"
    d.mkdir(parents=True)
    meta = {"method": method, "teacher": "t-big", "atkd": atkd, "seed": seed}
    steps = [-1.0, 0.0, 1.0]
    grid = [(a, b) for b in (steps if two_d else [0.0]) for a in steps]
    # loss rises as 1.5 * sharpness * (alpha^2 + beta^2): the mean rise over the beta = 0 line is sharpness
    pd.DataFrame(
        {
            **meta,
            "alpha": [a for a, _ in grid],
            "beta": [b for _, b in grid],
            "loss": [2.0 + 1.5 * sharpness * (a * a + b * b) for a, b in grid],
        }
    ).to_csv(d / "landscape.csv", index=False)
    pd.DataFrame({**meta, "metric": ["loss_centre", "sharpness"], "value": [2.0, sharpness]}).to_csv(
        d / "summary.csv", index=False
    )
    return d


def _findings_inputs(tmp_path):
    """metrics.csv, models.csv and two teachers' probes (UnC falling with size) of the findings tests."""
    metrics = tmp_path / "metrics.csv"
    pd.DataFrame(tidy_rows()).to_csv(metrics, index=False)
    models = tmp_path / "models.csv"
    pd.DataFrame(
        {
            "model": ["t-small", "t-big", "s"],
            "role": ["teacher", "teacher", "student"],
            "params": [1e5, 1e6, 5e4],
        }
    ).to_csv(models, index=False)
    probes = [
        _probe_dir(tmp_path / "probes", "t-small", [0.5, 0.6, 0.7]),
        _probe_dir(tmp_path / "probes", "t-big", [0.1, 0.2, 0.05]),
    ]
    return metrics, models, probes


def test_report_findings_and_probes(tmp_path):
    metrics, models, probes = _findings_inputs(tmp_path)
    landscapes = [
        _landscape_dir(tmp_path / "landscape", atkd, seed, s)
        for atkd, seed, s in [("off", 0, 0.9), ("off", 1, 0.8), ("on", 0, 0.5), ("on", 1, 0.45)]
    ]
    out = report(
        metrics,
        models,
        tmp_path / "results" / "tables",
        tmp_path / "figures",
        ["kd"],
        probes=probes,
        landscapes=landscapes,
    )
    names = {p.name for p in out}
    assert names >= {"probes.csv", "probes.md", "probes.tex", "unc_density.png", "landscape.png", "REPORT.md"}
    text = (tmp_path / "results" / "REPORT.md").read_text()
    for f in range(1, 9):
        assert f"## F{f}." in text
    # ATKD adds exactly +0.1 on every seed: a zero-width interval above zero
    row = "| kd | t-big | +0.1000 [95% CI +0.1000, +0.1000], MDE 0.0000 (2 seeds; only 2 seeds: the"
    assert (
        row + " interval's seed part rests on 2 values; no per-document scores: seeds only) | supported |"
        in text
    )
    assert "t-interval" not in text and "degree" not in text
    # the bigger teacher gives the better student here: F1's claim goes the other way
    assert "(largest is worse) is **not supported (opposite direction)**" in text
    # UnC falls from the small to the big teacher
    assert "larger teachers are more confident: **supported**" in text
    assert "F2" in text and "**supported** (an identity" in text
    assert "flatter with ATKD is **supported**" in text
    # kd beats sft by 0.09 and 0.08 on its two seeds: above SFT, paired over seeds; no teacher was scored
    line = "- `kd` at t-small 0.5150 (`sft` 0.4300, its teacher not scored); `kd` minus `sft`: +0.0850"
    assert line in text
    assert text.count("above `sft` is **supported**") == 2


ANALYSES = {
    "tkd_vs_dkd": {"variant": "off", "members": {"tkd_only": "TKD only", "dkd_only": "DKD only"}},
    "tkd_placement": {
        "variant": "off",
        "members": {"dkd_only": "TKD on none", "tkd_easy": "TKD on easy", "tkd_hard": "TKD on hard"},
    },
    "k_sweep": {"variant": "on", "members": {"kd_k30": "k=0.3", "kd": "k=0.5", "kd_k70": "k=0.7"}},
    "lam_sweep": {"variant": "on", "members": {"kd": "lam=0.2", "kd_lam90": "lam=0.9"}},
}


def test_analyses_table_figure_and_verdicts(tmp_path):
    # (method, atkd) -> score per seed; the seed noise is shared, so paired differences are exact
    base = {1: 0.50, 2: 0.53, 3: 0.47}
    offsets = {
        ("tkd_only", "off"): 0.00,
        ("dkd_only", "off"): 0.05,  # DKD beats TKD: F3 supported
        ("tkd_easy", "off"): 0.07,  # TKD on easy tokens helps here: F4's first half goes the other way
        ("tkd_hard", "off"): 0.05,  # same as none: inconclusive needs noise, so add it per seed below
        ("kd_k30", "on"): 0.01,
        ("kd", "on"): 0.03,
        ("kd_k70", "on"): 0.02,
        ("kd_lam90", "on"): 0.03,
    }
    noise = {1: 0.01, 2: -0.01, 3: 0.0}
    rows = []
    for (method, atkd), off in offsets.items():
        for seed, b in base.items():
            value = b + off + (noise[seed] if method == "tkd_hard" else 0.0)
            for task, metric in TASKS.items():
                rows.append(
                    tidy_row(f"{method}-{atkd}-{seed}", "t-big", method, atkd, seed, task, metric, value)
                )
    metrics = tmp_path / "metrics.csv"
    pd.DataFrame(rows).to_csv(metrics, index=False)
    models = tmp_path / "models.csv"
    pd.DataFrame({"model": ["t-big", "s"], "role": ["teacher", "student"], "params": [1e6, 5e4]}).to_csv(
        models, index=False
    )
    out = report(metrics, models, tmp_path / "r" / "tables", tmp_path / "fig", analyses=ANALYSES)
    assert {p.name for p in out} >= {"analyses.csv", "analyses.md", "analyses.tex", "analyses.png"}
    table = pd.read_csv(tmp_path / "r" / "tables" / "analyses.csv")
    row = table[(table["analysis"] == "k_sweep") & (table["label"] == "k=0.5")].iloc[0]
    assert row["method"] == "kd" and row["n"] == 3
    assert row["mean"] == pytest.approx(0.53)
    text = (tmp_path / "r" / "REPORT.md").read_text()
    assert "- DKD only minus TKD only at t-big: +0.0500" in text
    assert "DKD matters more than TKD is **supported**" in text
    assert "TKD on easy tokens hurts is **not supported (opposite direction)**" in text
    assert "TKD on hard tokens helps is **inconclusive: |effect| 0.0000 is below the MDE 0.0" in text
    assert "k=0.3 0.5100, k=0.5 0.5300, k=0.7 0.5200; highest: k=0.5" in text
    assert "k=0.5 beats k=0.7 is **supported**" in text
    # lam 0.2 and 0.9 score the same on every seed: a zero interval is not a win
    assert "lam=0.2 beats lam=0.9 is **inconclusive: the 95% interval contains 0**" in text


def test_analyses_config_is_checked():
    from atkd.report.analyses import parse_analyses

    assert parse_analyses(None) == {}
    with pytest.raises(ValueError, match="analyses.x.variant: expected 'on' or 'off'"):
        parse_analyses({"x": {"variant": "both", "members": {}}})
    with pytest.raises(ValueError, match="analyses.x.atkd: unknown key; valid: variant, members"):
        parse_analyses({"x": {"atkd": "on", "members": {}}})
    with pytest.raises(ValueError, match="labels must be distinct"):
        parse_analyses('{"x": {"members": {"a": "A", "b": "A"}}}')


def test_report_shows_reference_probes_and_the_sparse_cache_accuracy(tmp_path):
    """Another run's probe table appears beside this run's teachers in F3 (labelled, and kept out of the
    verdict); `atkd sparse-accuracy` rows become their own REPORT.md block."""
    from atkd.probes.sparse import FIELDS

    metrics, models, probes = _findings_inputs(tmp_path)
    ladder = tmp_path / "ladder-probes.csv"
    pd.DataFrame(  # rising UnC: were it counted, F3's verdict would not be 'supported'
        {"model": ["neox-a", "neox-b"], "unc_mean": [0.2, 0.9], "unc_below_0.1": [0.7, 0.1],
         "share_tkd": [0.8, 0.6], "share_unc_dkd": [0.2, 0.4], "tokens": [10, 10]}
    ).to_csv(ladder, index=False)  # fmt: skip
    sparse = tmp_path / "sparse.csv"
    row = dict.fromkeys(FIELDS, 1) | dict(
        teacher="t-big", k=64, bytes_per_position=264, dense_bytes_per_position=98304, loss="fkl", atkd="on",
        loss_rel_error=0.0123, grad_cosine=0.9991, tail_mass_mean=0.01, target_in_topk=0.97,
    )  # fmt: skip
    pd.DataFrame([row]).to_csv(sparse, index=False)
    report(
        metrics, models, tmp_path / "results" / "tables", tmp_path / "figures", ["kd"], probes=probes,
        reference_probes={"the ladder": ladder}, sparse=[sparse],
    )  # fmt: skip
    text = (tmp_path / "results" / "REPORT.md").read_text()
    assert "| neox-b (the ladder) | - | 0.9000 | 0.100 | 0.600 | 0.400 |" in text
    assert "larger teachers are more confident: **supported**" in text
    assert "## Sparse teacher cache: a top-K teacher against the dense one" in text
    assert "| t-big | 64 | 264 (dense 98304) | 0.0100 | 0.970 | fkl | on | 1.23e-02 | 0.9991 |" in text
    one = tmp_path / "one"
    report(metrics, models, one / "tables", one / "figures", ["kd"], probes=probes[1:], sparse=[sparse])
    assert "confident is **not measured**: this run has one teacher" in (one / "REPORT.md").read_text()
    bad = tmp_path / "not-probes.csv"
    pd.DataFrame({"model": ["x"], "unc_mean": [0.1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"not a probes table .*missing columns \['unc_below_0.1'"):
        report(
            metrics, models, tmp_path / "r2", tmp_path / "f2", ["kd"], probes=probes,
            reference_probes={"x": bad},
        )  # fmt: skip


def test_regime_check_places_kd_between_the_teacher_free_baseline_and_its_teacher():
    """The regime line compares kd with sft over their shared seeds and with its teacher's one score."""
    from atkd.report.findings import report_markdown

    rows = [("teacher", "t", 0, 0.6), ("sft", "", 1, 0.40), ("sft", "", 2, 0.42)]
    rows += [("kd", "t", 1, 0.45), ("kd", "t", 2, 0.47), ("kd", "t", 3, 0.70)]  # seed 3: kd only
    cols = ["method", "teacher", "seed", "value"]
    scores = pd.DataFrame(rows, columns=cols).assign(atkd="off", task="avg")
    models = pd.DataFrame({"model": ["t"], "params": [1e6]})
    text = report_markdown(scores, models, tasks=["avg"])
    # kd's mean is over its three seeds (0.54, below the teacher's 0.6); the difference over seeds 1-2
    assert "- `kd` at t 0.5400 (`sft` 0.4100, its teacher 0.6000); `kd` minus `sft`: +0.0500" in text
    assert "(2 seeds" in text and "; below its teacher (one model: no interval)" in text
    scores.loc[scores["method"] == "teacher", "value"] = 0.5
    assert "; not below its teacher" in report_markdown(scores, models, tasks=["avg"])
    assert "Not measured: the run needs `kd`" in report_markdown(scores[scores["method"] != "sft"], models)


def test_regime_states_kd_at_the_largest_minus_the_smallest_teacher():
    """Does the teacher move the KD student? kd at the largest teacher minus at the smallest, paired over
    their shared seeds, with no direction claimed; a run with one teacher has no such line."""
    from atkd.report.findings import report_markdown

    rows = [("sft", "", 1, 0.40), ("sft", "", 2, 0.42), ("kd", "small", 1, 0.45), ("kd", "small", 2, 0.47)]
    rows += [("kd", "big", 1, 0.50), ("kd", "big", 2, 0.53), ("kd", "mid", 1, 0.9), ("kd", "big", 3, 0.9)]
    scores = pd.DataFrame(rows, columns=["method", "teacher", "seed", "value"]).assign(atkd="off", task="avg")
    models = pd.DataFrame({"model": ["small", "mid", "big"], "params": [1e5, 5e5, 1e6]})
    text = report_markdown(scores, models, tasks=["avg"])
    # over seeds 1-2 (big's seed 3 has no partner); the middle teacher takes no part
    line = "- `kd` at the largest teacher (big) minus at the smallest (small): +0.0550 [95% CI +0.0479,"
    assert line in text
    assert "(2 seeds; only 2 seeds" in text
    assert "**higher at the largest teacher (the 95% interval excludes 0)**" in text
    one = report_markdown(scores[scores["teacher"].isin(["", "big"])], models, tasks=["avg"])
    assert "minus at the smallest" not in one


def test_regime_check_compares_only_students_of_the_same_budget():
    """A teacher-free baseline trained for another number of epochs (runs.csv) is named, not compared: a
    4-epoch SFT student against a 2-epoch KD one measures the budget, not distillation."""
    from atkd.report.findings import report_markdown

    rows = [("teacher", "t", 0, 0.6), ("sft", "", 1, 0.40), ("sft", "", 2, 0.42)]
    rows += [("sft_e4", "", 1, 0.50), ("sft_e4", "", 2, 0.52), ("kd", "t", 1, 0.45), ("kd", "t", 2, 0.47)]
    scores = pd.DataFrame(rows, columns=["method", "teacher", "seed", "value"]).assign(atkd="off", task="avg")
    models = pd.DataFrame({"model": ["t"], "params": [1e6]})
    epochs = {"sft": "2", "sft_e4": "4", "kd": "2"}
    runs = scores[scores["method"] != "teacher"].assign(
        run=lambda d: d["method"] + "/s" + d["seed"].astype(str),
        objective="x",
        epochs=lambda d: d["method"].map(epochs),
    )
    text = report_markdown(scores, models, tasks=["avg"], runs=runs)
    assert "`kd` minus `sft`: +0.0500" in text
    assert "- `kd` at t (2 epochs) is not compared with `sft_e4` (4 epochs): their budgets differ" in text
    assert "minus `sft_e4`" not in text
    # without epochs in runs.csv (written before it had them) every baseline is compared, as before
    assert "`kd` minus `sft_e4`: -0.0500" in report_markdown(
        scores, models, tasks=["avg"], runs=runs.drop(columns="epochs")
    )
