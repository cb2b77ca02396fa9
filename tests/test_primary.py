"""PROTOCOL2.md's decision rules (experiments/primary.py): counts of correct digits, Holm within a family at its
alpha, the declared comparisons only, and the tie rule (the exact sign-flip test is in tests/test_stats.py)."""

import re

import pytest
from scipy import stats

from conftest import below_the_rest, drift_results, summarised
from experiments import feasibility, primary


def test_ties_are_exact_on_counts_of_correct_digits():
    """99.47800000000001 and 99.478 are the same 9,948 digits: no float noise reaches the test."""
    assert primary.correct([99.47800000000001, 99.478]) == [9948, 9948]


def test_a_family_decides_at_its_alpha_under_holm():
    tests = [dict(comparison=c, p=p) for c, p in zip(primary.declared("none"), [0.001, 0.004, 0.02])]
    done = primary.decide("none", tests)
    assert [t["p_holm"] for t in done] == pytest.approx([0.003, 0.008, 0.02])
    assert [t["verdict"] for t in done] == ["differs", "differs", "inconclusive"]  # 0.02 > 0.0125
    assert feasibility.FAMILY_ALPHA == 0.0125


def test_only_the_declared_comparisons_can_be_decided():
    with pytest.raises(ValueError, match="are not the declared ones"):
        primary.decide("none", [dict(comparison="N - BN", p=0.01)])


def test_the_paired_t_is_scipys():
    a, b = [99.5, 99.6, 99.4, 99.55], [99.4, 99.5, 99.45, 99.5]
    found = primary.comparison("x", a, b)
    assert found["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and found["worst"] == pytest.approx(-0.05)


def test_the_tie_rule_takes_the_most_correct_digits_then_the_lower_rate():
    assert primary.choose_rate({0.04: [9948, 9948], 0.08: [9948, 9948], 0.02: [9940, 9950]}) == 0.04
    assert primary.choose_rate({0.01: [9900], 0.02: [9901]}) == 0.02


def test_each_protocol2_experiment_tests_what_was_declared():
    """drift's shifts and primary ways, real_batch's batches: the labels feasibility declared, in its order."""
    from experiments import drift, real_batch

    assert drift.SHIFTS == feasibility.SHIFTS and real_batch.BATCHES[:2] == feasibility.SMALL_BATCHES
    labels = [f"{way} - LN, {name}" for name in drift.SHIFTS for way in drift.PRIMARY_WAYS]
    assert labels == primary.declared("drift")


def test_real_batches_sit_beside_norm_batchs_ghost_batches_of_the_same_size():
    """PROTOCOL2.md 2's secondary: BN at a real batch of B against norm_batch's own runs of BN over ghost batches of B
    within 128 (stored once, reused), seed by seed, in the table, the comparisons and the headline."""
    import training
    from experiments import norm_batch, real_batch, runner

    settings = runner.settings_for(False)
    ghost = {training.key(r["spec"]) for r in real_batch.runs(settings, real_batch.SEEDS) if r["variant"] == real_batch.GHOST}
    ghost_batch = {training.key(r["spec"]) for r in norm_batch.runs(settings, real_batch.SEEDS)
                   if r["k"] in feasibility.SMALL_BATCHES}
    assert ghost == ghost_batch and len(ghost) == 20
    results = summarised("real_batch", lambda r: 99.5 - 0.3 * (r["variant"] == real_batch.GHOST) - 0.02 * (r["seed"] % 2))
    found = {c["comparison"]: c["difference"] for c in results["summary"]["secondary"]}
    assert found["BN at batch 8 - BN on ghost batches of 8 within 128"] == pytest.approx(0.3)
    assert found["BN at batch 32 - BN on ghost batches of 32 within 128"] == pytest.approx(0.3)
    assert "ghost batches of the same sizes within optimiser batches of 128 (Protocol 1), at 8, 99.19%" \
        in real_batch.headline(results)


def test_blur_and_elastic_keep_a_blank_image_blank_and_move_strokes():
    import torch

    import data
    from experiments import shift

    blank = torch.full((2, 1, 28, 28), -data.MNIST_MEAN / data.MNIST_STD)  # black, normalised
    stroke = blank.clone()
    stroke[:, :, 10:18, 12:16] = (1 - data.MNIST_MEAN) / data.MNIST_STD
    for name in ("blur", "elastic"):
        assert torch.allclose(shift.shifted(blank, name, 1.0), blank, atol=1e-5)
        assert torch.allclose(shift.shifted(stroke, name, 0.0), stroke, atol=1e-6)
        assert not torch.allclose(shift.shifted(stroke, name, 1.0), stroke, atol=0.1)
    pixels = lambda x: x * data.MNIST_STD + data.MNIST_MEAN
    assert float(pixels(shift.shifted(stroke, "blur", 1.0)).sum()) == pytest.approx(float(pixels(stroke).sum()), rel=1e-4)


@pytest.mark.parametrize("name, variant, picked", [
    ("no_norm", "N", "BatchNorm or LayerNorm or GroupNorm: each shown above no normalisation"),
    ("scarce", "N", "LayerNorm or GroupNorm: each shown above no normalisation, BatchNorm"),
    ("real_batch", "BN", "at 8: LayerNorm or GroupNorm: each shown above BatchNorm; at 32: LayerNorm or GroupNorm: "
                   "each shown above BatchNorm")])
def test_a_protocol2_pick_says_what_its_verdicts_show_and_nothing_where_they_show_nothing(name, variant, picked):
    import importlib

    module = importlib.import_module(f"experiments.{name}")
    results = summarised(name, below_the_rest(variant) if name != "scarce" else
                         lambda r: below_the_rest("N")(r) - 0.2 * (r["variant"] == "BN"))
    row = module.pick(results)
    assert row["pick"] == picked and "(differs)" in row["why"] and "(differs)" in module.headline(results)
    for c in results["summary"]["primary"]:
        c["verdict"] = "inconclusive"
    row = module.pick(results)
    assert "shown above" not in row["pick"] and "(differs)" not in row["why"] + module.headline(results)


def test_no_normalisations_sentence_gives_each_norms_lowest_seed_beside_its_mean():
    from experiments import no_norm

    said = no_norm.headline(summarised("no_norm", below_the_rest("N")))
    assert all(re.search(rf"{v} \d+\.\d\d% \(\d+\.\d\d%\)", said) for v in ("BN", "LN", "GN"))


def test_drifts_pick_follows_its_exact_tests():
    from experiments import drift

    row = drift.pick(drift_results(-30.0, 2.0))
    assert row["pick"] == ("LayerNorm rather than BatchNorm with its running statistics (shown below LN under 7 of 7 "
                           "shifts); BatchNorm with statistics re-estimated on unlabelled shifted digits (shown above LN "
                           "under 7 of 7)")
    said = drift.headline(drift_results(-30.0, 2.0))
    assert "BatchNorm with its running statistics (BN running) is shown below LN under 7 of 7 shifts" in said
    assert said.endswith("(worst seed 90.0%).")  # the exploratory means too, each with its lowest seed
    assert drift.pick(drift_results(0.0, 0.0))["pick"] == "none is shown better"
    results = drift_results(-30.0, 2.0)
    for c in results["summary"]["primary"]:
        c["verdict"] = "inconclusive"  # large differences, but no test that shows them
    assert drift.pick(results)["pick"] == "none is shown better"
    assert "(BN re-estimated) is not shown to differ from LN under any of the 7 shifts" in drift.headline(results)
