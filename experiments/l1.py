"""The L1 lambda of BatchNorm + L1, chosen on validation: BN trained on the first 50,000 training digits at each
lambda and scored on the last 10,000 (never the test set), two seeds each.

The lambda with the best mean validation accuracy among the non-zero ones is the one the study uses (the notebook's
L1_LAMBDA; a test holds them together). Each lambda is compared with lambda = 0 over seeds (paired, Holm-adjusted).
What L1 acts on is measured on the stored models: how many penalised weights feed a norm (whose output does not
change when a convolution's weights are all scaled by one factor), their sum of |w| epoch by epoch, and the fraction
of weights it drives to about zero.
"""

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import torch

import records
import store
import training
from experiments import runner, stats, study

NAME = "l1"
SHOWS = "BatchNorm + L1's lambda, chosen on the validation split"  # its line in python -m experiments --help
SEEDS = (1, 2)
OVERRIDES: dict = {}
LAMBDAS = (0.0, 1e-5, 1e-4, 1e-3)
ZERO = 1e-3  # |w| below this counts as about zero (the layers' typical |w| is 0.05-0.5)


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [dict(l1_lambda=lam, seed=s, spec=training.run_spec(settings, "B", s, l1_lambda=lam, split="validation"))
            for s in seeds for lam in LAMBDAS]


def penalised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights L1 penalises (utils.l1_penalty: convolutions and the linear layer), by name."""
    return {name: m.weight.detach() for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}


def summarise(trained: list[dict], settings: dict, runs_store: store.Store) -> dict:
    rows = []
    for lam in LAMBDAS:
        chosen = sorted((row for row in trained if row["l1_lambda"] == lam), key=lambda row: row["seed"])
        acc = [row["record"]["history"][-1]["test_acc"] for row in chosen]
        weights = [penalised(runs_store.model(row["spec"])) for row in chosen]
        everything = [torch.cat([w.flatten() for w in ws.values()]) for ws in weights]
        rows.append(dict(l1_lambda=lam, seeds=[row["seed"] for row in chosen], validation_acc=acc,
                         mean=stats.mean_std(acc)[0],
                         weights_l1=[[e["weights_l1"] for e in row["record"]["history"]] for row in chosen],
                         near_zero=[float((w.abs() < ZERO).float().mean()) for w in everything]))
    baseline = rows[0]["validation_acc"]
    comparisons = [stats.compare(row["validation_acc"], baseline) for row in rows[1:]]
    stats.verdicts(comparisons)
    for row, comparison in zip(rows[1:], comparisons):
        row["against_0"] = comparison
    best = max(rows[1:], key=lambda row: row["mean"])["l1_lambda"]
    model = runs_store.model(trained[0]["spec"])
    layers = penalised(model)
    before_norm = {name: name.startswith("convs.") for name in layers}  # every convolution feeds a norm; fc does not
    counts = {name: w.numel() for name, w in layers.items()}
    return dict(rows=rows, chosen=best, zero=ZERO, penalised=sum(counts.values()),
                before_norm=sum(n for name, n in counts.items() if before_norm[name]))


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for x, row in enumerate(rows):
        ax.scatter([x] * len(row["validation_acc"]), [100 - a for a in row["validation_acc"]], color="grey", s=12, zorder=3)
        ax.scatter([x], [100 - row["mean"]], color="tab:blue", s=40, zorder=4)
    ax.set_xticks(range(len(rows)), [f"{row['l1_lambda']:g}" for row in rows])
    ax.set(xlabel="L1 lambda", ylabel="validation error (%)", title="BN + L1 on validation: each seed (grey), mean (blue)")
    ax.grid(alpha=0.3)
    ax = axes[1]
    for row in rows:
        for i, curve in enumerate(row["weights_l1"]):
            ax.plot(range(1, len(curve) + 1), curve, color=f"C{rows.index(row)}", label=f"lambda {row['l1_lambda']:g}" if i == 0 else None)
    ax.set(xlabel="epoch", ylabel="sum of abs(w) over the penalised weights", title="what L1 does to the weights' scale")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tables(results: dict) -> list[str]:
    summary = results["summary"]
    body = []
    for row in summary["rows"]:
        body.append([f"{row['l1_lambda']:g}", ", ".join(f"{a:.2f}" for a in row["validation_acc"]), f"{row['mean']:.2f}"]
                    + runner.comparison_cells(row.get("against_0"), equivalence=False)
                    + [", ".join(f"{w[-1]:.0f}" for w in row["weights_l1"]), ", ".join(f"{z:.1%}" for z in row["near_zero"])])
    return [records.markdown_table(["L1 lambda", "validation acc per seed (%)", "mean (%)",
                                  "against lambda 0 (points) [95% interval]", "paired t p (Holm)", "verdict",
                                  "final sum of abs(w)", f"weights with abs(w) < {ZERO:g}"], body)]


# ---- Its words in README.md and STUDY.md (experiments/interface.py, Words) -------------------------------------------

def final(row: dict) -> float:
    """A lambda's penalised weights' sum of abs(w) after the last epoch, the mean over its seeds."""
    return sum(w[-1] for w in row["weights_l1"]) / len(row["weights_l1"])


def blocks(results: dict, found: list[dict]) -> dict[str, str]:
    """STUDY.md's account of what L1 acts on (l1_mechanism)."""
    if "l1" not in results:
        return {"l1_mechanism": runner.not_yet("l1")}
    summary = results["l1"]["summary"]
    rows = {row["l1_lambda"]: row for row in summary["rows"]}
    chosen, none = rows[summary["chosen"]], rows[0.0]
    mean = lambda values: sum(values) / len(values)
    return {"l1_mechanism": (
        f"Chosen on validation: lambda = {summary['chosen']:g}, the best mean of the non-zero lambdas ({chosen['mean']:.2f}% "
        f"against {none['mean']:.2f}% without L1; {chosen['against_0']['verdict']} with {len(chosen['seeds'])} seeds). "
        f"Of the {summary['penalised']:,} weights L1 penalises, {summary['before_norm']:,} ({summary['before_norm'] / summary['penalised']:.0%}) "
        f"are in convolutions that feed a norm. At lambda = {summary['chosen']:g} the penalised weights' sum of abs(w) ends at {final(chosen):.0f} "
        f"against {final(none):.0f} without L1 (mean over seeds), and "
        f"{mean(chosen['near_zero']):.1%} of the weights end below {summary['zero']:g} against "
        f"{mean(none['near_zero']):.1%}; at the larger lambdas, " + ", ".join(
            f"{lam:g}: {mean(row['near_zero']):.0%}" for lam, row in rows.items() if lam > summary["chosen"]) + ".")}


def pick(results: dict, found: list[dict]) -> dict | None:
    """The row on L1: BatchNorm with and without it at the shared rate, and what it does to the weights."""
    if "l1" not in results or "main" not in results:
        return None
    summary = results["l1"]["summary"]
    rows = {row["l1_lambda"]: row for row in summary["rows"]}
    return dict(situation="L1 on BatchNorm's weights", pick="not for accuracy",
                why=f"at lambda = {summary['chosen']:g} (chosen on validation), BatchNorm with and without L1 at the shared "
                    f"rate: {study.verdict(found, 'main (pairs)', 'BN - BN+L1')}; L1 shrinks the penalised weights' sum of "
                    f"abs(w) from {final(rows[0.0]):,.0f} to {final(rows[summary['chosen']]):,.0f}",
                evidence=[NAME], norms="")
