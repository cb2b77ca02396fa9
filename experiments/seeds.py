"""The study over five seeds: the notebook itself, run once per variant and seed (papermill), with paired tests.

Every pair of variants is compared on the same 10,000 test digits with an exact McNemar test per seed (the digits one
model gets right and the other wrong), and over seeds with a paired t-test of their final accuracies. Time to target
is the first epoch, and the training seconds, at which the tested model reaches 99.0% and 99.4%.
"""

from itertools import combinations

import matplotlib.pyplot as plt

import utils
from experiments import runner

NAME = "seeds"
SEEDS = (1, 2, 3, 4, 5)
OVERRIDES: dict = {}  # the notebook's settings: whole runs of the study
TARGETS = (99.0, 99.4)  # test accuracy (%) for time to target


def runs(settings: dict, seeds: tuple[int, ...], jobs: int) -> list[dict]:
    parameters = {k: v for k, v in settings.items() if k != "OUT_DIR"}
    jobs_list = [(f"{name}-seed{seed}", {**parameters, "SEED": seed, "VARIANTS": {name: norm}})
                 for seed in seeds for name, norm in settings["VARIANTS"].items()]
    histories = runner.run_notebooks(jobs_list, jobs, NAME)
    results = []
    for label, runs_ in histories.items():
        (name, run), = runs_.items()
        history = run["history"]
        results.append(dict(variant=name, norm=run["norm"], seed=run["settings"]["SEED"], test_acc=history[-1]["test_acc"],
                            test_loss=history[-1]["test_loss"], seconds=sum(r["seconds"] for r in history),
                            history=history, predictions=run["predictions"]))
    return results


def time_to(history: list[dict], target: float) -> tuple[int | None, float | None]:
    """The first epoch whose test accuracy reaches `target`, and the training seconds up to its end; None if never."""
    seconds = 0.0
    for r in history:
        seconds += r["seconds"]
        if r["test_acc"] >= target:
            return r["epoch"], seconds
    return None, None


def summarise(runs: list[dict], settings: dict) -> dict:
    labels = runner.test_labels(settings)
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    by = {v: sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"]) for v in variants}
    per_variant = {}
    for v, chosen in by.items():
        acc = [r["test_acc"] for r in chosen]
        mean, std = runner.mean_std(acc)
        targets = {}
        for target in TARGETS:
            reached = [time_to(r["history"], target) for r in chosen]
            hits = [t for t in reached if t[0] is not None]
            targets[str(target)] = dict(reached=len(hits), runs=len(reached),
                                        epoch=runner.mean_std([e for e, _ in hits])[0] if hits else None,
                                        seconds=runner.mean_std([s for _, s in hits])[0] if hits else None)
        per_variant[v] = dict(seeds=[r["seed"] for r in chosen], test_acc=acc, mean=mean, std=std,
                              standard_error=runner.standard_error(mean, len(labels)), targets=targets)
    pairs = []
    for a, b in combinations(variants, 2):
        tests = [runner.mcnemar(ra["predictions"], rb["predictions"], labels) for ra, rb in zip(by[a], by[b])]
        acc_a, acc_b = per_variant[a]["test_acc"], per_variant[b]["test_acc"]
        pairs.append(dict(a=a, b=b, difference=per_variant[a]["mean"] - per_variant[b]["mean"], mcnemar=tests,
                          significant=sum(t["p"] < 0.05 for t in tests), paired_t=runner.paired_t(acc_a, acc_b)))
    return dict(variants=per_variant, pairs=pairs, labels=labels)


def figure(results: dict) -> plt.Figure:
    variants = results["summary"]["variants"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for x, (v, s) in enumerate(variants.items()):
        ax.scatter([x] * len(s["test_acc"]), s["test_acc"], color="grey", s=14, zorder=3)
        ax.errorbar([x], [s["mean"]], [s["std"]], marker="o", capsize=4, color="tab:blue")
    ax.set_xticks(range(len(variants)), list(variants))
    ax.set(ylabel="final test accuracy (%)", title=f"{len(next(iter(variants.values()))['seeds'])} seeds per variant: "
           "each seed (dots), mean and std")
    ax.grid(alpha=0.3)
    return fig


def tables(results: dict) -> list[str]:
    """The seeds table, the paired tests and time to target."""
    variants = results["summary"]["variants"]
    names = list(variants)
    seeds = next(iter(variants.values()))["seeds"]
    rows = [[f"seed {seed}"] + [f"{variants[v]['test_acc'][i]:.2f}" for v in names] for i, seed in enumerate(seeds)]
    rows.append(["mean +- std"] + [f"{variants[v]['mean']:.2f} +- {variants[v]['std']:.2f}" for v in names])
    rows.append(["standard error of one run"] + [f"{variants[v]['standard_error']:.2f}" for v in names])
    pairs = [[f"{p['a']} - {p['b']}", f"{p['difference']:+.3f}",
              ", ".join(f"{t['only_a']}/{t['only_b']}" for t in p["mcnemar"]),
              ", ".join(runner.p_value(t["p"]) for t in p["mcnemar"]), f"{p['significant']} of {len(p['mcnemar'])}",
              runner.p_value(p["paired_t"])] for p in results["summary"]["pairs"]]
    def reach(t: dict) -> list[str]:
        if not t["reached"]:
            return [f"not reached (0 of {t['runs']})", "-"]
        note = "" if t["reached"] == t["runs"] else f" ({t['reached']} of {t['runs']} runs)"
        return [f"{t['epoch']:.1f}{note}", f"{t['seconds']:.0f}"]
    times = [[v] + [cell for target in TARGETS for cell in reach(variants[v]["targets"][str(target)])] for v in names]
    return [
        utils.markdown_table(["run"] + names, rows),
        utils.markdown_table(["pair", "mean difference (points)", "digits only the first / only the second gets right, per seed",
                              "McNemar p, per seed", "seeds with p < 0.05", "paired t-test p, over seeds"], pairs),
        utils.markdown_table(["model"] + [h for target in TARGETS for h in (f"first epoch at {target}%", f"seconds to {target}%")],
                             times),
    ]
