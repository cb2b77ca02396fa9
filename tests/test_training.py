"""The training path's spec and key (training.py): every field checked, one key per run, and a key that is what a
run computes, not where it ran."""

import pytest
import torch

import data
import records
import settings
import training

SETTINGS = settings.RECIPE


def test_spec_is_canonical_and_checked():
    gn = training.run_spec(SETTINGS, "group", seed=1)
    assert gn["groups"] == 2 and gn["norm"] == "G" and gn["data"] == data.MNIST_DIGEST
    assert training.key(gn) == training.key(training.run_spec(SETTINGS, "G", seed=1, groups=2))
    assert training.run_spec(SETTINGS, "L", seed=1)["groups"] is None
    plain = [training.key(training.run_spec({**SETTINGS, "AUGMENTATION": a}, "L", seed=1)) for a in (None, {})]
    assert plain[0] == plain[1]  # no augmentation, however it is said, is one run
    with pytest.raises(ValueError, match="norm_batch=128"):
        training.run_spec(SETTINGS, "B", seed=1, norm_batch=128)  # the whole batch is plain BN: one run, one label
    with pytest.raises(ValueError, match="max_lrr"):
        training.run_spec(SETTINGS, "B", seed=1, max_lrr=0.1)
    keys = {training.key(training.run_spec(SETTINGS, "B", seed=s)) for s in (1, 2)}
    keys |= {training.key(training.run_spec(SETTINGS, "B", seed=1, split="validation"))}
    keys |= {training.key(training.run_spec({**SETTINGS, "DATA": "0" * 64}, "B", seed=1))}
    assert len(keys) == 4


@pytest.mark.parametrize("norm, missing", [("B", "EPOCHS"), ("L", "TRAIN_LIMIT"), ("G", "GROUPS")])
def test_a_recipe_without_a_setting_is_named(norm, missing):
    recipe = {name: value for name, value in SETTINGS.items() if name != missing}
    with pytest.raises(ValueError, match=rf"^run_spec: the recipe lacks \['{missing}'\]; it needs every setting"):
        training.run_spec(recipe, norm, seed=1)


@pytest.mark.parametrize("field, value, message", [
    ("seed", "1/../../../x", "seed must be a whole number"), ("seed", -1, "seed must be"),
    ("split", "../test", "split must be one of"), ("norm_batch", "4/..", "norm_batch must be"),
    ("groups", 3, "groups=3 does not divide"), ("l1_lambda", float("nan"), "l1_lambda must be a finite"),
])
def test_spec_fields_that_could_name_a_path_or_a_wrong_run_are_refused(field, value, message):
    arguments = {"norm": "G" if field == "groups" else "B", "seed": 1, field: value}
    with pytest.raises(ValueError, match=message):
        training.run_spec(SETTINGS, **arguments)


def test_key_is_what_a_run_computes_not_where(monkeypatch):
    spec = training.run_spec(SETTINGS, "B", seed=1)
    before = training.key(spec)
    monkeypatch.setattr(torch, "__version__", "9.9.9+other")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    monkeypatch.setattr(records, "cpu_name", lambda: "another CPU")
    assert training.key(spec) == before  # another torch, thread count or CPU: the same run
    monkeypatch.setattr(training, "TRAINING_VERSION", training.TRAINING_VERSION + 1)
    assert training.key(spec) != before  # another training version: another run
