"""Experiment 1: BatchNorm against the number of images it normalises over, with LayerNorm and GroupNorm as controls.

The optimiser's batch stays 128 (the notebook's); BatchNorm computes its training statistics over groups of k images
within it (ghost batches, `Net(norm_batch=k)`), as with k images per GPU in the GroupNorm paper. So the learning
rate, the number of steps and the data are the same at every k, and only the normalisation changes. BN is tested
both ways: with its running statistics (as usual) and with the statistics of each group of k test digits.
"""

import matplotlib.pyplot as plt

import utils
from experiments import runner

NAME = "norm_batch"
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)  # images per normalisation group; 128 is the whole batch, plain nn.BatchNorm2d
SEEDS = (1, 2, 3)
OVERRIDES = dict(EPOCHS=2)  # 2 of the notebook's 20 epochs: 30 runs in under 15 minutes on 2 cores


def runs(settings: dict, seeds: tuple[int, ...], jobs: int) -> list[dict]:
    batch = settings["BATCH_SIZE"]
    specs = [dict(settings=settings, norm="B", norm_batch=k if k < batch else None, group=k, seed=seed,
                  evaluations={"batch_statistics": [k]}) for k in SIZES for seed in seeds]
    specs += [dict(settings=settings, norm=norm, seed=seed) for norm in ("L", "G") for seed in seeds]
    return runner.run_all(specs, jobs, NAME)


def summarise(runs: list[dict], settings: dict) -> list[dict]:
    """One row per norm and group size: accuracy over seeds with running and with batch statistics, and a paired
    t-test (over seeds) of each BN group size against BN on the whole batch."""
    rows = []
    whole = sorted((r for r in runs if r["norm"] == "B" and r["group"] == max(SIZES)), key=lambda r: r["seed"])
    for norm, group in [("B", k) for k in SIZES] + [("L", None), ("G", None)]:
        chosen = sorted((r for r in runs if r["norm"] == norm and r.get("group") == group), key=lambda r: r["seed"])
        acc = [r["test_acc"] for r in chosen]
        row = dict(norm=norm, group=group, seeds=[r["seed"] for r in chosen], test_acc=acc)
        row["mean"], row["std"] = runner.mean_std(acc)
        if norm == "B":
            batch_acc = [r["batch_statistics"][str(group)] for r in chosen]
            row["batch_stat_acc"] = batch_acc
            row["batch_stat_mean"], row["batch_stat_std"] = runner.mean_std(batch_acc)
            row["gap"] = row["batch_stat_mean"] - row["mean"]
            row["p_vs_whole_batch"] = runner.paired_t(acc, [r["test_acc"] for r in whole])
        rows.append(row)
    return rows


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bn = [r for r in rows if r["norm"] == "B"]
    sizes = [r["group"] for r in bn]
    ax.errorbar(sizes, [100 - r["mean"] for r in bn], [r["std"] for r in bn], marker="o", capsize=3,
                label=f"{runner.LABELS['B']}, running statistics")
    ax.errorbar(sizes, [100 - r["batch_stat_mean"] for r in bn], [r["batch_stat_std"] for r in bn], marker="s",
                capsize=3, linestyle="--", label=f"{runner.LABELS['B']}, statistics of k test digits")
    for r, color in zip([r for r in rows if r["norm"] != "B"], ("tab:green", "tab:red")):
        error = 100 - r["mean"]
        ax.axhline(error, color=color, label=f"{runner.LABELS[r['norm']]} (independent of k)")
        ax.axhspan(error - r["std"], error + r["std"], color=color, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # from chance level (90% error) down to under 1%
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.set(xlabel="images per normalisation group, k (the optimiser's batch stays 128)", ylabel="test error (%), log scale",
           title=f"Normalisation batch size: mean and std over {len(bn[0]['seeds'])} seeds, "
                 f"{results['settings']['EPOCHS']} epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def tables(results: dict) -> list[str]:
    cell = lambda mean, std: f"{mean:.2f} +- {std:.2f}"
    body = []
    for r in results["summary"]:
        if r["norm"] == "B":
            body.append([runner.LABELS["B"], r["group"], cell(r["mean"], r["std"]), cell(r["batch_stat_mean"], r["batch_stat_std"]),
                         f"{r['gap']:+.2f}", runner.p_value(r["p_vs_whole_batch"])])
        else:
            body.append([runner.LABELS[r["norm"]], "-", cell(r["mean"], r["std"]), "-", "-", "-"])
    return [utils.markdown_table(
        ["norm", "k", "test acc, running statistics (%)", "test acc, statistics of k test digits (%)",
         "gap (points)", "p against k = 128 (paired t)"], body)]
