"""Real small batches (PROTOCOL2.md 2): BN, LN and GN trained with an optimiser batch of B images, every norm over
the whole batch (no ghost batch), at B = 8 and 32, seeds 1-10; B = 128 is the main comparison's runs. With B, the
peak rate scales linearly (0.02 x B / 128) and the weights' moving average decays per step by 0.998^(B / 128), so
that it spans the same number of images; weight decay, epochs and augmentation stay (PROTOCOL2.md says why). The
family "batch": at each small B, BN against LN and against GN. Beside them, as PROTOCOL2.md declares (secondary):
Protocol 1's BN on ghost batches of B within batches of 128 (norm_batch's stored runs, the same seeds), so that real
and ghost batches of one size read side by side.
"""

from statistics import mean

import matplotlib.pyplot as plt

import store
import training
from experiments import feasibility, norm_batch, primary

NAME = "real_batch"
SHOWS = "BN, LN and GN trained with real batches of 8 and 32 images (rate scaled with the batch), ten seeds"
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}
BATCHES = feasibility.SMALL_BATCHES + (128,)
NORMS = {"BN": "B", "LN": "L", "GN": "G"}
GHOST = "BN ghost"  # BatchNorm over groups of B images within an optimiser batch of 128 (norm_batch's runs)


def scaled(settings: dict, batch: int) -> dict:
    """The recipe's settings that scale with the batch, as run_spec overrides."""
    ratio = batch / settings["BATCH_SIZE"]
    return dict(batch_size=batch, max_lr=settings["MAX_LR"] * ratio, ema_decay=settings["EMA_DECAY"] ** ratio)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """Batch by batch (the larger, cheaper ones first), seed by seed; then the ghost batches of the same sizes, those
    below the batch (all, at the full settings; --quick's batch of 32 has no ghost batch of 32)."""
    return ([dict(variant=v, batch=b, seed=s, spec=training.run_spec(settings, norm, s, **scaled(settings, b)))
             for b in sorted(BATCHES, reverse=True) for s in seeds for v, norm in NORMS.items()]
            + [dict(variant=GHOST, batch=r["k"], seed=r["seed"], spec=r["spec"]) for r in norm_batch.runs(settings, seeds)
               if r["norm"] == "B" and r["k"] in feasibility.SMALL_BATCHES and r["spec"]["norm_batch"]])


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    """Test accuracy per batch and variant (real batches, and BN's ghost batches at the small sizes), the primary
    tests and the secondary comparisons."""
    by_seed = sorted(trained, key=lambda r: r["seed"])
    got = lambda b, v: [r["record"]["history"][-1]["test_acc"] for r in by_seed if (r["batch"], r["variant"]) == (b, v)]
    acc = {b: {v: got(b, v) for v in NORMS} for b in BATCHES}
    ghost = {b: got(b, GHOST) for b in sorted({r["batch"] for r in trained if r["variant"] == GHOST})}
    within = settings["BATCH_SIZE"]  # the ghost batches' optimiser batch: 128 (--quick's 32)
    tests = [primary.comparison(f"BN - {v} at batch {b}", acc[b]["BN"], acc[b][v])
             for b in feasibility.SMALL_BATCHES for v in ("LN", "GN")]
    secondary = ([primary.comparison(f"LN - GN at batch {b}", acc[b]["LN"], acc[b]["GN"]) for b in BATCHES]
                 + [primary.comparison(f"{v} at batch {b} - at 128", acc[b][v], acc[128][v])
                    for b in feasibility.SMALL_BATCHES for v in NORMS]
                 + [primary.comparison(f"BN at batch {b} - {ghost_label(b, within)}", acc[b]["BN"], ghost[b])
                    for b in ghost])
    return dict(acc={str(b): a for b, a in acc.items()}, ghost={str(b): a for b, a in ghost.items()}, within=within,
                primary=primary.decide("batch", tests), secondary=secondary)


def ghost_label(batch: int, within: int) -> str:
    return f"BN on ghost batches of {batch} within {within}"


def figure(results: dict) -> plt.Figure:
    """Test error of each norm against the batch (log scales): each seed a dot, the mean a line; BN on ghost batches
    of the same sizes within 128 (Protocol 1) dashed, meeting BN at 128, where the ghost batch is the whole batch."""
    acc, ghost, within = (results["summary"][k] for k in ("acc", "ghost", "within"))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, v in enumerate(NORMS):
        batches = sorted(int(b) for b in acc)
        for b in batches:
            ax.scatter([b] * len(acc[str(b)][v]), [100 - a for a in acc[str(b)][v]], color=f"C{i}", s=8, alpha=0.5)
        ax.plot(batches, [100 - mean(acc[str(b)][v]) for b in batches], marker="o", color=f"C{i}", label=f"{v}, real batch")
    ghosts = sorted(int(b) for b in ghost)
    ax.plot(ghosts + [within], [100 - mean(ghost[str(b)]) for b in ghosts] + [100 - mean(acc[str(within)]["BN"])],
            marker="s", linestyle="--", color="C0", label=f"BN, ghost batch within {within} (Protocol 1)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(BATCHES), [str(b) for b in sorted(BATCHES)])
    ax.set_yscale("log")
    ax.set(xlabel="normalisation batch (images): the optimiser's too, but for the ghost batches", ylabel="test error (%)",
           title="real batches, peak rate 0.02 x B / 128")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def tables(results: dict) -> list[str]:
    summary = results["summary"]
    return [primary.variants_table({f"{v} at batch {b}": a for b, by in summary["acc"].items() for v, a in by.items()}
                                   | {ghost_label(int(b), summary["within"]): a for b, a in summary["ghost"].items()},
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
                for b in feasibility.SMALL_BATCHES)
            + ". Exploratory, beside them: BN normalising over ghost batches of the same sizes within optimiser batches "
            f"of {summary['within']} (Protocol 1), "
            + ", ".join(f"at {b}, {mean(a):.2f}% ({min(a):.2f}%)" for b, a in summary["ghost"].items()) + ".")


def pick(results: dict) -> dict:
    summary = results["summary"]
    return dict(situation="Real small batches (the optimiser's batch of "
                          + " or ".join(map(str, feasibility.SMALL_BATCHES)) + " images)",
                pick="; ".join(f"at {b}: {primary.pick_words(at_batch(summary, b))}" for b in feasibility.SMALL_BATCHES),
                why=verdicts(summary), norms="BLG")
