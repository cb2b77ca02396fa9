"""The experiments' statistics, numbers only (the tables print them with runner.py's p_value and interval):

- one accuracy: its standard error on the test digits; over seeds, mean and spread;
- two models on the same digits: exact McNemar; over seeds, paired: the t-test, the exact Wilcoxon signed-rank test,
  the exact sign-flip test on counts of correct digits, and `compare` (the difference with its 95% interval, the
  t-test, the equivalence test and the seeds 80% power needs);
- a family of comparisons: Holm's adjustment and the verdicts it gives;
- a trend over seeds: each seed's least-squares slope, then a t-test of the slopes;
- the bootstrap over seeds and digits that an equivalence must also pass (experiments/study.py).

tests/test_stats.py checks each against scipy or a closed form.
"""

import itertools
import math
import statistics

import numpy as np
from scipy import stats

TEST_DIGITS = 10_000
MARGIN = 0.10  # points of accuracy: the equivalence margin, set after main's seeds 1-5 and before every later run (STUDY.md)
ALPHA = 0.05
RESAMPLES = 10_000  # the bootstrap's
BOOTSTRAP_SEED = 0


def standard_error(percent: float, n: int = TEST_DIGITS) -> float:
    """Standard error (points) of one accuracy (%) measured on n digits: sqrt(p (1 - p) / n)."""
    p = percent / 100
    return 100 * math.sqrt(p * (1 - p) / n)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mcnemar(predictions_a: str, predictions_b: str, labels: str) -> dict:
    """Exact McNemar test of two models on the same digits: b = digits only A gets right, c = only B; the p-value
    (two-sided) is that of b successes in b + c fair coin flips."""
    b = sum(pa == y != pb for pa, pb, y in zip(predictions_a, predictions_b, labels))
    c = sum(pb == y != pa for pa, pb, y in zip(predictions_a, predictions_b, labels))
    return {"only_a": b, "only_b": c, "p": float(stats.binomtest(b, b + c).pvalue) if b + c else 1.0}


def paired_t(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of a paired t-test of a against b (one pair per seed); None with fewer than two pairs."""
    if len(a) < 2:
        return None
    if all(x == y for x, y in zip(a, b)):
        return 1.0
    return float(stats.ttest_rel(a, b).pvalue)


def wilcoxon(a: list[float], b: list[float]) -> float | None:
    """Two-sided exact Wilcoxon signed-rank p of a against b (paired by seed), zero differences dropped: every one of
    the 2^n signs of the ranks is counted, so tied differences (accuracies move in steps of 0.01) are exact too; 1.0
    where every pair is equal, None with fewer than two pairs."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    if len(d) < 2:
        return None
    if not any(d):
        return 1.0
    return float(stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=2 ** len(d))).pvalue)


def sign_flip_p(differences: list[int]) -> float:
    """Exact two-sided paired permutation p: the share of the 2^n sign patterns of `differences` (integers: counts of
    correct digits) whose sum is at least as far from zero as the observed one."""
    signs = np.array(list(itertools.product((1, -1), repeat=len(differences))), dtype=np.int64)  # [2^n, n]
    hits = (np.abs(signs @ np.array(differences, dtype=np.int64)) >= abs(sum(differences))).sum()
    return int(hits) / 2 ** len(differences)


def seeds_for_power(sd: float, effect: float = MARGIN, power: float = 0.8) -> int | None:
    """Seeds a two-sided paired t-test at ALPHA needs to detect a true difference of `effect` points with `power`,
    when the paired differences have standard deviation `sd`; None where sd is 0 (any difference is then exact)."""
    if sd == 0:
        return None

    def reaches(n: int) -> bool:
        critical = stats.t.ppf(1 - ALPHA / 2, n - 1)
        return 1 - stats.nct.cdf(critical, n - 1, effect / (sd / math.sqrt(n))) >= power

    low, high = 2, 9_999  # power grows with n: the first n that reaches it, by bisection
    if not reaches(high):
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle + 1, high)
    return low


