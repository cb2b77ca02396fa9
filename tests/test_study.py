import pytest

from experiments import stats, study


def row(p_equivalence: float, bootstrap) -> dict:
    """A comparison its family called equivalent (family Holm p = raw p), with a t-test far from significance."""
    return dict(tests={"t": (0.5, 0.5), "equivalence": (p_equivalence, p_equivalence)}, margin=stats.MARGIN,
                bootstrap=bootstrap, family_verdict="equivalent within +-0.10")


def test_an_equivalence_stands_only_with_its_test_and_its_bootstrap_inside_the_margin():
    out = [row(0.001, [-0.05, 0.05]), row(0.001, [-0.05, 0.12]), row(0.02, [-0.05, 0.05]), row(0.001, "not available")]
    study.study_wide(out)  # Holm over 8 tests: 0.001 -> at most 0.008, 0.02 -> 5 x 0.02 = 0.10
    assert [r["tests"]["equivalence"][2] for r in out] == pytest.approx([0.008, 0.008, 0.1, 0.008])
    assert [r["family_verdict"] for r in out] == ["equivalent within +-0.10", "inconclusive (bootstrap)",
                                                  "equivalent within +-0.10", "inconclusive (bootstrap)"]
    assert [r["study_verdict"] for r in out] == ["equivalent within +-0.10", "inconclusive", "inconclusive",
                                                 "inconclusive"]
