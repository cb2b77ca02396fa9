"""What breaks BatchNorm trained on ghost batches of one or two images, and what restores it: the norm_batch
experiment's stored models at k = 1 and 2 (three seeds each), evaluated without retraining.

In training each group of k images is normalised with its own statistics; the running statistics average those
groups' means and variances. With k = 1 a group's mean is one image's, so the spread of the images' means is in no
variance the model ever saw. Each model is tested four ways: with its running statistics (as trained), with statistics
recomputed over the 60,000 clean training digits in groups of k (what the running average estimates, without its lag
and the weights' EMA), with statistics recomputed over whole batches of 128 (the population's, which include the spread
of the group means), and with the statistics of each group of k test digits (as in training). If the population's
statistics restore a model and the recomputed group statistics do not, what breaks it is the missing spread of the
group means, not the running average; the table compares each way with the running statistics over seeds.
"""

import matplotlib.pyplot as plt

import store
import utils
from experiments import runner

NAME = "ghost_stats"
SIZES = (1, 2)
SEEDS = (1, 2, 3)
OVERRIDES: dict = {}
WAYS = ("running statistics", "recomputed in groups of k", "recomputed over whole batches", "statistics of k test digits")


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [dict(k=k, seed=s, spec=store.run_spec(settings, "B", s, norm_batch=k)) for s in seeds for k in SIZES]


def summarise(runs_: list[dict], settings: dict, runs_store: store.Store) -> dict:
    train, held = store.loaders(runs_[0]["spec"], "cpu")
    rows = []
    for k in SIZES:
        models = [runs_store.model(r["spec"]) for r in sorted((r for r in runs_ if r["k"] == k), key=lambda r: r["seed"])]
        acc = {WAYS[0]: [runner.accuracy(m, held.images, held.labels)[0] for m in models],
               WAYS[1]: [runner.accuracy(runner.recomputed_statistics(m, train.images, settings["BATCH_SIZE"], k),
                                         held.images, held.labels)[0] for m in models],
               WAYS[2]: [runner.accuracy(runner.recomputed_statistics(m, train.images, settings["BATCH_SIZE"]),
                                         held.images, held.labels)[0] for m in models],
               WAYS[3]: [runner.batch_statistics(m, k, held.images, held.labels) for m in models]}
        rows.append(dict(k=k, acc=acc, mean={w: runner.mean_std(a)[0] for w, a in acc.items()},
                         against_running={w: runner.compare(acc[w], acc[WAYS[0]]) for w in WAYS[1:]}))
    runner.verdicts([c for r in rows for c in r["against_running"].values()])
    return dict(rows=rows, seeds=len(SEEDS), margin=runner.MARGIN)


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]["rows"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(WAYS)
    for i, way in enumerate(WAYS):
        ax.bar([x + i * width for x in range(len(rows))], [100 - r["mean"][way] for r in rows], width, label=way)
        for x, r in enumerate(rows):
            ax.scatter([x + i * width] * len(r["acc"][way]), [100 - a for a in r["acc"][way]], color="black", s=6, zorder=3)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], [f"k = {r['k']}" for r in rows])
    ax.set_yscale("log")
    ax.set(ylabel="test error (%), log scale", title=f"Ghost-batch BatchNorm at test time: mean (bars) and "
                                                      f"{results['summary']['seeds']} seeds (dots)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def tables(results: dict) -> list[str]:
    body = []
    for r in results["summary"]["rows"]:
        cells = [r["k"], ", ".join(f"{a:.2f}" for a in r["acc"][WAYS[0]])]
        for way in WAYS[1:]:
            c = r["against_running"][way]
            cells.append(f"{', '.join(f'{a:.2f}' for a in r['acc'][way])}: {runner.interval(c)}, "
                         f"p {runner.p_value(c['p_holm'])}, {c['verdict']}")
        body.append(cells)
    return [utils.markdown_table(["k", "running statistics, per seed (%)"] + [
        f"{way}, per seed (%): against running [95% interval], paired t p (Holm), verdict" for way in WAYS[1:]], body)]
