"""The training path: what a run is and how it is trained, for the notebook and every experiment alike.

A run is described by its spec (`run_spec`): the norm and its settings, the L1 lambda, the seed, the data split, the
digits (`data`, a digest of the MNIST files) and the recipe. Its key (`key`) is the spec and TRAINING_VERSION, the
version of the code that trains and tests it: what a run computes, not where it ran. `train` trains and tests it and
returns the model and its record; store.py keeps such records (the run store), the notebook its history file.

    spec = training.run_spec(settings.RECIPE, "G", seed=3)
    model, record = training.train(spec)                # store.Store().put(record, model.state_dict()) keeps it
"""

import hashlib
import json
import os
import re
import time

import torch

import data
import records
import settings
import utils
from checks import (canonical_norm, check_augmentation, check_ema_decay, check_limit, check_net, check_seed,
                    finite_number, whole_number)
from model import Net

# The version of the training path: model.py's network (its widths: checks.py's WIDTHS), data.py's digits and
# augmentation, utils.py's optimiser, schedule, EMA, L1, train/test/fit and predict, and this module's fit_model. Bump
# it with any change that moves a number a run records: tests/test_golden.py trains a few steps of every norm through
# training.fit_model and fails until it is bumped and its values pinned again
# (`PYTHONPATH=. python tests/test_golden.py`). Moving code between files, comments, messages and figures leave it as
# it is.
TRAINING_VERSION = 1


# ---- The key: spec and training version ---------------------------------------------------------------------------

def run_spec(recipe: dict, norm: str, seed: int, l1_lambda: float = 0.0, groups: int | None = None,
             norm_batch: int | None = None, split: str = "test", **overrides) -> dict:
    """Everything a run's numbers depend on that a person chooses: the recipe from `recipe` (upper-case names as in
    settings.RECIPE; its DATA, the digest of the MNIST files, defaults to MNIST's original files), with `overrides`
    replacing any of them by its lower-case name (max_lr=0.04), and the run's own norm, seed, L1 lambda, GroupNorm
    groups, ghost-batch size and data split ("test" or "validation"). Each is checked: a ValueError names it."""
    norm = canonical_norm(norm)
    needed = settings.RECIPE_KEYS + (("GROUPS",) if groups is None and norm == "G" else ())
    missing = [name for name in needed if name not in recipe]
    if missing:
        raise ValueError(f"run_spec: the recipe lacks {missing}; it needs every setting of settings.RECIPE "
                         f"({', '.join(settings.RECIPE)}): start from {{**settings.RECIPE, ...}}")
    spec = {name.lower(): recipe[name] for name in settings.RECIPE_KEYS}
    unknown = set(overrides) - set(spec)
    if unknown:
        raise ValueError(f"unknown recipe setting(s) {sorted(unknown)}; allowed: {sorted(spec)}")
    spec.update(overrides)
    spec["data"] = recipe.get("DATA", data.MNIST_DIGEST)
    for name in ("epochs", "batch_size", "test_batch_size"):
        whole_number(name, spec[name], "a whole number >= 1")
    finite_number("max_lr", spec["max_lr"], zero_ok=False)
    finite_number("weight_decay", spec["weight_decay"])
    check_ema_decay("ema_decay", spec["ema_decay"])
    check_limit("train_limit", spec["train_limit"])
    check_limit("test_limit", spec["test_limit"])
    check_augmentation("augmentation", spec["augmentation"])
    check_seed("seed", seed)
    finite_number("l1_lambda", l1_lambda)
    if split not in data.SPLITS:
        raise ValueError(f"split must be one of {data.SPLITS}, got {split!r}")
    if not isinstance(spec["data"], str) or not re.fullmatch(r"[0-9a-f]{64}", spec["data"]):
        raise ValueError(f"data must be the SHA-256 digest of the MNIST files (data.mnist_digest), got {spec['data']!r}")
    if norm_batch is not None:
        whole_number("norm_batch", norm_batch, "None (the whole batch) or a whole number of images >= 1")
        if norm_batch >= spec["batch_size"]:
            raise ValueError(f"norm_batch={norm_batch} is not below the batch of {spec['batch_size']}: that is plain "
                             "BatchNorm over the whole batch, norm_batch=None; a ghost batch must be smaller")
    groups = recipe["GROUPS"] if norm == "G" and groups is None else groups  # one spec for the notebook's GN
    spec["augmentation"] = spec["augmentation"] or None  # None and {} are the same run: no augmentation
    spec.update(norm=norm, seed=seed, l1_lambda=float(l1_lambda), groups=groups, norm_batch=norm_batch, split=split)
    check_net(norm, groups, spec["dropout"], norm_batch)  # groups, dropout and the ghost batch against the norm
    return spec


def net(spec: dict) -> Net:
    """The network of the run `spec` describes (its norm, groups, dropout and ghost batch), freshly initialised from
    torch's random state: the one place a spec becomes a Net."""
    return Net(spec["norm"], groups=spec["groups"], dropout=spec["dropout"], norm_batch=spec["norm_batch"])


