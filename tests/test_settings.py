"""settings.py: every setting's default, the notebook's parameters cell held equal to them, and the one check of what
a person types (names, values, papermill's injected names), before any work."""

from pathlib import Path

import nbformat
import pytest
import torch

import records
import settings
from conftest import ROOT, raises

NOTEBOOK = ROOT / "S6_Normalization.ipynb"


def parameters_cell() -> str:
    return next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))


def test_the_parameters_cell_sets_every_default_in_order(monkeypatch):
    """The notebook's parameters cell (papermill's) and settings.SETTINGS are one definition: same names, same order,
    same values; DATA_ROOT is MNIST_ROOT where that is set, in both."""
    for root in (None, "/some/where"):
        if root is None:
            monkeypatch.delenv("MNIST_ROOT", raising=False)
        else:
            monkeypatch.setenv("MNIST_ROOT", root)
        names: dict = {}
        exec(parameters_cell(), names)
        cell = {name: value for name, value in names.items() if name.isupper()}
        assert list(cell) == list(settings.SETTINGS)
        assert cell == settings.defaults()
    assert settings.RECIPE == {name: settings.defaults()[name] for name in settings.RECIPE}


def test_defaults_are_a_fresh_copy():
    settings.defaults()["AUGMENTATION"]["degrees"] = 99
    assert settings.defaults()["AUGMENTATION"]["degrees"] == 10.0 == settings.SETTINGS["AUGMENTATION"][0]["degrees"]


def test_recorded_keeps_what_the_committed_history_records():
    """The settings the notebook records beside each model are those results/history.json holds, in its order (a run
    whose record differs would never be taken for the committed study)."""
    committed = next(iter(records.load_history(ROOT / "results" / "history.json").values()))["settings"]
    names = {**settings.defaults(), **committed, "os": object(), "In": [], "modules": "model.py"}
    assert list(settings.recorded(names)) == list(committed)


# ---- The notebook's settings, checked before any training (settings.check_study) --------------------------------------

GOOD = dict(variants={"BN": "B", "LN": "L", "GN": "G"}, epochs=20, max_lr=0.02, weight_decay=1e-4, ema_decay=0.998,
            l1_lambda=1e-5, groups=2, dropout=0.0)


@pytest.mark.parametrize("setting, value, named", [
    ("variants", {}, "VARIANTS"), ("variants", "B", "VARIANTS"), ("variants", {"B N": "B"}, "'B N'"),
    ("variants", {"BN": "X"}, "'X'"), ("groups", 3, "groups=3"), ("groups", None, "groups"), ("groups", "2", "groups"), ("groups", 2.0, "groups"),
    ("groups", True, "groups"), ("dropout", "a", "dropout"), ("dropout", 1.5, "dropout"), ("epochs", 0, "EPOCHS"),
    ("epochs", 2.5, "EPOCHS"), ("epochs", True, "EPOCHS"), ("max_lr", 0, "MAX_LR"), ("max_lr", float("nan"), "MAX_LR"),
    ("max_lr", float("inf"), "MAX_LR"), ("max_lr", "0.1", "MAX_LR"), ("weight_decay", -1e-4, "WEIGHT_DECAY"),
    ("l1_lambda", float("nan"), "L1_LAMBDA"), ("ema_decay", 1.0, "EMA_DECAY"), ("ema_decay", 0, "EMA_DECAY"),
])
def test_check_study_names_the_bad_setting(tmp_path, setting, value, named):
    with raises(ValueError, named):
        settings.check_study(**{**GOOD, setting: value}, out_dir=tmp_path)
    assert not (tmp_path / "results").exists()


def test_check_study_decides_l1_by_the_canonical_norm(tmp_path):
    # "batch" is BatchNorm: the BN variant trains with L1 whatever spelling VARIANTS uses
    assert settings.check_study(**{**GOOD, "variants": {"BN": "batch", "GN": "group"}}, out_dir=tmp_path) == {"BN": "B", "GN": "G"}


