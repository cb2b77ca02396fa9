"""What every experiment shares: the notebook's recipe, independent runs in parallel processes, safe writes, statistics.

- recipe: `notebook_settings()` reads the notebook's `parameters` cell, the one place the study's settings live;
- runs: `train_one(spec)` trains and tests one model in a worker process; `run_all(specs, jobs)` runs many, one CPU
  thread each, and logs each finished run to runs/ so that an interrupted experiment keeps what it finished;
- evaluations: BatchNorm with the statistics of groups of test digits or recomputed ones; test-batch invariance;
- statistics: mean and spread over seeds, the standard error of one accuracy, exact McNemar, paired t-test;
- records: `utils.write_json` and `save_figure` replace a committed file only once the new one is complete.
"""

import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

import nbformat
import papermill
import torch
from scipy import stats

import utils
from model import Net

ROOT = utils.ROOT
NOTEBOOK = ROOT / "S6_Normalization.ipynb"
RUNS = ROOT / "runs"  # per-run logs and executed notebooks of the experiments (not committed)
TEST_DIGITS = 10_000
LABELS = {"B": "BatchNorm + L1", "L": "LayerNorm", "G": "GroupNorm (2 groups)"}  # the notebook's variants, in tables
# --quick: a smoke run, one epoch on 2,048 digits in batches of 32 (64 steps: enough to leave chance level)
QUICK = dict(EPOCHS=1, TRAIN_LIMIT=2048, TEST_LIMIT=500, BATCH_SIZE=32)


# ---- Recipe ------------------------------------------------------------------------------------------------------

