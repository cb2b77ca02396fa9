"""The main comparison: BatchNorm, BatchNorm + L1 (the exercise's), LayerNorm and GroupNorm, ten seeds each, the
notebook's recipe and its 20 epochs, trained on the 60,000 training digits and tested on the 10,000 test digits.

Every pair is compared over seeds (paired by seed: the same initial draw, batches and augmentation): the mean
difference with its 95% interval, a paired t-test and an equivalence test at +-stats.MARGIN, Holm-adjusted within
the table. McNemar's test per seed is a check on one pair of models, never pooled. Two more views: the digits two
models disagree on, against the same count for two seeds of one norm (the seed-to-seed baseline), and the first
epoch at which each model reaches 99.0% and 99.4%, compared in pairs over seeds like the accuracies.
"""

import statistics
from itertools import combinations

import matplotlib.pyplot as plt

import records
import store
import training
from experiments import runner, stats
from model import Net, count_parameters

NAME = "main"
SHOWS = "BN, BN + L1, LN and GN at the shared recipe, ten seeds: paired, equivalence and Holm-adjusted tests"  # its line in python -m experiments --help
SEEDS = tuple(range(1, 11))
OVERRIDES: dict = {}  # the notebook's settings
TARGETS = (99.0, 99.4)  # test accuracy (%) for time to target


def variants(settings: dict) -> dict[str, dict]:
    """The four variants as run_spec arguments; L1's lambda is the notebook's, chosen on validation (experiment l1)."""
    return {"BN": dict(norm="B"), "BN+L1": dict(norm="B", l1_lambda=settings["L1_LAMBDA"]),
            "LN": dict(norm="L"), "GN": dict(norm="G")}


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    """Seed by seed, so that a stopped run leaves whole seeds; BN + L1 last (its lambda comes from validation)."""
    chosen = variants(settings)
    order = [(v, s) for s in seeds for v in ("BN", "LN", "GN")] + [("BN+L1", s) for s in seeds]
    return [dict(variant=v, seed=s, spec=training.run_spec(settings, seed=s, **chosen[v])) for v, s in order]


def time_to(history: list[dict], target: float) -> int | None:
    """The first epoch whose test accuracy reaches `target`; None if none does."""
    return next((r["epoch"] for r in history if r["test_acc"] >= target), None)


def disagreements(a: str, b: str, labels: str) -> int:
    """Test digits that exactly one of two models gets right."""
    return sum((pa == y) != (pb == y) for pa, pb, y in zip(a, b, labels, strict=True))


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    labels = runner.test_labels(settings)
    names = list(dict.fromkeys(r["variant"] for r in trained))
    by = {variant: sorted((r for r in trained if r["variant"] == variant), key=lambda r: r["seed"]) for variant in names}
    seeds = [r["seed"] for r in by[names[0]]]
    per_variant = {}
    for variant, chosen in by.items():
        histories = [r["record"]["history"] for r in chosen]
        acc = [h[-1]["test_acc"] for h in histories]
        mean, std = stats.mean_std(acc)
        curves = {key: [stats.mean_std([h[e][key] for h in histories]) for e in range(len(histories[0]))]
                  for key in ("test_acc", "test_loss")}
        per_variant[variant] = dict(seeds=[r["seed"] for r in chosen], test_acc=acc, mean=mean, std=std,
                              test_loss=[h[-1]["test_loss"] for h in histories],
                              standard_error=stats.standard_error(mean, len(labels)),
                              curves={k: [list(m_s) for m_s in comparison] for k, comparison in curves.items()},
                              epochs_to={str(target): [time_to(h, target) for h in histories] for target in TARGETS})
    pairs = []
    for a, b in combinations(names, 2):
        comparison = stats.compare(per_variant[a]["test_acc"], per_variant[b]["test_acc"])
        comparison.update(a=a, b=b, mcnemar=[stats.mcnemar(ra["record"]["predictions"], rb["record"]["predictions"], labels)
                                    for ra, rb in zip(by[a], by[b])])
        comparison["disagree"] = statistics.mean(disagreements(ra["record"]["predictions"], rb["record"]["predictions"], labels)
                                        for ra, rb in zip(by[a], by[b]))
        pairs.append(comparison)
    stats.verdicts(pairs)
    # the seed-to-seed baseline: two seeds (s, s+1) of one variant
    baseline = {variant: statistics.mean(disagreements(x["record"]["predictions"], y["record"]["predictions"], labels)
                                   for x, y in zip(chosen, chosen[1:])) if len(chosen) > 1 else None
                for variant, chosen in by.items()}
    targets = []
    for target in TARGETS:
        for a, b in combinations(names, 2):
            ea, eb = per_variant[a]["epochs_to"][str(target)], per_variant[b]["epochs_to"][str(target)]
            if all(e is not None for e in ea + eb):
                targets.append({**stats.compare(ea, eb, margin=1.0), "a": a, "b": b, "target": target})
    stats.verdicts(targets, margin=1.0)
    return dict(seeds=seeds, variants=per_variant, pairs=pairs, baseline=baseline, targets=targets,
                margin=stats.MARGIN)


