"""The run store: what its key sees of the code, records that round-trip and are checked, and experiments that read
stored runs instead of training them again, locally or on a Dask cluster."""

import json
import os
import subprocess
import sys

import pytest
import torch

import settings
import store
import utils
from conftest import MNIST_ROOT, ROOT, needs_mnist
from experiments import l1, runner

SETTINGS = settings.RECIPE


def test_the_recipe_is_the_notebooks():
    """settings.RECIPE, where the experiments and store.load start, holds the notebook's parameters cell's values."""
    notebook = runner.notebook_settings()
    assert SETTINGS == {name: notebook[name] for name in SETTINGS}


def test_spec_is_canonical_and_checked():
    gn = store.run_spec(SETTINGS, "group", seed=1)
    assert gn["groups"] == 2 and gn["norm"] == "G" and gn["data"] == utils.MNIST_DIGEST
    assert store.key(gn) == store.key(store.run_spec(SETTINGS, "G", seed=1, groups=2))
    assert store.run_spec(SETTINGS, "L", seed=1)["groups"] is None
    plain = [store.key(store.run_spec({**SETTINGS, "AUGMENTATION": a}, "L", seed=1)) for a in (None, {})]
    assert plain[0] == plain[1]  # no augmentation, however it is said, is one run
    with pytest.raises(ValueError, match="norm_batch=128"):
        store.run_spec(SETTINGS, "B", seed=1, norm_batch=128)  # the whole batch is plain BN: one run, one label
    with pytest.raises(ValueError, match="max_lrr"):
        store.run_spec(SETTINGS, "B", seed=1, max_lrr=0.1)
    keys = {store.key(store.run_spec(SETTINGS, "B", seed=s)) for s in (1, 2)}
    keys |= {store.key(store.run_spec(SETTINGS, "B", seed=1, split="validation"))}
    keys |= {store.key(store.run_spec({**SETTINGS, "DATA": "0" * 64}, "B", seed=1))}
    assert len(keys) == 4


@pytest.mark.parametrize("field, value, message", [
    ("seed", "1/../../../x", "seed must be a whole number"), ("seed", -1, "seed must be"),
    ("split", "../test", "split must be one of"), ("norm_batch", "4/..", "norm_batch must be"),
    ("groups", 3, "groups=3 does not divide"), ("l1_lambda", float("nan"), "l1_lambda must be a finite"),
])
def test_spec_fields_that_could_name_a_path_or_a_wrong_run_are_refused(field, value, message):
    arguments = {"norm": "G" if field == "groups" else "B", "seed": 1, field: value}
    with pytest.raises(ValueError, match=message):
        store.run_spec(SETTINGS, **arguments)


def test_key_is_what_a_run_computes_not_where(monkeypatch):
    spec = store.run_spec(SETTINGS, "B", seed=1)
    before = store.key(spec)
    monkeypatch.setattr(torch, "__version__", "9.9.9+other")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    monkeypatch.setattr(utils, "cpu_name", lambda: "another CPU")
    assert store.key(spec) == before  # another torch, thread count or CPU: the same run
    monkeypatch.setattr(store, "TRAINING_VERSION", store.TRAINING_VERSION + 1)
    assert store.key(spec) != before  # another training version: another run