def notebook_settings() -> dict:
    """The settings of the notebook's `parameters` cell (EPOCHS, SEED, BATCH_SIZE, MAX_LR, ...), as it defines them."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cell.source, namespace)
    return {name: value for name, value in namespace.items() if name.isupper()}


# ---- Runs --------------------------------------------------------------------------------------------------------

_data: dict = {}  # per worker process: the loaders for the settings it has seen, built once


def _loaders(settings: dict) -> tuple[utils.TensorLoader, utils.TensorLoader]:
    key = json.dumps([settings[k] for k in ("DATA_ROOT", "TRAIN_LIMIT", "TEST_LIMIT", "BATCH_SIZE", "TEST_BATCH_SIZE",
                                            "SEED", "AUGMENTATION")])
    if key not in _data:
        _data[key] = utils.mnist_loaders(settings["DATA_ROOT"], torch.device("cpu"), settings["BATCH_SIZE"],
                                         settings["TEST_BATCH_SIZE"], settings["SEED"], settings["AUGMENTATION"],
                                         settings["TRAIN_LIMIT"], settings["TEST_LIMIT"])
    return _data[key]


def build(spec: dict) -> Net:
    """The network a run spec names: norm, and optionally groups and norm_batch."""
    return Net(spec["norm"], groups=spec.get("groups", 2), dropout=spec["settings"]["DROPOUT"],
               norm_batch=spec.get("norm_batch"))


def train_one(spec: dict) -> dict:
    """Train one model with the notebook's recipe and evaluate it.

    spec = {"settings": the recipe, "norm", "seed", optional "groups", "norm_batch", and "evaluations": names in
    EVALUATIONS with their arguments}; any other key is a label, copied into the result.
    """
    s = spec["settings"]
    device = torch.device("cpu")
    train_loader, test_loader = _loaders(s)
    utils.reseed(spec["seed"], train_loader)
    model = build(spec)
    start = time.perf_counter()
    l1_lambda = s["L1_LAMBDA"] if model.norm == "B" else 0.0  # as in the notebook: BN trains with L1
    history = utils.fit(model, train_loader, test_loader, device, s["EPOCHS"], s["MAX_LR"], s["WEIGHT_DECAY"],
                        l1_lambda, s["EMA_DECAY"])
    result = {key: value for key, value in spec.items() if key != "settings"}
    result.update(test_acc=history[-1]["test_acc"], test_loss=history[-1]["test_loss"],
                  seconds=time.perf_counter() - start, history=history)
    for name, argument in spec.get("evaluations", {}).items():
        result[name] = EVALUATIONS[name](model, argument, train_loader, test_loader, device)
    return result


def _worker_init() -> None:
    torch.set_num_threads(1)  # the runs share the cores: one thread each


def run_all(specs: list[dict], jobs: int, name: str) -> list[dict]:
    """Run every spec, `jobs` processes at a time, one CPU thread each; results in the order of `specs`.

    Each finished run is appended to runs/<name>-<time>.jsonl as it comes in, so an interrupted experiment keeps
    its finished runs there; the committed results are only written by the caller once all have finished.
    """
    for spec in specs:
        build(spec)  # every setting checked before the first training step: a bad one raises here, not minutes later
    RUNS.mkdir(exist_ok=True)
    log = RUNS / f"{name}-{datetime.now():%Y%m%d-%H%M%S}.jsonl"
    with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool, log.open("a") as out:
        futures = [pool.submit(train_one, spec) for spec in specs]
        for done, future in enumerate(as_completed(futures), 1):  # logged as they finish
            result = future.result()
            out.write(json.dumps(result) + "\n")
            out.flush()
            described = ", ".join(f"{k}={v}" for k, v in result.items() if k in ("norm", "groups", "norm_batch", "seed"))
            print(f"[{done}/{len(specs)}] {described}: test acc {result['test_acc']:.2f}%, {result['seconds']:.0f} s",
                  flush=True)
    return [future.result() for future in futures]


def run_notebooks(jobs_list: list[tuple[str, dict]], jobs: int, name: str) -> dict[str, dict]:
    """Execute the notebook once per (label, parameters) with papermill, `jobs` at a time, one CPU thread each.

    Each run writes into runs/<name>-<time>/<label>/ (its OUT_DIR) and leaves its executed notebook beside it, the
    record of the run; returns {label: its history file}. A failing run raises, naming the cell (papermill).
    """
    folder = RUNS / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True)
    os.environ.update(OMP_NUM_THREADS="1", TQDM_DISABLE="1")  # inherited by the kernels

    def one(label: str, parameters: dict) -> dict:
        out = folder / label
        papermill.execute_notebook(NOTEBOOK, folder / f"{label}.ipynb", parameters={**parameters, "OUT_DIR": str(out)},
                                   cwd=ROOT, kernel_name="python3", progress_bar=False)
        print(f"{label}: done", flush=True)
        return utils.load_history(out / "results" / "history.json")

    with ThreadPoolExecutor(jobs) as pool:
        futures = {label: pool.submit(one, label, parameters) for label, parameters in jobs_list}
        return {label: future.result() for label, future in futures.items()}


# ---- Evaluation --------------------------------------------------------------------------------------------------

def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> tuple[float, torch.Tensor]:
    """Accuracy (%) and predictions of `model` as it is (train or eval mode), fed `batch` images at a time."""
    with torch.no_grad():
        predictions = torch.cat([model(images[i : i + batch]).argmax(dim=1) for i in range(0, len(images), batch)])
    return 100.0 * (predictions == labels).sum().item() / len(labels), predictions


def batch_statistics(model: Net, sizes: list[int], train_loader, test_loader, device) -> dict[str, float]:
    """Test accuracy (%) of a BatchNorm model normalised with the statistics of each group of k test digits, as in
    training, instead of its running statistics, for each k in `sizes`: on a copy in train mode, with ghost batches
    of k (the same state dict), so the model and its running statistics are untouched."""
    accuracies = {}
    for k in sizes:
        ghost = Net("B", norm_batch=k).to(device)
        ghost.load_state_dict(model.state_dict())
        ghost.train()
        ghost.dropout.p = 0.0
        chunk = k * max(1, 1000 // k)  # whole groups of k per forward pass
        accuracies[str(k)] = _accuracy(ghost, test_loader.images.to(device), test_loader.labels.to(device), chunk)[0]
    return accuracies


def recomputed_statistics(model: Net, batch: int, train_loader, test_loader, device) -> dict:
    """Test accuracy (%) after BatchNorm's statistics are recomputed as the average over all the clean (not
    augmented) training digits in batches of `batch` (torch.optim.swa_utils.update_bn), on a copy."""
    copy_ = Net("B").to(device)
    copy_.load_state_dict(model.state_dict())
    clean = utils.TensorLoader(train_loader.images, train_loader.labels, batch, shuffle=False)
    torch.optim.swa_utils.update_bn(clean, copy_, device)
    copy_.eval()
    accuracy = _accuracy(copy_, test_loader.images.to(device), test_loader.labels.to(device), 1000)[0]
    return {"test_acc": accuracy, "digits": len(clean.images)}


def test_batch_invariance(model: Net, sizes: list[int], train_loader, test_loader, device) -> dict:
    """In eval mode, the accuracy at each test batch size and the number of test digits whose prediction differs
    from that at the first size: 0 when the model treats each image on its own."""
    model.eval()
    images, labels = test_loader.images.to(device), test_loader.labels.to(device)
    runs = {k: _accuracy(model, images, labels, k) for k in sizes}
    first = runs[sizes[0]][1]
    return {str(k): {"test_acc": acc, "changed": int((predictions != first).sum())} for k, (acc, predictions) in runs.items()}


test_batch_invariance.__test__ = False  # not a pytest test

EVALUATIONS = {"batch_statistics": batch_statistics, "recomputed_statistics": recomputed_statistics,
               "test_batch_invariance": test_batch_invariance}


# ---- Statistics --------------------------------------------------------------------------------------------------

def standard_error(accuracy: float, n: int = TEST_DIGITS) -> float:
    """Standard error (points) of one accuracy (%) measured on n digits: sqrt(p (1 - p) / n)."""
    p = accuracy / 100
    return 100 * math.sqrt(p * (1 - p) / n)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def test_labels(settings: dict) -> str:
    """The test labels the settings' runs were tested on, as a string of digits (to compare predictions with)."""
    _, labels = utils.load_mnist(settings["DATA_ROOT"], train=False, limit=settings["TEST_LIMIT"])
    return "".join(map(str, labels.tolist()))


