"""The BN model's L1 lambda: the notebook's BN variant, run once per lambda with papermill (seed 1, 20 epochs)."""

import matplotlib.pyplot as plt

import utils
from experiments import runner

NAME = "l1"
SEEDS = (1,)  # the notebook's seed
OVERRIDES: dict = {}  # the notebook's settings
LAMBDAS = (0.0, 1e-5, 1e-4, 1e-3)


def runs(settings: dict, seeds: tuple[int, ...], jobs: int) -> list[dict]:
    parameters = {k: v for k, v in settings.items() if k != "OUT_DIR"}
    jobs_list = [(f"lambda{lam:g}-seed{seed}", {**parameters, "SEED": seed, "VARIANTS": {"BN": "B"}, "L1_LAMBDA": lam})
                 for lam in LAMBDAS for seed in seeds]
    histories = runner.run_notebooks(jobs_list, jobs, NAME)
    results = []
    for (label, runs_), lam in zip(histories.items(), [lam for lam in LAMBDAS for _ in seeds]):
        history = runs_["BN"]["history"]
        results.append(dict(l1_lambda=lam, seed=runs_["BN"]["settings"]["SEED"], test_acc=history[-1]["test_acc"],
                            test_loss=history[-1]["test_loss"], history=history))
    return results


def summarise(runs: list[dict], settings: dict) -> list[dict]:
    return [dict(l1_lambda=r["l1_lambda"], seed=r["seed"], test_acc=r["test_acc"], test_loss=r["test_loss"],
                 standard_error=runner.standard_error(r["test_acc"], settings["TEST_LIMIT"] or runner.TEST_DIGITS))
            for r in runs]


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(range(len(rows)), [r["test_acc"] for r in rows], [r["standard_error"] for r in rows], marker="o", capsize=4)
    ax.set_xticks(range(len(rows)), [f"{r['l1_lambda']:g}" for r in rows])
    ax.set(xlabel="L1 lambda", ylabel="final test accuracy (%)",
           title="BN + L1: final test accuracy (bars: standard error of one run)")
    ax.grid(alpha=0.3)
    return fig


def tables(results: dict) -> list[str]:
    return [utils.markdown_table(["L1 lambda", "seed", "final test acc (%)", "standard error (points)", "final test loss"],
                                 [[f"{r['l1_lambda']:g}", r["seed"], f"{r['test_acc']:.2f}", f"{r['standard_error']:.2f}",
                                   f"{r['test_loss']:.4f}"] for r in results["summary"]])]
