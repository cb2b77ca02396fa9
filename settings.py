"""Every setting of the study in one place: its name, default, what it may be and what it means (`SETTINGS`), and the
one check of what a person types (`check`), run before any work by the notebook (papermill's injected settings too)
and, through `check_study`, by every experiment.

The notebook's `parameters` cell sets the same names to the same defaults, in this order (papermill needs them there;
tests/test_settings.py holds the two equal). The experiments, `training.run_spec` and `store.load` start from
`defaults()` and `RECIPE`.
"""

import ast
import copy
import difflib
import os
import tempfile
from pathlib import Path

from checks import (canonical_norm, check_augmentation, check_device, check_dropout, check_ema_decay, check_groups,
                    check_limit, check_seed, finite_number, whole_number)

# name: (default, what it may be, what it means). DATA_ROOT's default is MNIST_ROOT where that is set.
SETTINGS = {
    "EPOCHS": (20, "a whole number >= 1", "epochs per model"),
    "SEED": (1, "a whole number from 0 to 2**32 - 1", "one seed for every model: initial draw, shuffling, augmentation"),
    "BATCH_SIZE": (128, "a whole number of images >= 1", "training images per step"),
    "TEST_BATCH_SIZE": (2000, "a whole number of images >= 1", "evaluation only: larger is faster, same numbers"),
    "MAX_LR": (0.02, "a finite number > 0", "OneCycle peak learning rate of AdamW"),
    "WEIGHT_DECAY": (1e-4, "a finite number >= 0", "AdamW's decoupled weight decay, every parameter"),
    "EMA_DECAY": (0.998, "None or a number in (0, 1)", "the model tested and kept: this moving average of the weights"),
    "L1_LAMBDA": (1e-5, "a finite number >= 0", "BatchNorm variants only: the loss adds L1_LAMBDA * sum |w|"),
    "GROUPS": (2, "a whole number dividing 8, 16, 32 and 48", "GroupNorm's groups where a run does not name them"),
    "DROPOUT": (0.0, "a number in [0, 1)", "after every block"),
    "AUGMENTATION": ({"degrees": 10.0, "translate": 0.1, "scale": 0.1}, "None, {} or degrees, translate and scale",
                     "rotation (degrees), shift (x image size), zoom (+-)"),
    "VARIANTS": ({"BN+L1": "B", "LN": "L", "GN": "G"}, "a dict of name (letters, digits, - _ +) -> B, L, G, I or N",
                 "the models the notebook trains, by the name its files and tables use"),
    "TRAIN_LIMIT": (None, "None or a whole number >= BATCH_SIZE", "first N training digits, None for all 60,000"),
    "TEST_LIMIT": (None, "None or a whole number >= 1", "first N held-out digits, None for all 10,000"),
    "DATA_ROOT": ("data", "a folder's path", "the folder that holds MNIST/raw"),
    "DEVICE": (None, "None or a device this machine has", "None: cuda, then mps, then cpu"),
    "OUT_DIR": (".", "a folder's path you can write to", "where a finished run's results/ and Images/ go"),
    "REPLACE_RESULTS": (False, "True, False or a list of settings, any but VARIANTS, DATA_ROOT and OUT_DIR",
                        "True: this run replaces OUT_DIR's results if at the committed study's settings; a list: "
                        "also where those listed differ"),
}
COLAB_SETTINGS = ("GITHUB_REPO", "GITHUB_BRANCH")  # the notebook's Colab cell sets these, before the parameters
WHERE = ("DATA_ROOT", "OUT_DIR", "REPLACE_RESULTS")  # where and whether, not what: no part of a run's record
# The settings that decide a stored run's numbers (a run's spec holds them by their lower-case names, GroupNorm's
# groups as `groups`), with the recipe's defaults
RECIPE = {name: SETTINGS[name][0] for name in ("EPOCHS", "BATCH_SIZE", "TEST_BATCH_SIZE", "MAX_LR", "WEIGHT_DECAY",
                                               "EMA_DECAY", "DROPOUT", "AUGMENTATION", "TRAIN_LIMIT", "TEST_LIMIT",
                                               "GROUPS")}
RECIPE_KEYS = tuple(name for name in RECIPE if name != "GROUPS")


def defaults() -> dict:
    """Every setting's default, as the notebook's parameters cell sets them (a fresh copy: change it freely)."""
    values = {name: copy.deepcopy(default) for name, (default, _, _) in SETTINGS.items()}
    values["DATA_ROOT"] = os.environ.get("MNIST_ROOT", values["DATA_ROOT"])
    return values


def recorded(names: dict) -> dict:
    """The settings among `names` that describe a run (every setting but WHERE's, the Colab cell's first), as the
    notebook records them beside each model."""
    return {name: names[name] for name in COLAB_SETTINGS + tuple(SETTINGS) if name in names and name not in WHERE}