def figure(results: dict) -> plt.Figure:
    """Left and middle: test error and loss per epoch, the seeds' mean and +-1 std; right: each pair's paired
    difference per seed (dots) with its mean and 95% interval."""
    summary = results["summary"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for variant, row in summary["variants"].items():
        for ax, key, to_error in ((axes[0], "test_acc", True), (axes[1], "test_loss", False)):
            mean = [100 - m if to_error else m for m, _ in row["curves"][key]]
            std = [sd for _, sd in row["curves"][key]]
            epochs = range(1, len(mean) + 1)
            ax.plot(epochs, mean, marker="o", markersize=3, label=variant)
            ax.fill_between(epochs, [m - e for m, e in zip(mean, std)], [m + e for m, e in zip(mean, std)], alpha=0.2)
    seeds = len(summary["seeds"])
    for ax, label in ((axes[0], "test error (%), log scale"), (axes[1], "test loss, log scale")):
        ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=label, title=f"mean and std over {seeds} seeds")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax = axes[2]
    for y, pair in enumerate(summary["pairs"]):
        a, b = summary["variants"][pair["a"]]["test_acc"], summary["variants"][pair["b"]]["test_acc"]
        ax.scatter([x - z for x, z in zip(a, b)], [y] * len(a), color="grey", s=10, zorder=3)
        low, high = pair["ci"] or (pair["difference"], pair["difference"])
        ax.errorbar([pair["difference"]], [y], xerr=[[pair["difference"] - low], [high - pair["difference"]]], marker="o",
                    capsize=4, color="tab:blue")
    ax.axvline(0, color="black", linewidth=0.8)
    for edge in (-summary["margin"], summary["margin"]):
        ax.axvline(edge, color="tab:red", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(summary["pairs"])), [f"{pair['a']} - {pair['b']}" for pair in summary["pairs"]])
    ax.set(xlabel=f"paired difference in final test accuracy (points); dashed: +-{summary['margin']:.2f}",
           title="per seed (dots), mean and 95% interval")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def tables(results: dict) -> list[str]:
    """The accuracies per seed, the pairs with their tests, and time to target."""
    summary = results["summary"]
    variant = summary["variants"]
    names = list(variant)
    rows = [[f"seed {seed}"] + [f"{variant[n]['test_acc'][i]:.2f}" for n in names] for i, seed in enumerate(summary["seeds"])]
    rows.append(["mean +- std"] + [f"{variant[n]['mean']:.2f} +- {variant[n]['std']:.2f}" for n in names])
    rows.append(["standard error of one run"] + [f"{variant[n]['standard_error']:.2f}" for n in names])
    pairs = [[f"{p['a']} - {p['b']}", runner.interval(p), runner.p_value(p["p_holm"]), runner.p_value(p["p_equivalence_holm"]),
              p["verdict"], p["seeds_for_power"] or "-",
              f"{sum(t['p'] < stats.ALPHA for t in p['mcnemar'])} of {len(p['mcnemar'])}",
              f"{p['disagree']:.1f} (seed to seed: {summary['baseline'][p['a']]:.1f}, {summary['baseline'][p['b']]:.1f})"
              if summary["baseline"][p["a"]] is not None else f"{p['disagree']:.1f}"]
             for p in summary["pairs"]]
    times = [[f"{t['a']} - {t['b']}", f"{t['target']}%", runner.interval(t), runner.p_value(t["p_holm"]),
              stats.without_bootstrap(t["verdict"])] for t in summary["targets"]]
    return [
        records.markdown_table(["run"] + names, rows),
        records.markdown_table(["pair", "difference (points) [95% interval]", "paired t p (Holm)",
                              f"equivalence p, +-{summary['margin']:.2f} (Holm)", "verdict",
                              f"seeds for 80% power at +-{summary['margin']:.2f}", "seeds with McNemar p < 0.05",
                              "digits the two disagree on (same norm, next seed)"], pairs),
        records.markdown_table(["pair", "target", "difference in first epoch at target [95% interval]", "paired t p (Holm)",
                              "verdict (equivalence: +-1 epoch, and a bootstrap epochs cannot give)"], times),
    ]


# ---- Its words in README.md and STUDY.md (experiments/interface.py, Words) -------------------------------------------

GOAL = (99.55, 99.50)  # PROTOCOL.md B: the accuracy goal, a variant's mean over seeds and its lowest seed (%)


def accuracies(result: dict, variant: str) -> dict[int, float]:
    """A main-style experiment's test accuracy of one variant, by seed."""
    return {run["seed"]: run["test_acc"] for run in result["runs"] if run["variant"] == variant}


def goal_met(acc: dict[int, float]) -> str:
    """Whether accuracies by seed meet GOAL: "met" or "not met"."""
    met = statistics.mean(acc.values()) >= GOAL[0] and min(acc.values()) >= GOAL[1]
    return "met" if met else "not met"


