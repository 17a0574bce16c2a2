"""The hierarchical paired bootstrap of atkd.report.stats on synthetic studies with known effects and
variance components: its standard error, interval, MDE and planning against direct computation."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from atkd.report.stats import (
    Z_MDE,
    Components,
    Evidence,
    bootstrap_differences,
    paired,
    paired_bootstrap,
)


def simulate(rng, effect, seeds, docs, suites, sd_seed, sd_doc, sd_res) -> list[np.ndarray]:
    """Per-suite (seeds x docs) paired differences: effect + a seed effect shared by every suite + a
    document effect + residual noise (a crossed design with known variance components)."""
    seed_effect = rng.normal(0.0, sd_seed, seeds)
    return [
        effect
        + seed_effect[:, None]
        + rng.normal(0.0, sd_doc, docs)[None, :]
        + rng.normal(0.0, sd_res, (seeds, docs))
        for _ in range(suites)
    ]


def analytic_se(seeds, docs, suites, sd_seed, sd_doc, sd_res) -> float:
    """The standard error of delta in that design: Var = s_seed^2/S + (s_doc^2/D + s_res^2/(S D))/T."""
    return math.sqrt(sd_seed**2 / seeds + (sd_doc**2 / docs + sd_res**2 / (seeds * docs)) / suites)


def test_bootstrap_se_interval_and_mde_match_the_analytic_design():
    rng = np.random.default_rng(0)
    design = dict(seeds=20, docs=200, suites=2, sd_seed=0.02, sd_doc=0.1, sd_res=0.05)
    truth = analytic_se(**design)
    ses, halves, components = [], [], []
    for i in range(12):
        cmp = bootstrap_differences(simulate(rng, 0.03, **design), seed=i)
        assert cmp.mde == pytest.approx(Z_MDE * cmp.se)  # MDE = (z_0.975 + z_0.80) SE
        assert cmp.seeds == 20 and cmp.docs == 400 and cmp.suites == 2 and cmp.seeds_only == 0
        ses.append(cmp.se)
        halves.append((cmp.high - cmp.low) / 2)
        components.append(cmp.components)
    assert Z_MDE == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    # the bootstrap's standard error and interval are those of the design (RMS over datasets)
    assert math.sqrt(np.mean(np.square(ses))) == pytest.approx(truth, rel=0.08)
    assert np.mean(halves) == pytest.approx(1.959964 * truth, rel=0.08)
    # the variance components recover the design's, so the planning helper predicts its MDE
    assert np.mean([c.seed_var for c in components]) == pytest.approx(0.02**2, rel=0.3)
    assert np.mean([np.mean(c.doc_var) for c in components]) == pytest.approx(0.1**2, rel=0.1)
    assert np.mean([np.mean(c.resid_var) for c in components]) == pytest.approx(0.05**2, rel=0.05)
    predicted = np.mean([c.mde(seeds=80, docs=800) for c in components])
    assert predicted == pytest.approx(Z_MDE * analytic_se(80, 800, 2, 0.02, 0.1, 0.05), rel=0.1)


def test_residual_dominated_design_bootstrap_conservative_components_exact():
    """Where the seed x document residual dominates (two similar students), the crossed bootstrap counts it
    more than once: its SE lies between the truth and sqrt(3) x the truth, while the variance components
    (what the power section plans with) predict the truth."""
    rng = np.random.default_rng(9)
    design = dict(seeds=5, docs=100, suites=4, sd_seed=0.01, sd_doc=0.05, sd_res=0.3)
    truth = analytic_se(**design)
    comparisons = [bootstrap_differences(simulate(rng, 0.0, **design)) for _ in range(20)]
    boot = math.sqrt(np.mean([c.se**2 for c in comparisons]))
    assert 1.2 * truth < boot < math.sqrt(3) * truth
    predicted = math.sqrt(np.mean([c.components.variance() for c in comparisons]))
    assert predicted == pytest.approx(truth, rel=0.12)


def test_interval_covers_the_true_effect_about_95_percent():
    rng = np.random.default_rng(1)
    effect, hits, runs = 0.02, 0, 300
    for _ in range(runs):
        diffs = simulate(rng, effect, seeds=8, docs=40, suites=2, sd_seed=0.01, sd_doc=0.08, sd_res=0.04)
        cmp = bootstrap_differences(diffs, n_boot=400)
        hits += cmp.low <= effect <= cmp.high
    assert 0.90 <= hits / runs <= 0.985


def test_the_interval_can_fail_to_cover_a_wrong_effect():
    """The coverage check above can fail: the same intervals rarely cover a value 4 SE away (when
    the estimate is 2 SE off: about 2% of datasets)."""
    rng = np.random.default_rng(2)
    wrong, hits = 0.02 + 4 * analytic_se(8, 40, 2, 0.01, 0.08, 0.04), 0
    for _ in range(100):
        diffs = simulate(rng, 0.02, seeds=8, docs=40, suites=2, sd_seed=0.01, sd_doc=0.08, sd_res=0.04)
        cmp = bootstrap_differences(diffs, n_boot=400)
        hits += cmp.low <= wrong <= cmp.high
    assert hits / 100 < 0.1


def test_mde_shrinks_as_one_over_sqrt_n():
    rng = np.random.default_rng(3)
    # documents only (one seed): four times the documents, half the MDE
    small = [bootstrap_differences(simulate(rng, 0.0, 1, 100, 2, 0.0, 0.1, 0.0)).mde for _ in range(6)]
    large = [bootstrap_differences(simulate(rng, 0.0, 1, 400, 2, 0.0, 0.1, 0.0)).mde for _ in range(6)]
    assert np.mean(large) / np.mean(small) == pytest.approx(0.5, rel=0.1)
    # the planning helper: without a residual part, k times the seeds and documents give 1/sqrt(k)
    c = Components(seeds=4, docs=(100, 100), seed_var=4e-4, doc_var=(0.01, 0.02), resid_var=(0.0, 0.0))
    for k in (2, 4, 9):
        assert c.mde(4 * k, 100 * k) == pytest.approx(c.mde() / math.sqrt(k))
    # seeds alone shrink only the seed part; the documents' part is a floor
    assert c.mde(10**9) == pytest.approx(Z_MDE * math.sqrt((0.01 + 0.02) / 100 / 4))


def test_seeds_for_a_target_mde():
    c = Components(seeds=2, docs=(100,) * 8, seed_var=4e-4, doc_var=(0.01,) * 8, resid_var=(0.02,) * 8)
    n = c.seeds_for(0.02)
    assert n is not None and c.mde(n) <= 0.02 < c.mde(n - 1)
    assert c.seeds_for(c.mde(1) + 1e-9) == 1
    assert c.seeds_for(0.001) is None  # the documents alone give a larger MDE: more seeds never reach it
    more = c.seeds_for(0.001, docs=10**6)
    assert more is not None and c.mde(more, 10**6) <= 0.001
    one = Components(seeds=1, docs=(100,), seed_var=math.nan, doc_var=(0.01,), resid_var=(0.0,))
    assert one.seeds_for(0.02) is None and math.isnan(one.mde(5))


def test_pairing_a_shared_per_seed_offset_cancels():
    rng = np.random.default_rng(4)
    base = [rng.normal(0.5, 0.1, (5, 60)) for _ in range(3)]
    a = [b + 0.03 + rng.normal(0, 0.02, b.shape) for b in base]
    offset = rng.normal(0.0, 0.3, 5)[:, None]  # e.g. a seed that is good for every student
    offset -= offset.mean()  # (centred: the same estimate either way, only its spread differs)
    plain = paired_bootstrap(a, base)
    shifted = paired_bootstrap([x + offset for x in a], [b + offset for b in base])
    for field in ("estimate", "low", "high", "se"):
        assert getattr(shifted, field) == pytest.approx(getattr(plain, field), abs=1e-12)
    # the same offset in one arm only is not cancelled: it swamps the effect
    unpaired = paired_bootstrap([x + offset for x in a], base)
    assert unpaired.se > 5 * plain.se and plain.verdict == "supported"
    assert unpaired.verdict.startswith("inconclusive")


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(np.float64, (3, 7), elements=st.floats(-1, 1)),
    seed_offsets=arrays(np.float64, (3, 1), elements=st.floats(-5, 5)),
    doc_offsets=arrays(np.float64, (1, 7), elements=st.floats(-5, 5)),
    shift=st.floats(-1, 1),
)
def test_paired_invariances(x, seed_offsets, doc_offsets, shift):
    """Anything both arms share (per seed, per document) cancels; shifting one arm shifts the estimate and
    the interval; swapping the arms negates them."""
    y = np.zeros_like(x)
    ref = paired_bootstrap([x], [y], n_boot=200)
    common = seed_offsets + doc_offsets
    same = paired_bootstrap([x + common], [y + common], n_boot=200)
    assert (same.estimate, same.low, same.high) == pytest.approx((ref.estimate, ref.low, ref.high), abs=1e-9)
    moved = paired_bootstrap([x + shift], [y], n_boot=200)
    assert (moved.estimate, moved.low, moved.high) == pytest.approx(
        (ref.estimate + shift, ref.low + shift, ref.high + shift), abs=1e-9
    )
    assert moved.se == pytest.approx(ref.se, abs=1e-9)
    swapped = paired_bootstrap([y], [x], n_boot=200)
    assert (swapped.estimate, swapped.low, swapped.high) == pytest.approx(
        (-ref.estimate, -ref.high, -ref.low), abs=1e-9
    )


def test_verdicts_use_the_interval_and_the_mde():
    rng = np.random.default_rng(5)
    up = bootstrap_differences(simulate(rng, 0.05, 5, 200, 2, 0.005, 0.05, 0.02))
    assert up.verdict == "supported" and up.verdict_for(-1) == "not supported (opposite direction)"
    flat = bootstrap_differences(simulate(rng, 0.0, 5, 200, 2, 0.005, 0.05, 0.02))
    assert flat.low < 0 < flat.high
    assert flat.verdict.startswith(f"inconclusive: |effect| {abs(flat.estimate):.4f} is below the MDE")
    text = up.text()
    assert text.startswith(f"{up.estimate:+.4f} [95% CI {up.low:+.4f}, {up.high:+.4f}], MDE {up.mde:.4f}")
    assert text.endswith("(5 seeds x 400 docs)")
    assert bootstrap_differences(simulate(rng, 0.05, 5, 200, 2, 0.005, 0.05, 0.02)).se != up.se
    again = bootstrap_differences(simulate(np.random.default_rng(5), 0.05, 5, 200, 2, 0.005, 0.05, 0.02))
    assert (again.low, again.high, again.se) == (up.low, up.high, up.se)  # deterministic


def test_one_seed_resamples_documents_only_and_says_so():
    rng = np.random.default_rng(6)
    cmp = bootstrap_differences(simulate(rng, 0.05, 1, 300, 2, 0.0, 0.05, 0.0))
    assert cmp.seeds == 1 and cmp.se > 0 and cmp.verdict == "supported"
    assert "1 seed x 600 docs; documents only: seed-to-seed variation not measured" in cmp.text()
    assert math.isnan(cmp.components.seed_var) and math.isnan(cmp.mde_for(seeds=5))
    nothing = paired(pd.Series({1: 0.6}), pd.Series({1: 0.5}))
    assert nothing is not None and nothing.verdict.startswith("inconclusive: one seed and no per-document")
    assert paired(pd.Series({1: 0.6}), pd.Series({2: 0.5})) is None


def test_evidence_pairs_documents_by_id_and_falls_back_to_seeds():
    """Rows pair by (task, doc id) whatever their order; a task without per-document scores enters with
    its per-seed score; the estimate is the difference of the per-seed average scores."""
    rng = np.random.default_rng(7)
    per_seed, docs, values = [], [], {}
    for method, shift in (("a", 0.05), ("b", 0.0)):
        for seed in (1, 2, 3):
            for task in ("x", "y"):
                v = values[(method, seed, task)] = rng.normal(0.5, 0.1, 20) + shift
                per_seed.append(
                    dict(teacher="t", method=method, atkd="off", seed=seed, task=task, value=v.mean())
                )
                if task == "y":  # no per-document scores
                    continue
                order = rng.permutation(20) if method == "b" else np.arange(20)  # rows in another order
                meta = dict(method=method, teacher="t", atkd="off", seed=seed, task=task, metric="m")
                docs += [meta | {"doc": f"d{i:02d}", "value": v[i]} for i in order]
    per_seed = pd.DataFrame(per_seed)
    avg = per_seed.groupby(["method", "seed"])["value"].mean()
    ev = Evidence(per_seed, {"x": "m", "y": "m"}, pd.DataFrame(docs), n_boot=300)
    cmp = ev.compare(("a", "t", "off"), ("b", "t", "off"))
    assert cmp.estimate == pytest.approx((avg["a"] - avg["b"]).mean())
    assert (cmp.seeds, cmp.docs, cmp.suites, cmp.seeds_only) == (3, 20, 2, 1)
    assert "1 of 2 suites without per-document scores" in cmp.text()
    # the same as the arrays aligned by hand: documents by id, task y as one column of per-seed means
    aligned = [
        [
            np.array([values[(m, s, "x")] for s in (1, 2, 3)]),
            np.array([[values[(m, s, "y")].mean()] for s in (1, 2, 3)]),
        ]
        for m in ("a", "b")
    ]
    manual = paired_bootstrap(*aligned, n_boot=300)
    assert (cmp.low, cmp.high, cmp.se) == pytest.approx((manual.low, manual.high, manual.se))
    shuffled = [aligned[0], [aligned[1][0][:, ::-1], aligned[1][1]]]  # documents mispaired
    assert paired_bootstrap(*shuffled, n_boot=300).se != pytest.approx(manual.se)
    assert ev.compare(("a", "t", "off"), ("c", "t", "off")) is None


def test_fast_enough_for_a_study():
    """~50 comparisons x 8 suites x 400 documents x 5 seeds take seconds (about 2 s measured)."""
    rng = np.random.default_rng(8)
    data = [[rng.normal(size=(5, 400)) for _ in range(8)] for _ in range(50)]
    start = time.perf_counter()
    for diffs in data:
        bootstrap_differences(diffs)
    assert time.perf_counter() - start < 30


def _two_arm_evidence(shift: float, seeds=(1, 2, 3, 4, 5), n_docs=200) -> Evidence:
    """Arms `a` (shifted by `shift`) and `b` at teacher t, and `sft` without a teacher, with documents."""
    rng = np.random.default_rng(11)
    per_seed, docs = [], []
    for method, teacher, delta in (("a", "t", shift), ("b", "t", 0.0), ("sft", "", -0.2)):
        for seed in seeds:
            v = np.clip(rng.normal(0.5 + delta, 0.1, n_docs), 0, 1)
            per_seed.append(
                dict(teacher=teacher, method=method, atkd="off", seed=seed, task="x", value=v.mean())
            )
            meta = dict(method=method, teacher=teacher, atkd="off", seed=seed, task="x", metric="m")
            docs += [meta | {"doc": f"d{i}", "value": v[i]} for i in range(n_docs)]
    return Evidence(pd.DataFrame(per_seed), {"x": "m"}, pd.DataFrame(docs), n_boot=400)


def test_requested_comparisons_read_their_interval_without_a_claimed_direction():
    """A clear shift reads 'A above B' (or 'below', swapped); no shift reads 'no difference resolved'; the
    numbers are Evidence.compare's; a method without a teacher is found under the empty teacher."""
    from atkd.report.comparisons import comparison_lines, parse_comparisons

    ev = _two_arm_evidence(0.1)
    asked = parse_comparisons(
        '[{"a": "a", "b": "b", "teacher": "t"}, {"a": "b", "b": "a", "teacher": "t"},'
        ' {"a": "a", "b": "sft", "teacher": "t"}, {"a": "a", "b": "zz", "teacher": "t"}]'
    )
    rows = [r for r in comparison_lines(asked, ev) if r.startswith("| ") and "---" not in r][1:]
    assert ev.compare(("a", "t", "off"), ("b", "t", "off")).text() in rows[0]
    assert rows[0].endswith("A above B (the 95% interval excludes 0) |")
    assert rows[1].endswith("A below B (the 95% interval excludes 0) |")
    assert "A above B" in rows[2]  # against sft, under teacher ""
    assert "not measured" in rows[3]
    ev = _two_arm_evidence(0.0)
    (row,) = [r for r in comparison_lines(asked[:1], ev) if r.startswith("| a ")]
    assert "no difference resolved" in row
    assert comparison_lines([], ev) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"a": "x"}', "expected a list"),
        ('[{"a": "x"}]', r"comparisons\[0\].b: a method name is required"),
        (
            '[{"a": "x", "b": "y", "variant": "yes"}]',
            r"comparisons\[0\].variant: 'yes'; valid: off, on, both",
        ),
        ('[{"a": "x", "b": "y", "who": 1}]', r"comparisons\[0\].who: unknown key"),
    ],
)
def test_requested_comparisons_are_checked(raw, message):
    from atkd.report.comparisons import parse_comparisons

    with pytest.raises(ValueError, match=message):
        parse_comparisons(raw)