test_labels.__test__ = False  # not a pytest test


def mcnemar(predictions_a: str, predictions_b: str, labels: str) -> dict:
    """Exact McNemar test of two models on the same digits: b = digits only A gets right, c = only B; the p-value
    (two-sided) is that of b successes in b + c fair coin flips."""
    b = sum(pa == y != pb for pa, pb, y in zip(predictions_a, predictions_b, labels))
    c = sum(pb == y != pa for pa, pb, y in zip(predictions_a, predictions_b, labels))
    return {"only_a": b, "only_b": c, "p": float(stats.binomtest(b, b + c).pvalue) if b + c else 1.0}


def paired_t(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of a paired t-test of a against b (one pair per seed); None with fewer than two pairs."""
    if len(a) < 2:
        return None
    if all(x == y for x, y in zip(a, b)):
        return 1.0
    return float(stats.ttest_rel(a, b).pvalue)


def p_value(p: float | None) -> str:
    """A p-value for a table: three decimals, "< 0.001" below that, "-" where there is none (one seed)."""
    return "-" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


# ---- Records -----------------------------------------------------------------------------------------------------

def record(name: str, settings: dict, jobs: int, seconds: float, **parts) -> dict:
    """The results file's content: what was run, how (settings, environment, jobs) and how long it took."""
    return {"experiment": name, "settings": settings,
            "environment": {**utils.environment("cpu"), "threads": 1, "jobs": jobs}, "seconds": seconds, **parts}


def save_figure(fig, path: Path) -> None:
    """Save a figure, replacing `path` only once it is complete."""
    utils.replace_file(path, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))


def settings_for(quick: bool, **overrides) -> dict:
    """The notebook's settings with an experiment's overrides, and QUICK's on top with --quick."""
    return {**notebook_settings(), **overrides, **(QUICK if quick else {})}


def replot(experiment, out_dir: Path) -> None:
    """Redraw an experiment's figure and reprint its tables from its results JSON, without training anything."""
    results = json.loads((out_dir / "results" / f"{experiment.NAME}.json").read_text())
    save_figure(experiment.figure(results), out_dir / "Images" / f"{experiment.NAME}.png")
    print("\n\n".join(experiment.tables(results)))


def execute(experiment, quick: bool, jobs: int, out_dir: Path) -> dict:
    """Run an experiment module end to end: its runs, then results/<NAME>.json and Images/<NAME>.png under out_dir.

    The module gives NAME, SEEDS, OVERRIDES (settings that differ from the notebook's), runs(settings, seeds, jobs),
    summarise(runs, settings), figure(results) and tables(results), the README's tables. --quick runs the first seed only.
    """
    settings = settings_for(quick, **experiment.OVERRIDES)
    utils.check_study(settings["VARIANTS"], settings["EPOCHS"], settings["MAX_LR"], settings["WEIGHT_DECAY"],
                      settings["EMA_DECAY"], settings["L1_LAMBDA"], settings["GROUPS"], settings["DROPOUT"], out_dir)
    start = time.perf_counter()
    runs = experiment.runs(settings, experiment.SEEDS[:1] if quick else experiment.SEEDS, jobs)
    results = record(experiment.NAME, settings, jobs, time.perf_counter() - start,
                     summary=experiment.summarise(runs, settings), runs=runs)
    utils.write_json(out_dir / "results" / f"{experiment.NAME}.json", results)
    save_figure(experiment.figure(results), out_dir / "Images" / f"{experiment.NAME}.png")
    print("\n\n".join(experiment.tables(results)))
    print(f"{experiment.NAME}: {len(runs)} runs in {results['seconds']:.0f} s")
    return results
