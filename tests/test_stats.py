"""experiments/stats.py: each statistic against scipy, numpy or a closed form worked by hand."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments import stats


def test_standard_error_of_one_accuracy():
    assert stats.standard_error(99.5) == pytest.approx(0.0705, abs=1e-4)  # sqrt(0.995 * 0.005 / 10,000) in points
    assert stats.standard_error(50.0, n=100) == pytest.approx(5.0)


def test_mean_std_is_the_mean_and_the_sample_standard_deviation():
    values = [99.41, 99.52, 99.38, 99.60]
    assert stats.mean_std(values) == pytest.approx((np.mean(values), np.std(values, ddof=1)))
    assert stats.mean_std([99.5]) == (99.5, 0.0)


def test_mcnemar_counts_only_the_discordant_digits():
    labels = "0123456789"
    a = "0123456780"  # wrong on the last digit
    b = "9999456789"  # wrong on the first four
    assert stats.mcnemar(a, b, labels) == {"only_a": 4, "only_b": 1, "p": pytest.approx(0.375)}  # 2 * P(X <= 1 | 5, 1/2)
    assert stats.mcnemar(a, a, labels)["p"] == 1.0
    lopsided = stats.mcnemar(labels * 3, "0" * 30, labels * 3)  # 27 digits only A gets right, none only B
    assert lopsided["only_a"] == 27 and lopsided["p"] < 1e-7


def test_paired_t_needs_two_pairs_and_is_scipys():
    assert stats.paired_t([99.5], [99.4]) is None
    assert stats.paired_t([99.5, 99.6, 99.4], [99.5, 99.6, 99.4]) == 1.0
    a, b = [99.51, 99.62, 99.43, 99.55], [99.41, 99.50, 99.34, 99.44]
    assert stats.paired_t(a, b) == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue) and stats.paired_t(a, b) < 0.001


def signed_rank_p(d: list[int]) -> float:
    """The exact two-sided Wilcoxon p by hand: the sum of the ranks of the positive differences (zeros dropped, tied
    ranks averaged) against its value under each of the 2^n sign patterns."""
    d = [x for x in d if x]
    ranks = scipy_stats.rankdata([abs(x) for x in d])
    observed = sum(r for r, x in zip(ranks, d) if x > 0)
    sums = [sum(r for r, s in zip(ranks, signs) if s > 0) for signs in itertools.product((1, -1), repeat=len(d))]
    return min(1.0, 2 * min(sum(s >= observed for s in sums), sum(s <= observed for s in sums)) / len(sums))


def test_wilcoxon_is_exact_with_ties_and_zeros():
    up = [99.0 + 0.1 * i for i in range(10)]
    same = [99.0] * 10
    assert stats.wilcoxon(up, same) == pytest.approx(2 / 2 ** 9)  # 9 non-zero differences, all positive: 2 of 2^9
    assert stats.wilcoxon(same, same) == 1.0
    assert stats.wilcoxon([99.0], [98.0]) is None
    d = [3, -1, 2, 2, 5, -2, 4, 0]  # tied |2|s and a zero
    assert stats.wilcoxon(d, [0] * len(d)) == pytest.approx(signed_rank_p(d))


def test_the_sign_flip_test_is_exact():
    assert stats.sign_flip_p([3] * 12) == 2 / 4096  # every seed one way: the floor PROTOCOL2.md's drift can reach
    assert stats.sign_flip_p([0] * 5) == 1.0
    assert stats.sign_flip_p([5, -5]) == 1.0
    d = [4, 1, -2, 7, 3]  # by hand: the 32 sign patterns' sums, those at least |13| from zero
    sums = [sum(s * x for s, x in zip(signs, d)) for signs in itertools.product((1, -1), repeat=5)]
    assert stats.sign_flip_p(d) == sum(abs(x) >= 13 for x in sums) / 32


def power(n: int, effect_in_sds: float) -> float:
    """The power of a two-sided paired t-test at ALPHA with n pairs, from the noncentral t (both tails)."""
    critical, shift = scipy_stats.t.ppf(1 - stats.ALPHA / 2, n - 1), effect_in_sds * math.sqrt(n)
    return scipy_stats.nct.sf(critical, n - 1, shift) + scipy_stats.nct.cdf(-critical, n - 1, shift)


@pytest.mark.parametrize("sd, seeds", [(0.1, 10), (0.125, 15), (0.2, 34)])  # G*Power's paired t: d = 1, 0.8, 0.5
def test_seeds_for_power_are_the_fewest_that_reach_80_percent(sd, seeds):
    assert stats.seeds_for_power(sd, effect=0.1) == seeds
    assert power(seeds, 0.1 / sd) >= 0.8 > power(seeds - 1, 0.1 / sd)
    assert stats.seeds_for_power(0.0) is None


def test_compare_is_scipys_paired_t_interval_and_two_one_sided_tests():
    a, b = [99.50, 99.61, 99.55, 99.45, 99.52, 99.58], [99.47, 99.55, 99.57, 99.40, 99.50, 99.51]
    d = np.subtract(a, b)
    found = stats.compare(a, b)
    assert found["n"] == 6 and found["difference"] == pytest.approx(d.mean()) and found["sd"] == pytest.approx(d.std(ddof=1))
    assert found["p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert found["ci"] == pytest.approx(list(scipy_stats.ttest_1samp(d, 0.0).confidence_interval(0.95)))
    lower = scipy_stats.ttest_1samp(d, -stats.MARGIN, alternative="greater").pvalue  # H0: difference <= -margin
    upper = scipy_stats.ttest_1samp(d, stats.MARGIN, alternative="less").pvalue  # H0: difference >= +margin
    assert found["p_equivalence"] == pytest.approx(max(lower, upper))
    assert found["seeds_for_power"] == stats.seeds_for_power(d.std(ddof=1))
    constant = stats.compare([1.0625, 2.0625], [1.0, 2.0])  # every difference exactly +0.0625: no spread
    assert constant["ci"] == [0.0625, 0.0625] and constant["p_equivalence"] == 0.0
    assert stats.compare([1.25, 2.25], [1.0, 2.0])["p_equivalence"] == 1.0  # exactly +0.25: outside the margin
    one = stats.compare([99.5], [99.4])
    assert one["ci"] is None and one["p"] is None and one["p_equivalence"] is None and one["seeds_for_power"] is None


def test_verdicts_say_differs_equivalent_or_inconclusive_after_holm():
    a = [99.50, 99.60, 99.55, 99.45, 99.52]
    near = [x - 0.01 for x in a[:4]] + [a[4] + 0.01]  # differences within a few hundredths of a point
    c = stats.compare(a, near)
    assert c["ci"][0] < c["difference"] < c["ci"][1] and c["p_equivalence"] < 0.05 and c["p"] > 0.05
    far = stats.compare([x + 0.3 for x in a], [x + (0.01 if i % 2 else -0.01) for i, x in enumerate(a)])
    assert far["ci"][0] > 0.2 and far["p"] < 0.001 and far["p_equivalence"] > 0.5
    stats.verdicts([c, far])
    assert (c["verdict"], far["verdict"]) == ("equivalent within +-0.10", "differs")
    assert c["p_holm"] == pytest.approx(holm_by_hand([c["p"], far["p"]])[0])
    noisy = stats.compare([99.5, 99.7, 99.4], [99.6, 99.4, 99.6])
    stats.verdicts([noisy])
    assert noisy["verdict"] == "inconclusive"


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm for two p-values: the smaller times 2, the larger as it is, but never below the smaller's."""
    low, high = sorted(p)
    adjusted = {low: min(1.0, 2 * low)}
    adjusted[high] = max(adjusted[low], high)
    return [adjusted[x] for x in p]


