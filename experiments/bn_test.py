"""BatchNorm at test time, on the main comparison's stored models (nothing is trained here).

Each BN model as stored holds the weights' moving average and, averaged along with them, BatchNorm's running
statistics. It is evaluated three ways on the test digits: with those running statistics (eval mode, as reported
everywhere), with statistics recomputed over the 60,000 clean training digits in batches of 128 under the same
weights (torch.optim.swa_utils.update_bn, "precise BN": this separates the running average from the weights), and
with the statistics of each group of k test digits (train mode, on a copy). Running against recomputed is tested per
model (McNemar) and over seeds (paired t). Every model, LN and GN too, is also evaluated in eval mode at test batches
of 1 and 1,000, which must give the same predictions.
"""

import matplotlib.pyplot as plt

import records
import store
import training
from experiments import main, runner, stats, study

NAME = "bn_test"
SHOWS = "BatchNorm at test time: test batch size, train mode, recomputed statistics (trains nothing)"  # its line in python -m experiments --help
SEEDS = main.SEEDS
OVERRIDES: dict = {}
TEST_BATCHES = (1, 2, 8, 32, 128, 1000)
INVARIANCE = (1, 1000)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return main.runs(settings, seeds)  # the same runs: read from the store


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    train, held = training.loaders(trained[0]["spec"], "cpu")
    labels = "".join(map(str, held.labels.tolist()))
    bn = {}
    for variant in dict.fromkeys(row["variant"] for row in trained if row["spec"]["norm"] == "B"):
        chosen = sorted((row for row in trained if row["variant"] == variant), key=lambda row: row["seed"])
        rows = []
        for row in runner.progress(chosen, f"{variant}: stored models evaluated at test time"):
            model = runs_store.model(row["spec"])
            running, running_pred = runner.accuracy(model.eval(), held.images, held.labels)
            recomputed_model = runner.recomputed_statistics(model, train.images, settings["BATCH_SIZE"])
            recomputed, recomputed_pred = runner.accuracy(recomputed_model, held.images, held.labels)
            as_text = lambda p: "".join(map(str, p.tolist()))
            rows.append(dict(seed=row["seed"], running=running, recomputed=recomputed,
                             mcnemar=stats.mcnemar(as_text(recomputed_pred), as_text(running_pred), labels),
                             batch_statistics={str(k): runner.batch_statistics(model, k, held.images, held.labels)[0]
                                               for k in TEST_BATCHES}))
        comparison = stats.compare([x["recomputed"] for x in rows], [x["running"] for x in rows])
        bn[variant] = dict(rows=rows, recomputed_vs_running=comparison)
    stats.verdicts([b["recomputed_vs_running"] for b in bn.values()])
    invariance = []
    for row in runner.progress(trained, "models evaluated at test batches 1 and 1,000"):
        model = runs_store.model(row["spec"])
        (acc_a, pred_a), (acc_b, pred_b) = (runner.accuracy(model, held.images, held.labels, k) for k in INVARIANCE)
        invariance.append(int((pred_a != pred_b).sum()))
    return dict(bn=bn, invariance=dict(models=len(invariance), changed=sum(invariance)), margin=stats.MARGIN)


def figure(results: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, bn) in enumerate(results["summary"]["bn"].items()):
        ks = [int(k) for k in bn["rows"][0]["batch_statistics"]]
        errors = [[100 - x["batch_statistics"][str(k)] for x in bn["rows"]] for k in ks]
        mean = [sum(e) / len(e) for e in errors]
        ax.plot(ks, mean, marker="o", color=f"C{i}", label=f"{name}, statistics of each test batch (mean over seeds)")
        running = sum(100 - x["running"] for x in bn["rows"]) / len(bn["rows"])
        recomputed = sum(100 - x["recomputed"] for x in bn["rows"]) / len(bn["rows"])
        ax.axhline(running, color=f"C{i}", linestyle="-", alpha=0.5, label=f"{name}, running statistics")
        ax.axhline(recomputed, color=f"C{i}", linestyle="--", alpha=0.5, label=f"{name}, recomputed statistics")
    ax.set_xscale("log")
    ax.set_yscale("log")  # from chance level down to under 1%
    ax.set_xticks(ks, [f"{k:,}" for k in ks])
    ax.set(xlabel="test batch size", ylabel="test error (%), log scale",
           title=f"BatchNorm at test time ({len(bn['rows'])} seeds per variant)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def tables(results: dict) -> list[str]:
    summary = results["summary"]
    out = []
    for variant, bn in summary["bn"].items():
        comparison = bn["recomputed_vs_running"]
        rows = [[x["seed"], f"{x['running']:.2f}", f"{x['recomputed']:.2f}",
                 f"{x['mcnemar']['only_a']}/{x['mcnemar']['only_b']}", runner.p_value(x["mcnemar"]["p"])]
                + [f"{x['batch_statistics'][str(k)]:.2f}" for k in TEST_BATCHES] for x in bn["rows"]]
        rows.append(["recomputed - running over seeds", "", runner.interval(comparison),
                     f"paired t p (Holm) {runner.p_value(comparison['p_holm'])}",
                     f"equivalence p (Holm) {runner.p_value(comparison['p_equivalence_holm'])}: {comparison['verdict']}"]
                    + [""] * len(TEST_BATCHES))
        out.append(records.markdown_table(
            [f"{variant}: seed", "running statistics (%)", "recomputed statistics (%)", "digits only recomputed / only running gets right",
             "McNemar p"] + [f"test batch {k:,}, own statistics (%)" for k in TEST_BATCHES], rows))
    return out


def pick(results: dict, found: list[dict]) -> dict | None:
    """The row on BatchNorm at test time (README's pick table; experiments/interface.py, Words)."""
    if "bn_test" not in results:
        return None
    bn = results["bn_test"]["summary"]
    first = next(iter(bn["bn"].values()))
    one = sum(x["batch_statistics"]["1"] for x in first["rows"]) / len(first["rows"])
    recomputed = study.verdict(found, "bn_test", f"{next(iter(bn['bn']))}: recomputed - running statistics")
    return dict(situation="BatchNorm at test time", pick="eval mode (its running statistics)",
                why=f"in eval mode no prediction changes with the test batch ({bn['invariance']['changed']} over "
                    f"{bn['invariance']['models']} models); left in train mode with one test digit at a time it falls "
                    f"to {one:.1f}%; statistics recomputed over the training digits: {recomputed} to the running ones",
                evidence=[NAME], norms="")
