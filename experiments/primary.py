"""PROTOCOL2.md's decision rules, in one place: each family's primary tests (declared in experiments/feasibility.py,
which this reads, so that what is tested is what was declared), Holm within the family at its alpha, one verdict per
comparison ("differs" or "inconclusive"); secondary comparisons get an interval and the word "exploratory", never a
verdict. The experiments of Protocol 2 (no_norm, scarce, real_batch, drift) build their tables with it.
"""

import records
import utils
from checks import NORM_NAMES
from experiments import feasibility, runner, stats


def declared(family: str) -> list[str]:
    """The primary comparisons PROTOCOL2.md declares for `family`, in order."""
    return [test["comparison"] for test in feasibility.PRIMARY if test["family"] == family]


def correct(acc: list[float], digits: int = stats.TEST_DIGITS) -> list[int]:
    """Accuracies (%) on `digits` held-out digits as counts of correct digits."""
    return [round(a * digits / 100) for a in acc]


def comparison(label: str, a: list[float], b: list[float], test: str = "paired t") -> dict:
    """a - b over seeds (paired): the mean difference (points), its 95% interval, the lowest seed's difference, and
    the declared test's p (a paired t-test, or the exact sign-flip test on counts of correct digits)."""
    found = stats.compare(a, b)
    p = found["p"] if test == "paired t" else stats.sign_flip_p([x - y for x, y in zip(correct(a), correct(b), strict=True)])
    return dict(comparison=label, test=test, n=found["n"], difference=found["difference"], ci=found["ci"], p=p,
                worst=min(x - y for x, y in zip(a, b)))


def decide(family: str, comparisons: list[dict]) -> list[dict]:
    """Holm over the family's primary comparisons at its alpha, in place; each gets p_holm and its verdict. The labels
    must be exactly those PROTOCOL2.md declares for the family (a ValueError otherwise)."""
    if [c["comparison"] for c in comparisons] != declared(family):
        raise ValueError(f"family {family!r}: the comparisons {[c['comparison'] for c in comparisons]} are not the "
                         f"declared ones {declared(family)}")
    for c, adjusted in zip(comparisons, stats.holm([c["p"] for c in comparisons])):
        c.update(p_holm=adjusted, alpha=feasibility.FAMILY_ALPHA,
                 verdict="differs" if adjusted is not None and adjusted < feasibility.FAMILY_ALPHA else "inconclusive")
    return comparisons


def variants_table(acc: dict[str, list[float]], label: str = "variant") -> str:
    """Each variant's mean test accuracy over seeds, its lowest seed and its spread."""
    return records.markdown_table([label, "seeds", "mean (%)", "lowest seed (%)", "sd"],
                                  [[name, len(a), f"{sum(a) / len(a):.2f}", f"{min(a):.2f}", f"{stats.mean_std(a)[1]:.2f}"]
                                   for name, a in acc.items()])


def variant_dots(ax, acc: dict[str, list[float]]) -> None:
    """On `ax`, each variant's test error per seed (grey dots) and its mean (a blue one), the variants along x, the
    error on a log scale."""
    for x, a in enumerate(acc.values()):
        ax.scatter([x] * len(a), [100 - v for v in a], color="grey", s=10)
        ax.scatter([x], [100 - sum(a) / len(a)], color="tab:blue", s=30)
    ax.set_xticks(range(len(acc)), list(acc))
    ax.set_yscale("log")  # a seed at chance and the rest, a tenth of a point apart, both read


def primary_table(family: str, comparisons: list[dict]) -> str:
    return records.markdown_table(
        ["primary comparison", "test", "seeds", "difference (points) [95% interval]", "lowest seed's difference",
         f"p (Holm) within {family}, alpha {feasibility.FAMILY_ALPHA:g}", "verdict"],
        [[c["comparison"], c["test"], c["n"], runner.interval(c), f"{c['worst']:+.2f}", runner.p_value(c["p_holm"]),
          c["verdict"]] for c in comparisons])


def secondary_table(comparisons: list[dict]) -> str:
    return records.markdown_table(
        ["secondary comparison (exploratory: no test, no verdict)", "seeds", "difference (points) [95% interval]",
         "lowest seed's difference"],
        [[c["comparison"], c["n"], runner.interval(c), f"{c['worst']:+.2f}"] for c in comparisons])


def ahead(c: dict) -> tuple[str, str]:
    """The variants of a comparison "A - B", the one its difference puts ahead first."""
    a, b = c["comparison"].split(" - ")[:2]
    return (a, b) if c["difference"] > 0 else (b, a)


def verdicts_in_words(comparisons: list[dict]) -> str:
    """A family's verdicts for the README: each difference shown, as "BN above N by 0.86 points [0.70, 1.03]
    (differs)", then the inconclusive ones with their differences."""
    shown, rest = [], []
    for c in comparisons:
        if c["verdict"] == "differs":
            first, second = ahead(c)
            low, high = sorted(x if c["difference"] > 0 else -x for x in c["ci"])
            shown.append(f"{first} above {second} by {abs(c['difference']):.2f} points [{low:.2f}, {high:.2f}] (differs)")
        else:
            rest.append(f"{c['comparison']} {c['difference']:+.2f}")
    return "; ".join(shown + ([f"inconclusive: {', '.join(rest)} points"] if rest else []))


def named(label: str) -> str:
    """A variant's label in words (checks.NORM_NAMES): "GN" is GroupNorm, "N" no normalisation, "BN+L1" BatchNorm + L1."""
    return NORM_NAMES[label[0]] + (" + L1" if label.endswith("+L1") else "")


def pick_words(comparisons: list[dict]) -> str:
    """The pick a family's verdicts allow: the variants shown above another and below none, and whom each is shown
    above, in words ("BatchNorm or LayerNorm: each shown above no normalisation"); "none is shown better" where
    nothing differs."""
    above: dict[str, list[str]] = {}
    for c in comparisons:
        if c["verdict"] == "differs":
            first, second = ahead(c)
            above.setdefault(first, []).append(second)
    top = [v for v in above if not any(v in behind for behind in above.values())]
    listed = lambda labels: ", ".join(map(named, labels))
    if not top:
        return "none is shown better"
    if all(above[v] == above[top[0]] for v in top):
        return f"{' or '.join(map(named, top))}: {'each ' if len(top) > 1 else ''}shown above {listed(above[top[0]])}"
    return "; ".join(f"{named(v)}: shown above {listed(above[v])}" for v in top)


def at_chance(acc: dict[str, list[float]], seeds: tuple[int, ...]) -> list[str]:
    """Each entry of `acc` (accuracies in `seeds`' order) with a seed that ended at chance level, in words:
    "0.04 (seed 4 at 10.64%)"."""
    return [f"{name} (" + ", ".join(f"seed {seed} at {a:.2f}%" for seed, a in zip(seeds, values, strict=True)
                                    if a <= utils.CHANCE_ACC) + ")"
            for name, values in acc.items() if min(values) <= utils.CHANCE_ACC]


def choose_rate(correct_by_rate: dict[float, list[int]]) -> float:
    """PROTOCOL2.md's tie rule: the rate with the most correct validation digits summed over its seeds; between
    equal sums, the lower rate."""
    return min(correct_by_rate, key=lambda rate: (-sum(correct_by_rate[rate]), rate))
