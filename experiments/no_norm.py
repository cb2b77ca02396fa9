"""What normalising buys this network (PROTOCOL2.md 1): the same skeleton without normalisation, `Net(norm="N")`,
its convolutions with a bias. Its peak learning rate is chosen on validation (seeds 1-5, the first 50,000 training
digits, scored on the last 10,000; Protocol 1 A's edge rule, PROTOCOL2.md's tie rule), then it runs seeds 1-10 on the
test digits at that rate, against BN, LN and GN at their own rates (own_rate's stored runs): the family "none".
"""

from statistics import mean

import matplotlib.pyplot as plt

import records
import store
import training
from experiments import own_rate, primary, runner

NAME = "no_norm"
SHOWS = "no normalisation: its rate on validation, then ten seeds against BN, LN and GN at their own rates"
SEEDS = tuple(range(1, 11))
VALIDATION_SEEDS = tuple(range(1, 6))
OVERRIDES: dict = {}
GRID = (0.005, 0.01, 0.02, 0.04)  # PROTOCOL2.md 1; the edge rule may add rates past an end (BEYOND)
BEYOND: tuple = ()
# chosen on validation (seeds 1-5): 0.01 with 49,698 correct digits, 0.02 with 49,697, 0.005 49,640, 0.04 40,772 (its
# seed 4 fell to chance, 10.64%); inside the grid, so the edge rule adds nothing (a test holds RATE to the store)
RATE: float | None = 0.01
AGAINST = ("BN", "LN", "GN")  # primary: N against each, at their own rates; BN+L1 is secondary


def rates() -> list[float]:
    return sorted(GRID + BEYOND)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """The validation sweep (seeds 1-5 among `seeds`), then, once RATE is chosen, N's test runs at it and own_rate's
    runs it is compared with."""
    sweep = [dict(variant="N", split="validation", max_lr=rate, seed=s,
                  spec=training.run_spec(settings, "N", s, split="validation", max_lr=rate))
             for s in seeds if s in VALIDATION_SEEDS for rate in rates()]
    if RATE is None:
        return sweep
    test = [dict(variant="N", split="test", max_lr=RATE, seed=s, spec=training.run_spec(settings, "N", s, max_lr=RATE))
            for s in seeds]
    return sweep + test + [dict(r, split="test") for r in own_rate.runs(settings, seeds)]


def stored_sweep(runs_store: store.Store) -> dict[float, list[float]]:
    """The validation sweep's accuracies per rate, seed by seed, read from `runs_store` (it must hold every run)."""
    sweep = runs(runner.settings_for(False, **OVERRIDES), VALIDATION_SEEDS)
    return {rate: [runs_store.get(r["spec"])[0]["history"][-1]["test_acc"] for r in sweep
                   if r["split"] == "validation" and r["max_lr"] == rate] for rate in rates()}


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    acc = lambda rows: [r["record"]["history"][-1]["test_acc"] for r in sorted(rows, key=lambda r: r["seed"])]
    sweep = {rate: acc([r for r in trained if r["split"] == "validation" and r["max_lr"] == rate]) for rate in rates()}
    counts = {rate: primary.correct(a) for rate, a in sweep.items()}
    chosen = primary.choose_rate(counts)
    out = dict(validation={str(rate): dict(acc=a, correct=sum(counts[rate])) for rate, a in sweep.items()},
               chosen=chosen, at_edge=chosen in (rates()[0], rates()[-1]), rate=RATE)
    if RATE is None:
        return out
    test = {v: acc([r for r in trained if r["split"] == "test" and r["variant"] == v]) for v in ("N",) + AGAINST + ("BN+L1",)}
    out["test"] = test
    out["primary"] = primary.decide("none", [primary.comparison(f"N - {v}", test["N"], test[v]) for v in AGAINST])
    out["secondary"] = [primary.comparison("N - BN+L1", test["N"], test["BN+L1"])]
    return out


