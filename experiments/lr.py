"""Each norm's own peak learning rate, on validation: the main comparison's four variants at each peak rate of the
OneCycle schedule, trained on the first 50,000 training digits and scored on the last 10,000 (never the test set).

All variants share the notebook's MAX_LR, which was tuned with BatchNorm in the loop; if another norm's best rate
differed, the shared-rate comparison would understate it. Each variant's best rate is compared with the shared one
over seeds (a paired t-test, Holm within the table; a difference only, never equivalence: PROTOCOL.md A). Runs at the shared rate are the l1 experiment's, read from the store.
Each variant also runs the rates past the end of RATES at which its best lay, until it lies inside (BEYOND).
"""

import matplotlib.pyplot as plt

import records
import store
import training
from experiments import main, runner, stats, study

NAME = "lr"
SHOWS = "each variant's peak learning rate, on the validation split"  # its line in python -m experiments --help
SEEDS = tuple(range(1, 6))  # PROTOCOL.md A
OVERRIDES: dict = {}
RATES = (0.01, 0.02, 0.04)  # peak rates every variant runs
# rates past the end of RATES where each variant's best lay (at seeds 1-2: BN's at 0.01, LN's and GN's at 0.04, LN's
# again at 0.08; at seeds 1-5, PROTOCOL.md A's edge rule: BN's at 0.04)
BEYOND = {"BN": (0.005, 0.08), "BN+L1": (0.005,), "LN": (0.08, 0.16), "GN": (0.08,)}


def rates(variant: str) -> list[float]:
    return sorted(RATES + BEYOND[variant])


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    variants = main.variants(settings)
    return [dict(variant=v, max_lr=rate, seed=s, spec=training.run_spec(settings, seed=s, split="validation", max_lr=rate,
                                                                        **variants[v]))
            for s in seeds for v in variants for rate in rates(v)]


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    shared = settings["MAX_LR"]
    variants = {}
    for variant in dict.fromkeys(r["variant"] for r in trained):
        by_rate = {}
        for rate in rates(variant):
            chosen = sorted((r for r in trained if (r["variant"], r["max_lr"]) == (variant, rate)), key=lambda r: r["seed"])
            acc = [r["record"]["history"][-1]["test_acc"] for r in chosen]
            by_rate[str(rate)] = dict(validation_acc=acc, mean=stats.mean_std(acc)[0])
        best = max(rates(variant), key=lambda rate: by_rate[str(rate)]["mean"])
        # where the shared rate is the best, there is nothing to compare (a comparison with itself would only
        # dilute the table's Holm adjustment)
        variants[variant] = dict(rates=by_rate, best=best, best_vs_shared=None if best == shared else stats.compare(
            by_rate[str(best)]["validation_acc"], by_rate[str(shared)]["validation_acc"]))
    tested = [x["best_vs_shared"] for x in variants.values() if x["best_vs_shared"] is not None]
    stats.verdicts(tested)
    for comparison in tested:  # PROTOCOL.md A: the own rate is a choice made on validation; a difference is tested, never equivalence
        comparison["verdict"] = "differs" if comparison["verdict"] == "differs" else "inconclusive"
    return dict(variants=variants, shared=shared, rates=sorted({rate for variant in variants for rate in rates(variant)}),
                seeds=sorted({r["seed"] for r in trained}), margin=stats.MARGIN)


def figure(results: dict) -> plt.Figure:
    summary = results["summary"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (variant, result) in enumerate(summary["variants"].items()):
        own = [float(rate) for rate in result["rates"]]
        ax.plot(own, [100 - result["rates"][str(rate)]["mean"] for rate in own], marker="o", color=f"C{i}", label=variant)
        for rate in own:
            ax.scatter([rate] * len(result["rates"][str(rate)]["validation_acc"]),
                       [100 - a for a in result["rates"][str(rate)]["validation_acc"]], color=f"C{i}", s=8, alpha=0.5)
    ax.axvline(summary["shared"], color="grey", linestyle="--", label=f"the notebook's MAX_LR ({summary['shared']:g})")
    ax.set_xscale("log")
    ax.minorticks_off()  # only the rates run are labelled
    ax.set_xticks(summary["rates"], [f"{rate:g}" for rate in summary["rates"]])
    ax.set(xlabel="peak learning rate (OneCycle)", ylabel="validation error (%)",
           title="Each norm's learning rate on validation: mean (line) and seeds (dots)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def tables(results: dict) -> list[str]:
    summary = results["summary"]
    body = []
    for variant, result in summary["variants"].items():
        comparison = result["best_vs_shared"]
        body.append([variant] + [f"{result['rates'][str(r)]['mean']:.2f}" if str(r) in result["rates"] else "-" for r in summary["rates"]]
                    + [f"{result['best']:g}"]
                    + (["-", "-", "the shared rate is its best"] if comparison is None else
                       [runner.interval(comparison), runner.p_value(comparison["p_holm"]), comparison["verdict"]]))
    return [records.markdown_table(["variant"] + [f"validation acc at {r:g} (%)" for r in summary["rates"]]
                                 + ["best rate", f"best - shared {summary['shared']:g} (points) [95% interval]",
                                    "paired t p (Holm)", "verdict"], body)]


def pick(results: dict, found: list[dict]) -> dict | None:
    """The row on each norm's learning rate: whether any variant does better at its best rate than at the shared one
    (README's pick table; experiments/interface.py, Words)."""
    if "lr" not in results:
        return None
    summary = results["lr"]["summary"]
    better = [v for v in summary["variants"] if summary["variants"][v]["best_vs_shared"]
              and study.verdict(found, "lr", f"{v}: best rate - shared") == "differs"]
    return dict(situation="Each norm's learning rate",
                pick=f"no norm is shown to need another rate than {summary['shared']:g}" if not better else "each its own",
                why="best on validation: " + ", ".join(f"{v} {y['best']:g}" for v, y in summary["variants"].items())
                    + f"; none is shown better than {summary['shared']:g} (a test of a difference only: nothing shows the "
                      "rates equivalent)" if not better else f"{', '.join(better)} do better at their own rates",
                evidence=[NAME], norms="")