def test_holm_adjusts_in_order_and_keeps_missing_values():
    # sorted 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (kept monotone), in the original order
    assert stats.holm([0.04, None, 0.01, 0.02]) == [pytest.approx(0.04), None, pytest.approx(0.03), pytest.approx(0.04)]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> 0.06 (never below the one before)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm([None, None]) == [None, None]


def test_holm_fields_adjusts_each_field_within_its_own_family():
    rows = [dict(p=0.01, p_wilcoxon=0.04), dict(p=0.04, p_wilcoxon=0.01), dict(p=0.02, p_wilcoxon=None)]
    stats.holm_fields(rows, ("p", "p_wilcoxon"))
    assert [r["p_holm"] for r in rows] == pytest.approx([0.03, 0.04, 0.04])
    assert [r["p_wilcoxon_holm"] for r in rows] == [pytest.approx(0.04), pytest.approx(0.02), None]


def test_compare_rows_compares_every_other_row_with_the_reference():
    reference = dict(name="ref", test_acc=[99.40, 99.50, 99.45])
    rows = [dict(name="up", test_acc=[99.70, 99.80, 99.76]), reference, dict(name="same", test_acc=[99.40, 99.51, 99.44])]
    stats.compare_rows(rows, reference, "against_ref")
    assert "against_ref" not in reference
    for row in (rows[0], rows[2]):
        expected = stats.compare(row["test_acc"], reference["test_acc"])
        assert {k: row["against_ref"][k] for k in expected} == expected
    assert [rows[0]["against_ref"]["p_holm"], rows[2]["against_ref"]["p_holm"]] == \
        pytest.approx(holm_by_hand([rows[0]["against_ref"]["p"], rows[2]["against_ref"]["p"]]))
    assert rows[0]["against_ref"]["verdict"] == "differs"