def figure(results: dict) -> plt.Figure:
    """Left: validation accuracy of N at each peak rate (each seed a dot); right: test error of every variant."""
    summary = results["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for rate, row in summary["validation"].items():
        axes[0].scatter([float(rate)] * len(row["acc"]), [100 - a for a in row["acc"]], color="grey", s=10)
        axes[0].scatter([float(rate)], [100 - mean(row["acc"])], color="tab:blue", s=30)
    rates = [float(rate) for rate in summary["validation"]]
    axes[0].set(xscale="log", yscale="log", xticks=rates, xticklabels=[f"{rate:g}" for rate in rates],
                xlabel="peak learning rate", ylabel="validation error (%), log scale",
                title="no normalisation: its rate (a seed at chance is at the top)")
    axes[0].minorticks_off()
    primary.variant_dots(axes[1], summary.get("test", {}))
    axes[1].set(ylabel="test error (%), log scale", title="each variant at its own rate, ten seeds")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def tables(results: dict) -> list[str]:
    """The validation sweep, the chosen rate marked (most correct digits, then the lower rate; at an end of the grid
    the edge rule runs the next rate past it), then the test runs and their comparisons."""
    summary = results["summary"]
    chosen = lambda rate: (" (chosen" + (", at an end of the grid: the edge rule runs the next rate" if summary["at_edge"]
                                         else "") + ")") if float(rate) == summary["chosen"] else ""
    sweep = records.markdown_table(
        ["peak rate", "seeds", "mean validation accuracy (%)", "lowest seed (%)",
         "correct digits over the seeds (the most chosen, then the lower rate)"],
        [[rate + chosen(rate), len(row["acc"]), f"{mean(row['acc']):.3f}", f"{min(row['acc']):.2f}", f"{row['correct']:,}"]
         for rate, row in summary["validation"].items()])
    if "primary" not in summary:
        return [sweep]
    return [sweep, primary.variants_table(summary["test"]), primary.primary_table("none", summary["primary"]),
            primary.secondary_table(summary["secondary"])]


def bought(c: dict) -> str:
    """A primary comparison "N - X" in words, as what normalising with X buys: "GN buys 0.10 points [0.05, 0.16]
    here (differs)", "BN +0.07 points [+0.02, +0.12] (inconclusive)"."""
    norm, gain, (low, high) = c["comparison"].split(" - ")[1], -c["difference"], sorted(-x for x in c["ci"])
    if c["verdict"] != "differs":
        return f"{norm} {gain:+.2f} points [{low:+.2f}, {high:+.2f}] ({c['verdict']})"
    return f"{norm} {'buys' if gain > 0 else 'costs'} {abs(gain):.2f} points [{low:+.2f}, {high:+.2f}] here (differs)"


def seen(summary: dict) -> str:
    """"Seen, not tested": the sweep's rates at which a seed without normalisation stayed at chance level."""
    chance = primary.at_chance({rate: row["acc"] for rate, row in summary["validation"].items()}, VALIDATION_SEEDS)
    return (f" Seen, not tested: without normalisation, the peak rate {' and '.join(chance)} fell to chance on "
            "validation." if chance else "")


def against_none(summary: dict) -> str:
    """The family's verdicts as what normalising buys, then what was seen at chance on validation."""
    return "Against none, " + "; ".join(bought(c) for c in summary["primary"]) + "." + seen(summary)


def headline(results: dict) -> str:
    """README's sentence: what normalising buys this network, in the family's verdicts."""
    summary = results["summary"]
    test = summary["test"]
    return (f"**What normalising buys.** Without normalisation the same network (peak rate {summary['rate']:g}, chosen "
            f"on validation) reaches {mean(test['N']):.2f}% over {len(test['N'])} seeds (worst seed {min(test['N']):.2f}%), "
            f"{', '.join(f'{v} {mean(test[v]):.2f}% ({min(test[v]):.2f}%)' for v in AGAINST)} at their own rates. "
            + against_none(summary))


def pick(results: dict) -> dict:
    summary = results["summary"]
    return dict(situation="Whether to normalise at all (batches of 128)", pick=primary.pick_words(summary["primary"]),
                why=against_none(summary),
                norms="NBLG")
