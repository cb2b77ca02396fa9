"""Off the ceiling (PROTOCOL2.md 4): the first 5,000 training digits, 20 epochs, the test digits; BN, BN + L1, LN, GN
and no normalisation, each at its own peak rate (own_rate's, and no_norm's once chosen), seeds 1-10: the family
"scarce"."""

from statistics import mean

import matplotlib.pyplot as plt

import store
import training
from experiments import main, no_norm, own_rate, primary

NAME = "scarce"
SHOWS = "5,000 training digits: BN, BN + L1, LN, GN and no normalisation at their own rates, ten seeds"
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}
TRAIN_DIGITS = 5_000
PRIMARY = (("BN", "N"), ("LN", "N"), ("GN", "N"), ("BN", "LN"), ("BN", "GN"))  # PROTOCOL2.md 4
SECONDARY = (("BN+L1", "BN"), ("BN+L1", "N"), ("LN", "GN"))


def digits(settings: dict) -> int:
    """The training digits: TRAIN_DIGITS, or fewer where the settings limit them (--quick's 2,048)."""
    return min(TRAIN_DIGITS, settings["TRAIN_LIMIT"] or TRAIN_DIGITS)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """Seed by seed; N once its rate is chosen (no_norm.RATE)."""
    chosen = {**main.variants(settings), "N": dict(norm="N")}
    rates = {**own_rate.RATES, "N": no_norm.RATE}
    return [dict(variant=v, seed=s, spec=training.run_spec(settings, seed=s, train_limit=digits(settings), max_lr=rates[v],
                                                           **chosen[v]))
            for s in seeds for v in chosen if rates[v] is not None]


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    test = {v: [r["record"]["history"][-1]["test_acc"] for r in sorted(trained, key=lambda r: r["seed"]) if r["variant"] == v]
            for v in dict.fromkeys(r["variant"] for r in trained)}
    pair = lambda a, b: primary.comparison(f"{a} - {b}", test[a], test[b])
    out = dict(test=test, train_digits=digits(settings))
    if "N" in test:
        out.update(primary=primary.decide("scarce", [pair(a, b) for a, b in PRIMARY]),
                   secondary=[pair(a, b) for a, b in SECONDARY])
    return out


def figure(results: dict) -> plt.Figure:
    test = results["summary"]["test"]
    fig, ax = plt.subplots(figsize=(7, 4))
    primary.variant_dots(ax, test)
    ax.set(ylabel="test error (%), log scale", title=f"{results['summary']['train_digits']:,} training digits, each variant at its own rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def tables(results: dict) -> list[str]:
    summary = results["summary"]
    out = [primary.variants_table(summary["test"])]
    if "primary" in summary:
        out += [primary.primary_table("scarce", summary["primary"]), primary.secondary_table(summary["secondary"])]
    return out


def stalled(results: dict) -> str:
    """"Seen, not tested": the variants with a seed that stayed at chance level, which the paired tests carry."""
    chance = primary.at_chance(results["summary"]["test"], SEEDS)
    return f" Seen, not tested: {' and '.join(chance)} stayed at chance level." if chance else ""


def headline(results: dict) -> str:
    summary = results["summary"]
    test = summary["test"]
    return (f"**Scarce data.** Trained on the first {summary['train_digits']:,} training digits, {len(test['BN'])} seeds, "
            f"each variant at the rate chosen for the full set: {primary.verdicts_in_words(summary['primary'])}. Mean "
            "(worst seed): " + ", ".join(f"{v} {mean(a):.2f}% ({min(a):.2f}%)" for v, a in test.items()) + "."
            + stalled(results))


def pick(results: dict) -> dict:
    summary = results["summary"]
    return dict(situation=f"Few training digits ({summary['train_digits']:,})", pick=primary.pick_words(summary["primary"]),
                why=primary.verdicts_in_words(summary["primary"]) + "." + stalled(results), norms="BLGN")
