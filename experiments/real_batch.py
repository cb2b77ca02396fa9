"""Real small batches (PROTOCOL2.md 2): BN, LN and GN trained with an optimiser batch of B images, every norm over
the whole batch (no ghost batch), at B = 8 and 32, seeds 1-10; B = 128 is the main comparison's runs. With B, the
peak rate scales linearly (0.02 x B / 128) and the weights' moving average decays per step by 0.998^(B / 128), so
that it spans the same number of images; weight decay, epochs and augmentation stay (PROTOCOL2.md says why). The
family "batch": at each small B, BN against LN and against GN.
"""

from statistics import mean

import matplotlib.pyplot as plt

import store
import training
from experiments import feasibility, primary

NAME = "real_batch"
SHOWS = "BN, LN and GN trained with real batches of 8 and 32 images (rate scaled with the batch), ten seeds"
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}
BATCHES = feasibility.SMALL_BATCHES + (128,)
NORMS = {"BN": "B", "LN": "L", "GN": "G"}


def scaled(settings: dict, batch: int) -> dict:
    """The recipe's settings that scale with the batch, as run_spec overrides."""
    ratio = batch / settings["BATCH_SIZE"]
    return dict(batch_size=batch, max_lr=settings["MAX_LR"] * ratio, ema_decay=settings["EMA_DECAY"] ** ratio)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """Batch by batch (the larger, cheaper ones first), seed by seed."""
    return [dict(variant=v, batch=b, seed=s, spec=training.run_spec(settings, norm, s, **scaled(settings, b)))
            for b in sorted(BATCHES, reverse=True) for s in seeds for v, norm in NORMS.items()]


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    acc = {b: {v: [r["record"]["history"][-1]["test_acc"] for r in sorted(trained, key=lambda r: r["seed"])
                   if (r["batch"], r["variant"]) == (b, v)] for v in NORMS} for b in BATCHES}
    tests = [primary.comparison(f"BN - {v} at batch {b}", acc[b]["BN"], acc[b][v])
             for b in feasibility.SMALL_BATCHES for v in ("LN", "GN")]
    secondary = ([primary.comparison(f"LN - GN at batch {b}", acc[b]["LN"], acc[b]["GN"]) for b in BATCHES]
                 + [primary.comparison(f"{v} at batch {b} - at 128", acc[b][v], acc[128][v])
                    for b in feasibility.SMALL_BATCHES for v in NORMS])
    return dict(acc={str(b): a for b, a in acc.items()}, primary=primary.decide("batch", tests), secondary=secondary)


def figure(results: dict) -> plt.Figure:
    """Test error of each norm against the batch (log scales): each seed a dot, the mean a line."""
    acc = results["summary"]["acc"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, v in enumerate(NORMS):
        batches = sorted(int(b) for b in acc)
        for b in batches:
            ax.scatter([b] * len(acc[str(b)][v]), [100 - a for a in acc[str(b)][v]], color=f"C{i}", s=8, alpha=0.5)
        ax.plot(batches, [100 - sum(acc[str(b)][v]) / len(acc[str(b)][v]) for b in batches], marker="o", color=f"C{i}",
                label=v)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="optimiser batch = normalisation batch (images)", ylabel="test error (%)",
           title="real batches, peak rate 0.02 x B / 128")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def tables(results: dict) -> list[str]:
    summary = results["summary"]
    return [primary.variants_table({f"{v} at batch {b}": a for b, by in summary["acc"].items() for v, a in by.items()},
                                   "norm and batch"),
            primary.primary_table("batch", summary["primary"]), primary.secondary_table(summary["secondary"])]


def at_batch(summary: dict, batch: int) -> list[dict]:
    """The primary tests at `batch`, labelled by their variants alone ("BN - LN")."""
    return [dict(c, comparison=c["comparison"].removesuffix(f" at batch {batch}")) for c in summary["primary"]
            if c["comparison"].endswith(f" at batch {batch}")]


def verdicts(summary: dict) -> str:
    """The family's verdicts in words, batch by batch."""
    return "; ".join(f"at {b}, {primary.verdicts_in_words(at_batch(summary, b))}" for b in feasibility.SMALL_BATCHES)


def headline(results: dict) -> str:
    summary = results["summary"]
    acc = summary["acc"]
    return ("**Real small batches.** Trained with optimiser batches of " + " and ".join(map(str, feasibility.SMALL_BATCHES))
            + f" images (the peak rate scaled with the batch), {len(acc[str(feasibility.SMALL_BATCHES[0])]['BN'])} seeds: "
            + verdicts(summary)
            + ". Mean (worst seed): " + "; ".join(
                f"at {b}, " + ", ".join(f"{v} {mean(acc[str(b)][v]):.2f}% ({min(acc[str(b)][v]):.2f}%)" for v in NORMS)
                for b in feasibility.SMALL_BATCHES) + ".")


def pick(results: dict) -> dict:
    summary = results["summary"]
    return dict(situation="Real small batches (the optimiser's batch of "
                          + " or ".join(map(str, feasibility.SMALL_BATCHES)) + " images)",
                pick="; ".join(f"at {b}: {primary.pick_words(at_batch(summary, b))}" for b in feasibility.SMALL_BATCHES),
                why=verdicts(summary), norms="BLG")
