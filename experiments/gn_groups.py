"""GroupNorm's number of groups at the notebook's 20 epochs, from one (LayerNorm) to one per channel (InstanceNorm).

Every layer of `Net` has 8, 16, 32 or 48 channels, so 1, 2, 4 and 8 groups divide them all; "C" is one group per
channel (`Net(norm="I")`). With G groups a layer of C channels normalises each image over C/G channels x H x W.
One group is LayerNorm and two are the notebook's GroupNorm: those are the main comparison's runs, read from the store.
"""

import math

import matplotlib.pyplot as plt

import records
import store
import training
from checks import NORM_NAMES
from experiments import runner, stats

NAME = "gn_groups"
SHOWS = "GroupNorm from one group (LayerNorm) to one per channel (InstanceNorm)"  # its line in python -m experiments --help
GROUPS = (1, 2, 4, 8, "C")  # 1 is LayerNorm, "C" InstanceNorm
SEEDS = tuple(range(1, 11))  # PROTOCOL.md D; 1 and 2 groups are the main comparison's LN and GN runs, read from the store
OVERRIDES: dict = {}  # the notebook's settings and 20 epochs
REFERENCE = 2  # the notebook's GroupNorm
AS_NORM = {1: "L", "C": "I"}  # the groups that are another norm: one group is LayerNorm, one per channel InstanceNorm


def spec(settings: dict, groups: int | str, seed: int) -> dict:
    """One group is LayerNorm's run, one per channel InstanceNorm's; the others GroupNorm's with that many groups."""
    if groups in AS_NORM:
        return training.run_spec(settings, AS_NORM[groups], seed)
    return training.run_spec(settings, "G", seed, groups=groups)


def named(groups: int | str) -> str:
    """A row's groups in the table: "1 (LayerNorm)", "2 (the notebook's GN)", "4", ..., "C (InstanceNorm)"."""
    if groups in AS_NORM:
        return f"{groups} ({NORM_NAMES[AS_NORM[groups]]})"
    return f"{groups} (the notebook's GN)" if groups == REFERENCE else str(groups)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [dict(groups=g, seed=s, spec=spec(settings, g, s)) for s in seeds for g in GROUPS]


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    """One row per number of groups: accuracy over seeds, each compared with 2 groups (paired over seeds, Holm within
    the table, equivalence at +-stats.MARGIN)."""
    rows = []
    for groups in GROUPS:
        chosen = sorted((r for r in trained if r["groups"] == groups), key=lambda r: r["seed"])
        acc = [r["record"]["history"][-1]["test_acc"] for r in chosen]
        mean, std = stats.mean_std(acc)
        rows.append(dict(groups=groups, seeds=[r["seed"] for r in chosen], test_acc=acc, mean=mean, std=std,
                         test_loss=stats.mean_std([r["record"]["history"][-1]["test_loss"] for r in chosen])[0]))
    stats.compare_rows(rows, next(r for r in rows if r["groups"] == REFERENCE), "against_2_groups")
    counted = [r for r in rows if r["groups"] != "C"]  # PROTOCOL.md D: the slope over log2 of 1, 2, 4 and 8 groups
    trend = stats.trend([math.log2(r["groups"]) for r in counted],
                         [list(a) for a in zip(*(r["test_acc"] for r in counted))])
    return dict(rows=rows, margin=stats.MARGIN, trend=trend)


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    positions = range(len(rows))
    ax.errorbar(positions, [100 - row["mean"] for row in rows], [row["std"] for row in rows], marker="o", capsize=3)
    for x, row in zip(positions, rows):
        ax.scatter([x] * len(row["test_acc"]), [100 - a for a in row["test_acc"]], color="grey", s=10, zorder=3)
    ax.set_xticks(list(positions), [str(row["groups"]) for row in rows])
    ax.set(xlabel="groups per layer (C: one per channel)", ylabel="test error (%)",
           title=f"GroupNorm's groups: mean and std over {len(rows[0]['seeds'])} seeds (dots: each seed), "
                 f"{results['settings']['EPOCHS']} epochs")
    ax.grid(alpha=0.3)
    return fig


def tables(results: dict) -> list[str]:
    margin = results["summary"]["margin"]
    body = []
    for row in results["summary"]["rows"]:
        body.append([named(row["groups"]), ", ".join(f"{a:.2f}" for a in row["test_acc"]),
                     f"{row['mean']:.2f} +- {row['std']:.2f}", f"{row['test_loss']:.4f}"]
                    + runner.comparison_cells(row.get("against_2_groups")))
    groups = ", ".join(f"{2 ** x:g}" for x in results["summary"]["trend"]["x"])
    return [records.markdown_table(["groups", "test acc per seed (%)", "mean +- std (%)", "mean test loss",
                                  "against 2 groups (points) [95% interval]", "paired t p (Holm)",
                                  f"equivalence p, +-{margin:.2f} (Holm)", "verdict"], body),
            runner.trend_table(results["summary"]["trend"], f"GroupNorm over {groups} groups", "doubling of the groups")]


def pick(results: dict, found: list[dict]) -> dict | None:
    """The row on GroupNorm's groups (README's pick table; experiments/interface.py, Words)."""
    if "gn_groups" not in results:
        return None
    gn = [row for row in found if row["family"] == "gn_groups"]
    instance = next(row for row in gn if NORM_NAMES["I"] in row["comparison"])
    others = [row for row in gn if row is not instance]
    return dict(situation="How many groups for GroupNorm",
                pick="GroupNorm, not with one group per channel; among 1 (LayerNorm) to 8 groups none is shown better",
                why=f"InstanceNorm (one group per channel) is {-instance['difference']:.2f} points below 2 groups "
                    f"({instance['study_verdict']}); 1, 4 and 8 groups against 2: "
                    + ", ".join(sorted({row["study_verdict"] for row in others})), evidence=[NAME], norms="LG")
