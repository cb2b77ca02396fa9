"""Experiment 2: GroupNorm's number of groups, from one (LayerNorm) to one per channel (InstanceNorm).

Every layer of `Net` has 8, 16, 32 or 48 channels, so 1, 2, 4 and 8 groups divide them all; "C" is one group per
channel (`Net(norm="I")`). With G groups a layer of C channels normalises each image over C/G channels x H x W.
"""

import matplotlib.pyplot as plt

import utils
from experiments import runner

NAME = "gn_groups"
GROUPS = (1, 2, 4, 8, "C")  # 1 is LayerNorm, "C" InstanceNorm
SEEDS = (1, 2, 3)
OVERRIDES = dict(EPOCHS=3)  # 3 of the notebook's 20 epochs: 15 runs in under 10 minutes on 2 cores


def runs(settings: dict, seeds: tuple[int, ...], jobs: int) -> list[dict]:
    specs = [dict(settings=settings, norm="I", group_count="C", seed=seed) if g == "C" else
             dict(settings=settings, norm="G", groups=g, group_count=g, seed=seed) for g in GROUPS for seed in seeds]
    return runner.run_all(specs, jobs, NAME)


def summarise(runs: list[dict], settings: dict) -> list[dict]:
    """One row per number of groups: accuracy over seeds, and a paired t-test (over seeds) against 2 groups, the
    notebook's GroupNorm."""
    by_groups = {g: sorted((r for r in runs if r["group_count"] == g), key=lambda r: r["seed"]) for g in GROUPS}
    reference = [r["test_acc"] for r in by_groups[2]]
    rows = []
    for g, chosen in by_groups.items():
        acc = [r["test_acc"] for r in chosen]
        mean, std = runner.mean_std(acc)
        rows.append(dict(groups=g, seeds=[r["seed"] for r in chosen], test_acc=acc, mean=mean, std=std,
                         test_loss=runner.mean_std([r["test_loss"] for r in chosen])[0],
                         p_vs_2_groups=runner.paired_t(acc, reference)))
    return rows


NAMES = {1: "1 (LayerNorm)", 2: "2 (the notebook's GN)", "C": "C (InstanceNorm)"}


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positions = range(len(rows))
    ax.errorbar(positions, [100 - r["mean"] for r in rows], [r["std"] for r in rows], marker="o", capsize=3)
    for x, r in zip(positions, rows):
        ax.scatter([x] * len(r["test_acc"]), [100 - a for a in r["test_acc"]], color="grey", s=10, zorder=3)
    ax.set_xticks(list(positions), [str(r["groups"]) for r in rows])
    ax.set(xlabel="groups per layer (C: one per channel)", ylabel="test error (%)",
           title=f"GroupNorm's groups: mean and std over {len(rows[0]['seeds'])} seeds (dots: each seed), "
                 f"{results['settings']['EPOCHS']} epochs")
    ax.grid(alpha=0.3)
    return fig


def tables(results: dict) -> list[str]:
    body = [[NAMES.get(r["groups"], r["groups"]), ", ".join(f"{a:.2f}" for a in r["test_acc"]),
             f"{r['mean']:.2f} +- {r['std']:.2f}", f"{r['test_loss']:.4f}",
             "-" if r["groups"] == 2 else runner.p_value(r["p_vs_2_groups"])] for r in results["summary"]]
    return [utils.markdown_table(["groups", "test acc per seed (%)", "mean +- std (%)", "mean test loss",
                                 "p against 2 groups (paired t)"], body)]