def compare(a: list[float], b: list[float], margin: float = MARGIN) -> dict:
    """Paired comparison of a and b over seeds: the mean difference a - b with its 95% confidence interval, the
    paired t-test's p, the equivalence test's p (TOST: two one-sided t-tests that the difference lies within
    +-margin), the standard deviation of the differences and the seeds needed for 80% power at `margin`."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    n, mean = len(d), statistics.mean(d)
    sd = statistics.stdev(d) if n > 1 else 0.0
    out = dict(n=n, difference=mean, sd=sd, ci=None, p=paired_t(a, b), p_equivalence=None,
               seeds_for_power=seeds_for_power(sd, margin) if n > 1 else None)
    if n > 1 and sd > 0:
        se = sd / math.sqrt(n)
        half = stats.t.ppf(1 - ALPHA / 2, n - 1) * se
        out["ci"] = [mean - half, mean + half]
        out["p_equivalence"] = float(max(stats.t.sf((mean + margin) / se, n - 1), stats.t.cdf((mean - margin) / se, n - 1)))
    elif n > 1:
        out["ci"] = [mean, mean]
        out["p_equivalence"] = 0.0 if abs(mean) < margin else 1.0
    return out


def trend(x: list[float], acc: list[list[float]]) -> dict:
    """A trend over seeds (PROTOCOL.md D): per seed, the least-squares slope of accuracy (points) on x, given
    `acc[seed][i]` at `x[i]`; then the mean slope with its 95% interval and a one-sample t-test of the slopes against 0
    (p uncorrected: the trends form their own family)."""
    slopes = [float(stats.linregress(x, a).slope) for a in acc]
    mean, sd = mean_std(slopes)
    half = stats.t.ppf(1 - ALPHA / 2, len(slopes) - 1) * sd / math.sqrt(len(slopes)) if len(slopes) > 1 else 0.0
    p = float(stats.ttest_1samp(slopes, 0.0).pvalue) if len(slopes) > 1 and sd > 0 else None
    return dict(x=x, slopes=slopes, slope=mean, ci=[mean - half, mean + half], p=p)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a table's p-values (None stays None): each adjusted p is compared with ALPHA."""
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted, running = list(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_fields(comparisons: list[dict], fields: tuple[str, ...]) -> None:
    """Holm-adjust each of `fields` over a family's comparisons, each field on its own, into FIELD_holm."""
    for field in fields:
        for comparison, adjusted in zip(comparisons, holm([comparison[field] for comparison in comparisons])):
            comparison[f"{field}_holm"] = adjusted


def verdicts(comparisons: list[dict], margin: float = MARGIN) -> None:
    """Holm-adjust a table's paired-test and equivalence p-values (each family on its own) and say, per row,
    "differs" (adjusted p < ALPHA), "equivalent within +-margin" (adjusted equivalence p < ALPHA) or "inconclusive"."""
    holm_fields(comparisons, ("p", "p_equivalence"))
    for comparison in comparisons:
        comparison["verdict"] = ("differs" if comparison["p_holm"] is not None and comparison["p_holm"] < ALPHA else
                                 f"equivalent within +-{margin:.2f}" if comparison["p_equivalence_holm"] is not None
                                 and comparison["p_equivalence_holm"] < ALPHA else "inconclusive")


def compare_rows(rows: list[dict], reference: dict, field: str) -> None:
    """Compare every row's "test_acc" (per seed) with the reference row's, store it in each other row under `field`,
    and give the table its Holm-adjusted verdicts."""
    others = [row for row in rows if row is not reference]
    for row in others:
        row[field] = compare(row["test_acc"], reference["test_acc"])
    verdicts([row[field] for row in others])


def compare_ways(acc: dict[str, list[float]]) -> dict:
    """One row of an evaluation table: `acc` ({way: accuracy per seed}, the first way the reference), each way's mean,
    and each other way compared with the first over seeds (call `verdicts` on the whole table's comparisons)."""
    reference = next(iter(acc))
    return dict(acc=acc, mean={w: mean_std(a)[0] for w, a in acc.items()},
                against={w: compare(a, acc[reference]) for w, a in acc.items() if w != reference})


def without_bootstrap(verdict: str) -> str:
    """A family's verdict where the digit-level bootstrap cannot be drawn (times to a target, test-time ways whose
    predictions are not kept): PROTOCOL.md's "equivalent" needs it as well as the TOST, so an equivalence does not
    stand."""
    return "inconclusive (bootstrap)" if verdict.startswith("equivalent") else verdict


def bootstrap(counts: list[tuple[int, int]], digits: int = TEST_DIGITS, resamples: int = RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> list[float]:
    """The 90% percentile interval (points) of the mean over seeds of A's accuracy minus B's, resampling seeds and,
    within each drawn seed, its `digits` test digits; `counts` holds per seed (digits only A gets right, digits only
    B gets right). A resample of the digits draws how many of its `digits` draws land on A's and on B's discordant
    digits: the multinomial, as a binomial and a conditional binomial, fresh each time a seed is drawn."""
    rng = np.random.default_rng(seed)
    p_a, p_b = (np.array([c[i] / digits for c in counts]) for i in (0, 1))
    drawn = rng.integers(0, len(counts), size=(resamples, len(counts)))  # the seeds of each resample
    only_a = rng.binomial(digits, p_a[drawn])
    rest = np.where(p_a[drawn] < 1, p_b[drawn] / np.maximum(1 - p_a[drawn], 1e-12), 0.0)
    only_b = rng.binomial(digits - only_a, np.clip(rest, 0.0, 1.0))
    low, high = np.percentile((100 * (only_a - only_b) / digits).mean(axis=1), [5, 95])
    return [float(low), float(high)]