def injected(names: dict) -> list[str]:
    """The names papermill's injected cell assigned (IPython's `In` history holds it: "# Parameters" then one
    assignment per name); [] outside IPython."""
    cells = [source for source in names.get("In", []) if isinstance(source, str) and source.startswith("# Parameters")]
    return [target.id for source in cells for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def check_study(variants: dict, epochs: int, max_lr: float, weight_decay: float, ema_decay: float | None,
                l1_lambda: float, groups: int, dropout: float, out_dir: str | os.PathLike) -> dict[str, str]:
    """Check the settings every experiment shares with the notebook (named as the notebook names them); ValueError on
    the first bad one. Writes a test file into OUT_DIR. Returns {variant: norm}."""
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"VARIANTS must be a non-empty dict of name -> norm, got {variants!r}")
    for name in variants:
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_+" for c in name):
            raise ValueError(f"VARIANTS: a name must be letters, digits, '-', '_' or '+' (it names files), got {name!r}")
    norms = {name: canonical_norm(norm) for name, norm in variants.items()}
    check_dropout(dropout)
    check_groups(groups)
    whole_number("EPOCHS", epochs, SETTINGS["EPOCHS"][1])
    finite_number("MAX_LR", max_lr, zero_ok=False)
    finite_number("WEIGHT_DECAY", weight_decay)
    finite_number("L1_LAMBDA", l1_lambda)
    check_ema_decay("EMA_DECAY", ema_decay)
    runs = Path(out_dir) / "runs"
    try:  # a probe of a name of its own, removed on closing: set-ups side by side never remove each other's
        runs.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs, prefix=".write-test.") as probe:
            probe.write(b"ok")
    except OSError as error:
        raise ValueError(f"OUT_DIR={str(out_dir)!r} is not writable ({error}); choose a folder you can write to") from None
    return norms


def check(names: dict) -> dict[str, str]:
    """Check every setting of the notebook before any work, from its globals() (papermill's cell of injected settings
    runs just before): a name papermill injected that is no setting, in any case (`-p max_lrr 0.5`), a name in
    capitals that is no setting, or a setting's name in other letters (`max_lr`), is a ValueError naming the nearest
    setting; so is a bad value, with the setting, its value and what is allowed. Returns check_study's
    {variant: norm}."""
    known = tuple(SETTINGS) + COLAB_SETTINGS
    suspects = {name: names.get(name) for name in injected(names)}
    suspects.update({name: value for name, value in names.items() if name.isupper() or name.upper() in known})
    for name, value in suspects.items():
        if name not in known:
            nearest = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f"did you mean {nearest[0]}?" if nearest else "no setting has a name close to it."
            raise ValueError(f"unknown setting {name}={value!r}: {hint} The settings are {', '.join(SETTINGS)}")
    missing = [name for name in SETTINGS if name not in names]
    if missing:
        raise ValueError(f"settings {missing} are not set: run the parameters cell first")
    check_seed("SEED", names["SEED"])
    whole_number("BATCH_SIZE", names["BATCH_SIZE"], SETTINGS["BATCH_SIZE"][1])
    whole_number("TEST_BATCH_SIZE", names["TEST_BATCH_SIZE"], SETTINGS["TEST_BATCH_SIZE"][1])
    check_augmentation("AUGMENTATION", names["AUGMENTATION"])
    check_limit("TRAIN_LIMIT", names["TRAIN_LIMIT"])
    check_limit("TEST_LIMIT", names["TEST_LIMIT"])
    if names["TRAIN_LIMIT"] is not None and names["TRAIN_LIMIT"] < names["BATCH_SIZE"]:
        raise ValueError(f"TRAIN_LIMIT={names['TRAIN_LIMIT']} is below BATCH_SIZE={names['BATCH_SIZE']}: training needs "
                         "at least one full batch; raise TRAIN_LIMIT (None for every digit) or lower BATCH_SIZE")
    check_device("DEVICE", names["DEVICE"], none_ok=True)
    for name in ("DATA_ROOT", "OUT_DIR"):
        if not isinstance(names[name], (str, os.PathLike)) or not str(names[name]):
            raise ValueError(f"{name} must be a folder's path, got {names[name]!r}")
    if Path(names["DATA_ROOT"]).exists() and not Path(names["DATA_ROOT"]).is_dir():
        raise ValueError(f"DATA_ROOT={str(names['DATA_ROOT'])!r} is a file: it must be the folder that holds MNIST/raw "
                         "(or one to download MNIST into)")
    return check_study(names["VARIANTS"], names["EPOCHS"], names["MAX_LR"], names["WEIGHT_DECAY"], names["EMA_DECAY"],
                       names["L1_LAMBDA"], names["GROUPS"], names["DROPOUT"], names["OUT_DIR"])