def test_check_study_refuses_an_out_dir_that_cannot_hold_files(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with raises(ValueError, "OUT_DIR", "a file"):
        settings.check_study(**GOOD, out_dir=blocker)


def notebook_settings(out_dir: Path, **changes) -> dict:
    """The notebook's globals as its cell 3 sees them: the parameters cell run as written, the Colab cell's names,
    OUT_DIR in a temporary folder, and `changes` on top (as papermill's injected cell would make them)."""
    names = {"GITHUB_REPO": "OWNER/REPO", "GITHUB_BRANCH": "main"}
    exec(parameters_cell(), names)
    return {**names, "OUT_DIR": str(out_dir), **changes}


def test_check_takes_the_parameters_cell_as_written(tmp_path):
    assert settings.check(notebook_settings(tmp_path)) == {"BN+L1": "B", "LN": "L", "GN": "G"}


@pytest.mark.parametrize("name, value, parts", [
    ("MAX_LRR", 0.5, ["unknown setting MAX_LRR=0.5", "did you mean MAX_LR?", "EPOCHS, SEED"]),
    ("EPOCH", 1, ["unknown setting EPOCH=1", "did you mean EPOCHS?"]),
    ("max_lr", 0.5, ["unknown setting max_lr=0.5", "did you mean MAX_LR?"]),
    ("TRAIN_LIMT", 100, ["did you mean TRAIN_LIMIT?"]),
    ("XYZZY", 1, ["unknown setting XYZZY=1", "no setting has a name close to it"]),
])
def test_check_names_the_setting_a_typo_meant(tmp_path, name, value, parts):
    with raises(ValueError, *parts):
        settings.check(notebook_settings(tmp_path, **{name: value}))


@pytest.mark.parametrize("setting, value, parts", [
    ("SEED", -1, ["SEED must be a whole number from 0 to 2**32 - 1", "-1"]), ("SEED", 2**32, ["SEED", "4294967296"]),
    ("SEED", 1.5, ["SEED", "1.5"]), ("SEED", "1", ["SEED", "'1'"]), ("SEED", None, ["SEED", "None"]),
    ("BATCH_SIZE", 0, ["BATCH_SIZE must be a whole number", "0"]), ("TEST_BATCH_SIZE", 2.5, ["TEST_BATCH_SIZE", "2.5"]),
    ("AUGMENTATION", "yes", ["AUGMENTATION must be None or {} (no augmentation)", "'yes'"]),
    ("AUGMENTATION", {"degrees": 10}, ["AUGMENTATION must be", "exactly the keys degrees, translate, scale"]),
    ("AUGMENTATION", {"degrees": 10, "translate": 0.1, "scale": 1.0}, ["AUGMENTATION: scale must be a number from 0 to 1"]),
    ("AUGMENTATION", {"degrees": 360, "translate": 0.1, "scale": 0.1}, ["AUGMENTATION: degrees", "180", "360"]),
    ("AUGMENTATION", {"degrees": 10, "translate": 0.5, "scale": 0.1}, ["AUGMENTATION: translate", "0.5 (excluded"]),
    ("TRAIN_LIMIT", 0, ["TRAIN_LIMIT must be None (every digit) or a whole number", "0"]),
    ("TRAIN_LIMIT", "100", ["TRAIN_LIMIT", "'100'"]), ("TEST_LIMIT", -1, ["TEST_LIMIT", "-1"]),
    ("TRAIN_LIMIT", 100, ["TRAIN_LIMIT=100 is below BATCH_SIZE=128"]),
    ("DEVICE", "gpu", ["DEVICE must be None", "['cpu'", "'gpu'"]), ("DEVICE", 0, ["DEVICE must be None", "0"]),
    ("DATA_ROOT", 5, ["DATA_ROOT must be a folder's path", "5"]), ("DATA_ROOT", "", ["DATA_ROOT", "''"]),
    ("DATA_ROOT", str(ROOT / "README.md"), ["DATA_ROOT=", "README.md' is a file"]),
    ("OUT_DIR", None, ["OUT_DIR must be a folder's path", "None"]),
    ("EPOCHS", "20", ["EPOCHS", "'20'"]), ("VARIANTS", {}, ["VARIANTS"]), ("EMA_DECAY", "0.998", ["EMA_DECAY", "'0.998'"]),
])
def test_check_names_each_bad_setting(tmp_path, monkeypatch, setting, value, parts):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with raises(ValueError, *parts):
        settings.check(notebook_settings(tmp_path, **{setting: value}))
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_check_needs_every_setting(tmp_path):
    names = notebook_settings(tmp_path)
    del names["SEED"]
    with raises(ValueError, "['SEED'] are not set"):
        settings.check(names)


@pytest.mark.parametrize("injected, parts", [
    ("max_lrr = 0.5", ["unknown setting max_lrr=0.5", "did you mean MAX_LR?"]),
    ("lr = 0.1", ["unknown setting lr=0.1"]),
    ("seed_ = 3", ["unknown setting seed_=3", "did you mean SEED?"]),
    ("EPOCHS = 2\nbatch = 64", ["unknown setting batch=64", "did you mean BATCH_SIZE?"]),
])
def test_check_names_every_name_papermill_injects_that_is_no_setting(tmp_path, injected, parts):
    """papermill's injected cell ("# Parameters", then one assignment per -p) is in IPython's In history: each name it
    assigns must be a setting, whatever its case."""
    names = notebook_settings(tmp_path)
    exec(injected, names)
    names["In"] = ["", "# Colab set-up", "import os", f"# Parameters\n{injected}\n"]
    with raises(ValueError, *parts):
        settings.check(names)


def test_check_takes_injected_settings_and_the_notebooks_own_lower_case_names(tmp_path):
    names = {**notebook_settings(tmp_path, EPOCHS=2), "modules": "model.py", "url": "https://example.org/repo"}
    names["In"] = ["", "modules = 'model.py'", "# Parameters\nEPOCHS = 2\n"]
    assert settings.check(names) == {"BN+L1": "B", "LN": "L", "GN": "G"}
