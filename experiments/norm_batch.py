"""BatchNorm against the number of images it normalises over, LayerNorm and GroupNorm as controls, at the notebook's
20 epochs. BN trains without L1 here, so that only the normalisation varies.

The optimiser's batch stays 128 (the notebook's); BatchNorm computes its training statistics over groups of k images
within it (ghost batches, `Net(norm_batch=k)`). So the learning rate, the number of steps and the data are the same
at every k, and only the normalisation changes: this project's design, unlike the GroupNorm paper, whose total batch
(8 GPUs x k images) and learning rate change with k. BN is tested with its running statistics (as usual) and with
the statistics of each group of k test digits; the experiment ghost_stats asks what restores the models at k = 1, 2.
k = 128 is plain BN, and it and the controls are the main comparison's runs, read from the store.
"""

import math

import matplotlib.pyplot as plt

import records
import store
import training
from checks import norm_name
from experiments import runner, stats, study

NAME = "norm_batch"
SHOWS = "BatchNorm against the number of images it normalises over (ghost batches), LN and GN as controls"  # its line in python -m experiments --help
SIZES = (1, 2, 4, 8, 32, 128)  # images per normalisation group; the batch (128) is plain nn.BatchNorm2d
SEEDS = tuple(range(1, 11))  # PROTOCOL.md D
OVERRIDES: dict = {}  # the notebook's settings and 20 epochs


def sizes(batch: int) -> list[int]:
    """The group sizes below the batch, then the batch itself; sizes at or above the batch would be the same run
    as the whole batch, so they are left out (and said) rather than labelled apart."""
    dropped = [k for k in SIZES if k > batch]
    if dropped:
        print(f"norm_batch: k = {dropped} would not be below the batch of {batch}: left out, the whole batch "
              f"(k = {batch}) stands for them")
    return [k for k in SIZES if k < batch] + [batch]


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    batch = settings["BATCH_SIZE"]
    specs = [dict(norm="B", k=k, seed=s, spec=training.run_spec(settings, "B", s, norm_batch=k if k < batch else None))
             for s in seeds for k in sizes(batch)]
    return specs + [dict(norm=n, k=None, seed=s, spec=training.run_spec(settings, n, s)) for s in seeds for n in "LG"]


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    """One row per norm and k: accuracy over seeds with running and with test-batch statistics; each k compared with
    the whole batch (paired over seeds, Holm within the table, equivalence at +-stats.MARGIN)."""
    _, held = training.loaders(trained[0]["spec"], "cpu")
    rows = []
    for norm, k in dict.fromkeys((r["norm"], r["k"]) for r in trained):
        chosen = sorted((r for r in trained if (r["norm"], r["k"]) == (norm, k)), key=lambda r: r["seed"])
        acc = [r["record"]["history"][-1]["test_acc"] for r in chosen]
        row = dict(norm=norm, k=k, seeds=[r["seed"] for r in chosen], test_acc=acc)
        row["mean"], row["std"] = stats.mean_std(acc)
        if norm == "B":
            models = [runs_store.model(r["spec"]) for r in chosen]
            batch_acc = [runner.batch_statistics(m, k, held.images, held.labels)[0] for m in models]
            row.update(batch_stat_acc=batch_acc, batch_stat_mean=stats.mean_std(batch_acc)[0],
                       batch_stat_std=stats.mean_std(batch_acc)[1])
        rows.append(row)
    whole = next(r for r in rows if r["norm"] == "B" and r["k"] == settings["BATCH_SIZE"])
    stats.compare_rows(rows, whole, "against_whole_batch")
    # PROTOCOL.md D: the slope over log2 k, k = 1 left out (it collapses to about 21% and would dominate any slope)
    bn = [r for r in rows if r["norm"] == "B" and r["k"] > 1]
    trend = stats.trend([math.log2(r["k"]) for r in bn], [list(a) for a in zip(*(r["test_acc"] for r in bn))])
    return dict(rows=rows, margin=stats.MARGIN, trend=trend)


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bn = [row for row in rows if row["norm"] == "B"]
    ks = [row["k"] for row in bn]
    ax.errorbar(ks, [100 - row["mean"] for row in bn], [row["std"] for row in bn], marker="o", capsize=3,
                label="BatchNorm, running statistics")
    ax.errorbar(ks, [100 - row["batch_stat_mean"] for row in bn], [row["batch_stat_std"] for row in bn], marker="s",
                capsize=3, linestyle="--", label="BatchNorm, statistics of k test digits")
    for row, color in zip([row for row in rows if row["norm"] != "B"], ("tab:green", "tab:red")):
        error = 100 - row["mean"]
        ax.axhline(error, color=color, label=f"{norm_name(row['norm'], results['settings']['GROUPS'])} (independent of k)")
        ax.axhspan(error - row["std"], error + row["std"], color=color, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # from chance level (90% error) down to under 1%
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(xlabel=f"images per normalisation group, k (the optimiser's batch stays {ks[-1]})",
           ylabel="test error (%), log scale",
           title=f"Normalisation batch size: mean and std over {len(bn[0]['seeds'])} seeds, "
                 f"{results['settings']['EPOCHS']} epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def tables(results: dict) -> list[str]:
    cell = lambda mean, std: f"{mean:.2f} +- {std:.2f}"
    body = []
    for row in results["summary"]["rows"]:
        body.append([norm_name(row["norm"], results["settings"]["GROUPS"]), "-" if row["k"] is None else row["k"], cell(row["mean"], row["std"]),
                     cell(row["batch_stat_mean"], row["batch_stat_std"]) if row["norm"] == "B" else "-"]
                    + runner.comparison_cells(row.get("against_whole_batch")))
    margin = results["summary"]["margin"]
    ks = ", ".join(f"{2 ** x:g}" for x in results["summary"]["trend"]["x"])
    return [records.markdown_table(
        ["norm", "k", "test acc, running statistics (%)", "test acc, statistics of k test digits (%)",
         "against BN on the whole batch (points) [95% interval]", "paired t p (Holm)",
         f"equivalence p, +-{margin:.2f} (Holm)", "verdict"], body),
        runner.trend_table(results["summary"]["trend"], f"BatchNorm, running statistics, over k = {ks}",
                           "doubling of k")]


def pick(results: dict, found: list[dict]) -> dict | None:
    """The row on normalising over one or two images (README's pick table; experiments/interface.py, Words)."""
    if "norm_batch" not in results:
        return None
    batch = results["norm_batch"]["settings"]["BATCH_SIZE"]
    nb = {(x["norm"], x["k"]): x for x in results["norm_batch"]["summary"]["rows"]}
    k2 = study.verdict(found, "norm_batch", "k = 2 - whole batch")
    trend = next(row for row in found if row["comparison"].startswith("norm_batch: slope"))
    return dict(situation=f"One or two images per normalisation group (ghost batches within a batch of {batch})",
                pick="LayerNorm or GroupNorm, not BatchNorm",
                why=f"BatchNorm over groups of one image ends at {nb[('B', 1)]['mean']:.0f}% accuracy; over two it is "
                    f"{-nb[('B', 2)]['against_whole_batch']['difference']:.2f} points below the whole batch ({k2}); and "
                    f"from 2 to {batch} images accuracy rises with the group ({trend['study_verdict']}: "
                    f"{trend['difference']:+.3f} points per doubling). LayerNorm and GroupNorm do not depend on the batch",
                evidence=[NAME], norms="LG")