# A spec's fields besides the recipe's (settings.RECIPE_KEYS, by their lower-case names): what run_spec adds
RUN_FIELDS = ("norm", "seed", "l1_lambda", "groups", "norm_batch", "split", "data")


def identity(spec: dict) -> dict:
    """What a run computes: its spec and the version of the code that trains it."""
    return {"spec": spec, "training": TRAINING_VERSION}


def label(spec: dict) -> str:
    """The readable start of a run's file name: norm, groups, ghost batch, L1 lambda, seed and split."""
    return (spec["norm"] + (f"-g{spec['groups']}" if spec["groups"] else "")
            + (f"-k{spec['norm_batch']}" if spec["norm_batch"] else "")
            + (f"-l1-{spec['l1_lambda']:g}" if spec["l1_lambda"] else "") + f"-seed{spec['seed']}-{spec['split']}")


def key(spec: dict) -> str:
    """The run's file name in the store: its label, then the first 16 hex digits of its identity's SHA-256. A dict
    that is not a run spec (run_spec's fields, no more, no fewer) is a ValueError."""
    fields = {name.lower() for name in settings.RECIPE_KEYS} | set(RUN_FIELDS)
    if not isinstance(spec, dict) or spec.keys() != fields:
        given = set(spec) if isinstance(spec, dict) else set()
        raise ValueError(f"not a run spec: {str(spec)[:80]} (missing {sorted(fields - given)}, unknown "
                         f"{sorted(given - fields)}); build one with training.run_spec(settings.RECIPE, norm, seed, ...)")
    digest = hashlib.sha256(json.dumps(identity(spec), sort_keys=True).encode()).hexdigest()[:16]
    return f"{label(spec)}-{digest}"


# ---- The one training path -------------------------------------------------------------------------------------

_cache: dict = {}  # per process: the loaders of each data setting, built once


def loaders(spec: dict, device: torch.device | str, root: str | os.PathLike | None = None) -> tuple:
    """The spec's training and held-out loaders on `device`, built once per process and data setting. The MNIST files
    under `root` (else MNIST_ROOT, else ./data) must be the digits the spec names: else a ValueError."""
    found = data.mnist_digest(root)
    if found != spec["data"]:
        raise ValueError(f"the MNIST files under {data.mnist_root(root)} (digest {found[:12]}...) are not the digits this "
                         f"run was specified on (data {spec['data'][:12]}...); for these files, give their digest in the "
                         "recipe: run_spec({**recipe, 'DATA': data.mnist_digest(root)}, ...)")
    setting = tuple(json.dumps(spec[k]) for k in ("batch_size", "test_batch_size", "augmentation", "train_limit",
                                                   "test_limit", "split", "data")) + (str(device), str(root))
    if setting not in _cache:
        _cache[setting] = data.mnist_loaders(root, torch.device(device), spec["batch_size"], spec["test_batch_size"],
                                              spec["seed"], spec["augmentation"], spec["train_limit"], spec["test_limit"],
                                              spec["split"])
    return _cache[setting]


def fit_model(spec: dict, device: torch.device, root: str | os.PathLike | None = None,
              on_epoch=None, bars: bool = True) -> tuple[Net, list[dict], torch.Tensor]:
    """The computation a run is: from the spec's seed (weights, batches and augmentation), `utils.fit`, then the
    predictions for every held-out digit. Returns the trained model, its history and those predictions."""
    train_loader, held_loader = loaders(spec, device, root)
    utils.reseed(spec["seed"], train_loader)
    model = net(spec).to(device)
    history = utils.fit(model, train_loader, held_loader, device, spec["epochs"], spec["max_lr"], spec["weight_decay"],
                        spec["l1_lambda"], spec["ema_decay"], on_epoch, bars)
    return model, history, utils.predict(model, held_loader, device)


def train(spec: dict, device: torch.device | str = "cpu", root: str | os.PathLike | None = None,
          on_epoch=None, bars: bool = True) -> tuple[Net, dict]:
    """Train and test the run `spec` describes: the notebook's training cell and every experiment come through here.

    Returns the trained model and its record: key, identity, environment, seconds, the per-epoch history (its
    "test_*" numbers are on the held-out digits: the test set, or the validation digits with split "validation")
    and the predicted class of every held-out digit, as a string of digits. `on_epoch` and `bars` go to utils.fit.
    """
    device = torch.device(device)
    made_in = records.environment(device)  # at the start: the commit that trains, not one made while it trained
    start = time.perf_counter()
    model, history, predictions = fit_model(spec, device, root, on_epoch, bars)
    record = {"key": key(spec), "identity": identity(spec), "environment": made_in,
              "seconds": time.perf_counter() - start, "history": history,
              "predictions": "".join(map(str, predictions.tolist()))}
    return model, record
