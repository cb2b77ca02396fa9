"""The figures: metric curves, per-model curves, the grid of misclassified digits, the torchsummary table."""

import copy
import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import torch
import torch.nn as nn

from data import MNIST_MEAN, MNIST_STD

# ---- Figures ----------------------------------------------------------------------------------------------

def _save(fig: plt.Figure, path: str | os.PathLike | None) -> plt.Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def plot_metric(histories: dict[str, list[dict]], key: str, path: str | os.PathLike | None = None) -> plt.Figure:
    """One curve per model of `key` ("test_loss", "test_acc", ...) against the epoch, on a log axis.

    An accuracy is drawn as its error, 100 - accuracy: on a log axis every epoch stays in view and the last ones, a
    few tenths of a point apart, still separate.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    error = key.endswith("acc")
    for name, history in histories.items():
        ax.plot([r["epoch"] for r in history], [100 - r[key] if error else r[key] for r in history], marker="o",
                markersize=3, label=name)
    label = key.replace("_", " ").replace("acc", "error (%)")
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=f"{label}, log scale", title=label[0].upper() + label[1:] + ", one run")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def plot_curves(name: str, history: list[dict], path: str | os.PathLike | None = None) -> plt.Figure:
    """Loss (left) and accuracy (right) of one model: as trained, and as tested.

    The training numbers are averages over the epoch of the live weights on augmented digits (with the L1 term in
    the loss, if any); the test numbers are those of the model `fit` tests (the weights' moving average, if kept)
    on clean test digits at the end of the epoch. The gap between them is not a generalisation gap alone.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in history]
    labels = {"train": "training: live weights, augmented digits", "test": "test: the tested model, clean digits"}
    for ax, metric, label in zip(axes, ("loss", "acc"), ("loss", "accuracy (%)")):
        for split, legend in labels.items():
            ax.plot(epochs, [r[f"{split}_{metric}"] for r in history], marker="o", markersize=3, label=legend)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: training and test curves")
    return _save(fig, path)


def plot_misclassified(
    images: torch.Tensor, predicted: torch.Tensor, true: torch.Tensor, title: str, path: str | os.PathLike | None = None
) -> plt.Figure:
    """Up to 10 digits in 5 rows by 2 columns, each titled with its predicted and true label."""
    fig, axes = plt.subplots(5, 2, figsize=(4, 9))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow((images[i].squeeze(0).cpu() * MNIST_STD + MNIST_MEAN).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"predicted {int(predicted[i])}, true {int(true[i])}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def print_summary(model: nn.Module, input_size: tuple[int, ...] = (1, 28, 28)) -> None:
    """torchsummary's table for `model`, computed on a CPU copy in eval mode so the model itself is untouched.

    torchsummary runs a forward pass (in train mode it would update BatchNorm's running statistics) and defaults
    to device="cuda", which fails on a CPU-only machine.
    """
    from torchsummary import summary

    summary(copy.deepcopy(model).cpu().eval(), input_size, device="cpu")
