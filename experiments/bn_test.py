"""Experiment 3: BatchNorm at test time. The study's three models (the notebook's settings and seed, 20 epochs) are
trained again here, then BN is evaluated with its running statistics (eval mode), with the statistics of each test
batch of k digits (train mode, on a copy: the running statistics stay as they are), and with statistics recomputed
over the clean training digits (torch.optim.swa_utils.update_bn, "precise BN"); and every model is evaluated in eval
mode at test batch sizes 1 and 1,000, which must give the same predictions.
"""

import matplotlib.pyplot as plt

import utils
from experiments import runner

NAME = "bn_test"
SEEDS = (1,)  # the notebook's seed
OVERRIDES: dict = {}  # the notebook's settings: the study's models
TEST_BATCHES = [1, 2, 8, 32, 128, 1000]
INVARIANCE = [1, 1000]


def runs(settings: dict, seeds: tuple[int, ...], jobs: int) -> list[dict]:
    invariance = {"test_batch_invariance": INVARIANCE}
    bn = {"batch_statistics": TEST_BATCHES, "recomputed_statistics": settings["BATCH_SIZE"], **invariance}
    specs = [dict(settings=settings, norm=norm, seed=seed, evaluations=bn if norm == "B" else invariance)
             for norm in "BLG" for seed in seeds]
    return runner.run_all(specs, jobs, NAME)


def summarise(runs: list[dict], settings: dict) -> list[dict]:
    """One row per (model, evaluation, test batch size)."""
    rows = []
    for r in runs:
        for k, check in r["test_batch_invariance"].items():
            rows.append(dict(norm=r["norm"], evaluation="eval mode" + (": running statistics" if r["norm"] == "B" else ""),
                             test_batch=int(k), test_acc=check["test_acc"], changed=check["changed"]))
        if r["norm"] == "B":
            rows += [dict(norm="B", evaluation="train mode: statistics of each test batch", test_batch=int(k),
                          test_acc=acc, changed=None) for k, acc in r["batch_statistics"].items()]
            recomputed = r["recomputed_statistics"]
            rows.append(dict(norm="B", evaluation=f"eval mode: statistics recomputed over {recomputed['digits']:,} "
                             "clean training digits", test_batch=1000, test_acc=recomputed["test_acc"], changed=None))
    return rows


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]
    batch = [r for r in rows if r["evaluation"].startswith("train mode")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["test_batch"] for r in batch], [100 - r["test_acc"] for r in batch], marker="o",
            label="BN, statistics of each test batch")
    running = next(r for r in rows if r["norm"] == "B" and r["evaluation"] == "eval mode: running statistics")
    recomputed = next(r for r in rows if "recomputed" in r["evaluation"])
    ax.axhline(100 - running["test_acc"], color="tab:orange", label="BN, running statistics")
    ax.axhline(100 - recomputed["test_acc"], color="tab:green", linestyle="--", label="BN, recomputed statistics")
    ax.set_xscale("log")
    ax.set_yscale("log")  # from chance level down to under 1%
    ax.set_xticks([r["test_batch"] for r in batch], [f"{r['test_batch']:,}" for r in batch])
    ax.set(xlabel="test batch size", ylabel="test error (%), log scale", title="BatchNorm at test time (one trained model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def tables(results: dict) -> list[str]:
    body = [[runner.LABELS[r["norm"]], r["evaluation"], f"{r['test_batch']:,}", f"{r['test_acc']:.2f}",
             "-" if r["changed"] is None else r["changed"]] for r in results["summary"]]
    return [utils.markdown_table(["model", "evaluation", "test batch", "test acc (%)",
                                 f"predictions changed against test batch {INVARIANCE[0]}"], body)]