def test_a_refactor_that_moves_training_code_keeps_every_key(tmp_path):
    """Move the weight EMA and the L1 penalty out of utils.py into a module of their own, as a code split would: every
    committed record's key, computed from that copy of the code, is the same."""
    for name in ("model.py", "utils.py", "store.py", "settings.py"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    source = (tmp_path / "utils.py").read_text()
    moved = [source[source.index(start):source.index(end)] for start, end in
             (("def l1_penalty(", "class WeightEMA"), ("class WeightEMA", "CHECK_EVERY = "))]
    for part in moved:
        source = source.replace(part, "")
    source = source.replace("from model import", "from engine import WeightEMA, l1_penalty\nfrom model import", 1)
    (tmp_path / "utils.py").write_text(source)
    (tmp_path / "engine.py").write_text("import copy\n\nimport torch\nimport torch.nn as nn\n\n\n" + "".join(moved)
                                        .replace("check_ema_decay(", "(lambda *a, **k: None)("))
    specs = [r["identity"]["spec"] for r in committed_records()]
    script = ("import json, sys, store, utils, engine; assert 'WeightEMA' not in vars(utils) or utils.WeightEMA is "
              "engine.WeightEMA; print(json.dumps([store.key(s) for s in json.load(sys.stdin)]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, input=json.dumps(specs), capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=True).stdout
    assert json.loads(out) == [r["key"] for r in committed_records()]


def committed_records() -> list[dict]:
    return [store.Store().read(path)[0] for path in sorted(store.STORE.glob("*.safetensors"))]


def test_every_committed_record_is_under_its_key():
    records = committed_records()
    assert len(records) >= 118
    for record in records:
        assert record["key"] == store.key(record["identity"]["spec"]) and record["identity"]["training"] == \
            store.TRAINING_VERSION


def fake_record(spec: dict) -> tuple[dict, dict]:
    model = torch.nn.Linear(3, 2)
    record = {"key": store.key(spec), "identity": store.identity(spec), "environment": {"git_commit": "abc"},
              "seconds": 1.5, "history": [{"epoch": 1, "test_acc": 50.0}], "predictions": "0123456789"}
    return record, model.state_dict()


def test_record_round_trips_and_damage_is_caught(tmp_path):
    runs = store.Store(tmp_path)
    spec = store.run_spec(SETTINGS, "B", seed=1)
    record, tensors = fake_record(spec)
    path = runs.put(record, tensors)
    got, got_tensors = runs.get(spec)
    assert got == record and all(torch.equal(got_tensors[k], tensors[k]) for k in tensors)
    data = bytearray(path.read_bytes())
    data[-3] ^= 1  # one flipped bit in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(store.CorruptRecord, match="SHA-256"):
        runs.read(path)
    with pytest.warns(RuntimeWarning, match="trained again"):
        assert runs.get(spec) is None  # reported, set aside, and missing: the experiment trains it again
    assert path.with_name(path.name + ".corrupt").exists() and not path.exists()
    runs.put(record, tensors)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(store.CorruptRecord, match="not a whole record"):
        runs.read(path)


def test_non_finite_numbers_never_enter_the_store(tmp_path):
    spec = store.run_spec(SETTINGS, "B", seed=1)
    record, tensors = fake_record(spec)
    record["history"][0]["test_acc"] = float("nan")
    with pytest.raises(ValueError):
        store.Store(tmp_path).put(record, tensors)
    assert not list(tmp_path.iterdir())


def test_committed_store_refuses_runs_from_uncommitted_code(monkeypatch, tmp_path):
    monkeypatch.setattr(utils, "git_commit", lambda: "0123abc+changes")
    monkeypatch.setattr(runner, "ensure", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match="uncommitted changes"):
        runner.execute(l1, True, 1, tmp_path, store.STORE)
    with pytest.raises(ValueError, match="uncommitted changes"):
        runner.execute(l1, True, 1, ROOT, tmp_path / "store")


def strip_times(record: dict) -> dict:
    """A record without what differs between two runs of the same computation: times and where it ran."""
    return {**record, "seconds": None, "environment": None,
            "history": [{k: v for k, v in e.items() if k != "seconds"} for e in record["history"]]}


@pytest.mark.slow
@needs_mnist
def test_rerun_trains_nothing_and_a_stopped_one_trains_only_the_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_ROOT", str(MNIST_ROOT))
    first = runner.execute(l1, True, 2, tmp_path / "out", tmp_path / "store")
    assert "0 of 4 runs read" in capsys.readouterr().out
    again = runner.execute(l1, True, 2, tmp_path / "out", tmp_path / "store")
    assert "4 of 4 runs read" in capsys.readouterr().out and again == first
    stored = sorted((tmp_path / "store").glob("*.safetensors"))
    stored[1].unlink()  # as if the experiment had been stopped before this run finished
    third = runner.execute(l1, True, 2, tmp_path / "out", tmp_path / "store")
    assert "3 of 4 runs read from" in capsys.readouterr().out and stored[1].exists()
    assert [r["test_acc"] for r in third["runs"]] == [r["test_acc"] for r in first["runs"]]  # retrained bit for bit


@pytest.mark.slow
@needs_mnist
def test_dask_cluster_stores_the_same_runs_bit_for_bit(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("MNIST_ROOT", str(MNIST_ROOT))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers import the repository's modules, as in the README
    local = runner.execute(l1, True, 2, tmp_path / "local", tmp_path / "local-store")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = runner.execute(l1, True, 2, tmp_path / "dask", tmp_path / "dask-store", cluster.scheduler_address)
    assert remote["summary"] == local["summary"]
    for path in (tmp_path / "local-store").glob("*.safetensors"):
        a, ta = store.Store(path.parent).read(path)
        b, tb = store.Store(tmp_path / "dask-store").read(tmp_path / "dask-store" / path.name)
        assert strip_times(a) == strip_times(b) and b["identity"]["threads"] == 1
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_a_failed_run_is_reported_and_the_others_are_stored(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import contextmanager

    specs = [store.run_spec(SETTINGS, "B", seed=s) for s in (1, 2, 3)]

    def train(spec):
        if spec["seed"] == 2:
            raise FloatingPointError("non-finite training loss")
        record, tensors = fake_record(spec)
        return {**record, "key": "another-key"} if spec["seed"] == 3 else record, tensors

    monkeypatch.setattr(store, "train_for_store", train)
    monkeypatch.setattr(runner, "executor", contextmanager(lambda jobs, scheduler: (yield ThreadPoolExecutor(1))))
    with pytest.raises(RuntimeError, match=r"2 of 3 runs failed.*FloatingPointError.*another-key"):
        runner.ensure(specs, store.Store(tmp_path))
    assert [p.name for p in tmp_path.glob("*.safetensors")] == [store.key(specs[0]) + ".safetensors"]