def test_compare_ways_compares_each_way_with_the_first():
    acc = {"running": [99.4, 99.5, 99.45], "recomputed": [99.5, 99.56, 99.5], "per batch": [98.0, 98.2, 98.1]}
    row = stats.compare_ways(acc)
    assert row["acc"] is acc and row["mean"] == pytest.approx({w: np.mean(a) for w, a in acc.items()})
    assert list(row["against"]) == ["recomputed", "per batch"]
    assert row["against"]["per batch"] == stats.compare(acc["per batch"], acc["running"])


def test_trend_is_each_seeds_least_squares_slope_then_a_t_test_of_the_slopes():
    x = [1.0, 2.0, 3.0, 5.0, 7.0]  # log2 of k = 2, 4, 8, 32, 128
    rising = [[99.0 + 0.05 * v + noise for v, noise in zip(x, shift)]
              for shift in ([0, 0.01, -0.01, 0, 0], [0.01, 0, 0, -0.01, 0], [0, 0, 0.01, 0, -0.01])]
    t = stats.trend(x, rising)
    slopes = [np.polyfit(x, a, 1)[0] for a in rising]
    assert t["slopes"] == pytest.approx(slopes) and t["slope"] == pytest.approx(np.mean(slopes))
    assert t["ci"] == pytest.approx(list(scipy_stats.ttest_1samp(slopes, 0.0).confidence_interval(0.95)))
    assert t["p"] == pytest.approx(scipy_stats.ttest_1samp(slopes, 0.0).pvalue) and t["p"] < 0.01
    flat = stats.trend(x, [[99.0 + 0.05 * v for v in x], [99.0 - 0.05 * v for v in x], [99.0 + 0.01 * v for v in x]])
    assert flat["slope"] == pytest.approx(0.01 / 3) and flat["p"] > 0.5
    one = stats.trend(x, rising[:1])
    assert one["ci"] == [one["slope"], one["slope"]] and one["p"] is None


def test_bootstrap_draws_the_digits_as_well_as_the_seeds():
    assert stats.bootstrap([(0, 0)] * 5) == [0.0, 0.0]  # models that agree on every digit: no spread at all
    one = stats.bootstrap([(20, 20)])  # one seed: only the digits' sampling, sd 100 * sqrt(40) / 10,000 points
    half = 1.645 * 100 * math.sqrt(40) / 10_000
    assert one[0] == pytest.approx(-half, abs=0.01) and one[1] == pytest.approx(half, abs=0.01)
    # ten seeds at +-0.20 points: the seeds' spread (sd 0.20 / sqrt(10)) and the digits' (0.063 / sqrt(10)) add
    seeds = stats.bootstrap([(30, 10), (10, 30)] * 5)
    half = 1.645 * math.sqrt((0.2 ** 2 + (100 * math.sqrt(40) / 10_000) ** 2) / 10)
    assert seeds[0] == pytest.approx(-half, abs=0.01) and seeds[1] == pytest.approx(half, abs=0.01)
    assert stats.bootstrap([(40, 10)] * 10)[0] > 0.2  # a steady +0.30 points stays clear of 0