def pairs_said(found: list[dict], family: str) -> str:
    """Which pairs of a main-style family are equivalent, differ or neither, study-wide, in words."""
    rows = [row for row in found if row["family"] == family]
    named = lambda kind: [row["comparison"].replace(" - ", " and ") for row in rows if row["study_verdict"].startswith(kind)]
    parts = [f"{', '.join(named(kind))} are shown {word}"
             for kind, word in (("equivalent", "equivalent"), ("differs", "to differ")) if named(kind)]
    rest = len(named("inconclusive"))
    return (", ".join(parts) or "no pair is shown equivalent or different") + (
        f", and the other {rest} pairs are inconclusive" if rest and parts else "")


def plain_words(results: dict, found: list[dict]) -> str:
    """The README's answer in plain words: how close the four variants are, at the shared rate and at their own, and
    which pairs the study-wide correction shows equivalent or different, with what "equivalent" means; the intervals
    and p-values are in STUDY.md."""
    if "main" not in results:
        return records.notebook_blocks(results["history"])["notebook_run"] + " The ten-seed comparison is not committed yet."
    summary = results["main"]["summary"]
    means = [x["mean"] for x in summary["variants"].values()]
    margin = f"{summary['margin']:.2f}"
    text = (f"With batches of {results['main']['settings']['BATCH_SIZE']} images, BatchNorm, LayerNorm and GroupNorm (and BatchNorm with L1) give this "
            f"{count_parameters(Net('B')):,}-parameter network mean test accuracies between {min(means):.2f}% and "
            f"{max(means):.2f}% over {len(summary['seeds'])} seeds at one shared learning rate")
    if "own_rate" in results:
        own = [x["mean"] for x in results["own_rate"]["summary"]["variants"].values()]
        text += f", and between {min(own):.2f}% and {max(own):.2f}% with each at its own rate (chosen on validation)"
    return text + (f". Under one correction over all the study's tests, at the shared rate, {pairs_said(found, 'main (pairs)')}"
                   + (f"; at their own rates, {pairs_said(found, 'own_rate (pairs)')}" if "own_rate" in results else "") + ". "
                   f"Equivalent within +-{margin} points means the 90% interval of the difference (paired by seed, counting "
                   f"the test digits' sampling too) lies inside +-{margin}: a difference may exist, but it is smaller than "
                   f"that; inconclusive means these seeds can show neither.")


def replication(results: dict) -> str:
    """The main comparison's seeds 1-5 (committed before the margin was set) and 6-10 (the replication) apart, and
    whether each variant meets the accuracy goal over all ten."""
    if "main" not in results:
        return "The main comparison is not committed yet."
    rows = []
    for variant in results["main"]["summary"]["variants"]:
        acc = accuracies(results["main"], variant)
        mean = lambda seeds: statistics.mean(acc[s] for s in seeds)
        rows.append([variant, f"{mean(range(1, 6)):.2f}", f"{mean(range(6, 11)):.2f}", f"{mean(acc):.2f}",
                     f"{min(acc.values()):.2f}", goal_met(acc)])
    return records.markdown_table(
        ["variant", "mean, seeds 1-5 (%)", "mean, seeds 6-10 (%)", "mean, seeds 1-10 (%)", "lowest seed (%)",
         f"goal: mean >= {GOAL[0]:.2f}, every seed >= {GOAL[1]:.2f}"], rows)


def blocks(results: dict, found: list[dict]) -> dict[str, str]:
    """The README's headline and STUDY.md's replication table."""
    return {"headline": plain_words(results, found), "main_replication": replication(results)}


def pick(results: dict, found: list[dict]) -> dict | None:
    """The first row: batches as here, where no pair of BN, LN and GN is shown to differ at either rate."""
    if "main" not in results:
        return None
    core = [row for row in found if row["family"] in ("main (pairs)", "own_rate (pairs)")
            and "+" not in row["comparison"]]  # BN, LN and GN against each other
    differ = [row for row in core if row["study_verdict"] == "differs"]
    def spread(name: str) -> float:
        means = [x["mean"] for v, x in results[name]["summary"]["variants"].items() if v in ("BN", "LN", "GN")]
        return max(means) - min(means)
    rates = [name for name in ("main", "own_rate") if name in results]
    equivalent = [f"{row['comparison'].replace(' - ', ' and ')} {'at the shared rate' if row['family'].startswith('main') else 'at their own rates'}"
                  for row in core if row["study_verdict"].startswith("equivalent")]
    return dict(situation=f"Batches of about {results['main']['settings']['BATCH_SIZE']} images, as here",
                pick="no norm is shown better than another" if not differ else "see the evidence",
                why="their mean accuracies differ by at most " + " and ".join(
                    f"{spread(name):.2f} points {'at the shared learning rate' if name == 'main' else 'at their own rates'}"
                    for name in rates) + "; no pair is shown to differ; shown equivalent within +-0.10: "
                + (", ".join(equivalent) or "none") + "; every other pair is inconclusive" if not differ else
                f"{len(differ)} pairs differ", evidence=rates, norms="BLG")
