import math

import pytest

from experiments import runner, study


def test_bootstrap_draws_the_digits_as_well_as_the_seeds():
    assert study.bootstrap([(0, 0)] * 5) == [0.0, 0.0]  # models that agree on every digit: no spread at all
    one = study.bootstrap([(20, 20)])  # one seed: only the digits' sampling, sd 100 * sqrt(40) / 10,000 points
    half = 1.645 * 100 * math.sqrt(40) / 10_000
    assert one[0] == pytest.approx(-half, abs=0.01) and one[1] == pytest.approx(half, abs=0.01)
    # ten seeds at +-0.20 points: the seeds' spread (sd 0.20 / sqrt(10)) and the digits' (0.063 / sqrt(10)) add
    seeds = study.bootstrap([(30, 10), (10, 30)] * 5)
    half = 1.645 * math.sqrt((0.2 ** 2 + (100 * math.sqrt(40) / 10_000) ** 2) / 10)
    assert seeds[0] == pytest.approx(-half, abs=0.01) and seeds[1] == pytest.approx(half, abs=0.01)
    assert study.bootstrap([(40, 10)] * 10)[0] > 0.2  # a steady +0.30 points stays clear of 0


def row(p_equivalence: float, bootstrap) -> dict:
    """A comparison its family called equivalent (family Holm p = raw p), with a t-test far from significance."""
    return dict(tests={"t": (0.5, 0.5), "equivalence": (p_equivalence, p_equivalence)}, margin=runner.MARGIN,
                bootstrap=bootstrap, family_verdict="equivalent within +-0.10")


def test_an_equivalence_stands_only_with_its_test_and_its_bootstrap_inside_the_margin():
    out = [row(0.001, [-0.05, 0.05]), row(0.001, [-0.05, 0.12]), row(0.02, [-0.05, 0.05]), row(0.001, "not available")]
    study.study_wide(out)  # Holm over 8 tests: 0.001 -> at most 0.008, 0.02 -> 5 x 0.02 = 0.10
    assert [r["tests"]["equivalence"][2] for r in out] == pytest.approx([0.008, 0.008, 0.1, 0.008])
    assert [r["family_verdict"] for r in out] == ["equivalent within +-0.10", "inconclusive (bootstrap)",
                                                  "equivalent within +-0.10", "inconclusive (bootstrap)"]
    assert [r["study_verdict"] for r in out] == ["equivalent within +-0.10", "inconclusive", "inconclusive",
                                                 "inconclusive"]
