"""Test digits whose statistics drift, on the main comparison's stored models (nothing is trained here).

Each shift is a deterministic change of the test images, made in code on the pixels in [0, 1] before the usual
normalisation: lower contrast, a brighter background, added noise (a fixed seed), thicker strokes (a 3x3 dilation)
and thinner ones (a 3x3 erosion). BatchNorm is evaluated with its running statistics from the clean training digits
and with statistics re-estimated on the shifted test digits themselves (no labels: update_bn over them in batches of
128), LayerNorm and GroupNorm as they are (they have nothing to re-estimate). Each is compared over seeds with BN's
running statistics (paired, Holm within the table, equivalence at +-runner.MARGIN).
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import data
import store
from experiments import main, runner

NAME = "shift"
SHOWS = "test digits that drift: five shifts, BN with re-estimated statistics against LN and GN (trains nothing)"  # its line in python -m experiments --help
SEEDS = main.SEEDS
OVERRIDES: dict = {}


def shifted(images: torch.Tensor, shift: str) -> torch.Tensor:
    """`images` (normalised [N, 1, 28, 28]) under a named shift of their pixels, normalised again."""
    pixels = images * data.MNIST_STD + data.MNIST_MEAN  # back to [0, 1]
    if shift == "contrast x 0.5":
        pixels = pixels * 0.5
    elif shift == "background + 0.3":
        pixels = 0.3 + 0.7 * pixels
    elif shift == "noise, std 0.3":
        noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
        pixels = (pixels + 0.3 * noise).clamp(0, 1)
    elif shift == "thicker strokes":
        pixels = F.max_pool2d(pixels, 3, stride=1, padding=1)
    elif shift == "thinner strokes":
        pixels = -F.max_pool2d(-pixels, 3, stride=1, padding=1)
    elif shift != "none":
        raise ValueError(f"unknown shift {shift!r}; known: {SHIFTS}")
    return (pixels - data.MNIST_MEAN) / data.MNIST_STD


SHIFTS = ("none", "contrast x 0.5", "background + 0.3", "noise, std 0.3", "thicker strokes", "thinner strokes")
COLUMNS = ("BN, running statistics", "BN, re-estimated on the shifted digits", "LN", "GN")


def runs(settings: dict, seeds: tuple[int, ...]) -> list[dict]:
    return [r for r in main.runs(settings, seeds) if r["variant"] in ("BN", "LN", "GN")]


def summarise(runs_: list[dict], settings: dict, runs_store: store.Store) -> dict:
    _, held = store.loaders(runs_[0]["spec"], "cpu")
    models = {v: [runs_store.model(r["spec"]) for r in sorted((r for r in runs_ if r["variant"] == v),
                                                                key=lambda r: r["seed"])] for v in ("BN", "LN", "GN")}
    rows = []
    for shift in runner.progress(SHIFTS, f"shifts evaluated on {sum(map(len, models.values()))} stored models"):
        images = shifted(held.images, shift)
        acc = {COLUMNS[0]: [runner.accuracy(m, images, held.labels)[0] for m in models["BN"]],
               COLUMNS[1]: [runner.accuracy(runner.recomputed_statistics(m, images, settings["BATCH_SIZE"]), images,
                                            held.labels)[0] for m in models["BN"]],
               "LN": [runner.accuracy(m, images, held.labels)[0] for m in models["LN"]],
               "GN": [runner.accuracy(m, images, held.labels)[0] for m in models["GN"]]}
        rows.append(dict(shift=shift, **runner.compare_ways(acc)))
    runner.verdicts([c for r in rows for c in r["against"].values()])
    return dict(rows=rows, seeds=len(models["BN"]), margin=runner.MARGIN)


def figure(results: dict) -> plt.Figure:
    rows = results["summary"]["rows"]
    return runner.ways_figure(rows, [r["shift"] for r in rows],
                              f"Shifted test digits: mean (bars) and {results['summary']['seeds']} seeds (dots)")


def tables(results: dict) -> list[str]:
    rows = results["summary"]["rows"]
    return [runner.ways_table(rows, "test digits", [r["shift"] for r in rows])]
