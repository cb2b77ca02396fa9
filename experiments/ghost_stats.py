"""What breaks BatchNorm trained on ghost batches of one or two images, and what restores it: the norm_batch
experiment's stored models at k = 1 and 2 (five seeds each), evaluated without retraining.

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
import training
from experiments import runner, stats

NAME = "ghost_stats"
SHOWS = "what breaks BatchNorm trained on ghost batches of one or two images, and what restores it"  # its line in python -m experiments --help
SIZES = (1, 2)
SEEDS = (1, 2, 3, 4, 5)
OVERRIDES: dict = {}
WAYS = ("running statistics", "recomputed in groups of k", "recomputed over whole batches", "statistics of k test digits")


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [dict(k=k, seed=s, spec=training.run_spec(settings, "B", s, norm_batch=k)) for s in seeds for k in SIZES]


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    train, held = training.loaders(trained[0]["spec"], "cpu")
    rows = []
    for k in runner.progress(SIZES, "ghost-batch sizes evaluated four ways"):
        models = [runs_store.model(r["spec"]) for r in sorted((r for r in trained if r["k"] == k), key=lambda r: r["seed"])]
        acc = {WAYS[0]: [runner.accuracy(m, held.images, held.labels)[0] for m in models],
               WAYS[1]: [runner.accuracy(runner.recomputed_statistics(m, train.images, settings["BATCH_SIZE"], k),
                                         held.images, held.labels)[0] for m in models],
               WAYS[2]: [runner.accuracy(runner.recomputed_statistics(m, train.images, settings["BATCH_SIZE"]),
                                         held.images, held.labels)[0] for m in models],
               WAYS[3]: [runner.batch_statistics(m, k, held.images, held.labels)[0] for m in models]}
        rows.append(dict(k=k, **stats.compare_ways(acc)))
    stats.verdicts([c for r in rows for c in r["against"].values()])
    return dict(rows=rows, seeds=len({r["seed"] for r in trained}), margin=stats.MARGIN)  # one with --quick


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]["rows"]
    return runner.ways_figure(rows, [f"k = {r['k']}" for r in rows], "Ghost-batch BatchNorm at test time: mean (bars) "
                              f"and {results['summary']['seeds']} seeds (dots)")


def tables(results: dict) -> list[str]:
    rows = results["summary"]["rows"]
    return [runner.ways_table(rows, "k", [r["k"] for r in rows])]
