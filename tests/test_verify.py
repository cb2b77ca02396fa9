"""`python -m experiments verify`: which stored runs it retrains, how it compares a retrained run with its record,
and where it may keep the retrained runs. Training is replaced by a copy of the record (or a changed copy)."""

import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import torch

import settings
import store
import training
from conftest import ELSEWHERE
from experiments import runner, verify

RUNS = [("B", {}), ("B", {"seed": 2}), ("B", {"norm_batch": 4}), ("L", {"split": "validation"}), ("L", {"seed": 2}),
        ("G", {"l1_lambda": 1e-5}), ("G", {})]


def fake(spec: dict) -> tuple[dict, dict]:
    record = {"key": training.key(spec), "identity": training.identity(spec), "environment": {"torch": "2.14.1", "cpu": "X"},
              "seconds": 1.0, "history": [{"epoch": 1, "test_acc": 99.0, "seconds": 1.0}], "predictions": "0123456789"}
    return record, {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


@pytest.fixture
def filled(tmp_path, monkeypatch) -> store.Store:
    """A store of fake records for RUNS; local training replaced by threads."""
    runs = store.Store(tmp_path / "store")
    for norm, options in RUNS:
        runs.put(*fake(training.run_spec({**settings.RECIPE, "DATA": ELSEWHERE}, norm, **{"seed": 1, **options})))
    monkeypatch.setattr(runner, "executor", contextmanager(lambda jobs, scheduler: (yield ThreadPoolExecutor(1))))
    return runs


def test_the_sample_takes_plain_test_runs_of_each_norm_in_turn(filled):
    records = [filled.read(path)[0] for path in filled.path.glob("*.safetensors")]
    chosen = [r["key"].rsplit("-", 1)[0] for r in verify.sample(records, 5)]
    assert chosen == ["B-seed1-test", "L-seed2-test", "G-g2-seed1-test", "B-seed2-test", "L-seed1-validation"]


def test_the_sample_takes_runs_made_elsewhere_first(filled):
    """A record made on this very machine retrains bit for bit: verify spends its runs on those made elsewhere."""
    records = [filled.read(path)[0] for path in filled.path.glob("*.safetensors")]
    mine = next(r for r in records if r["key"].startswith("B-seed1-test"))
    here = {"torch": "2.14.1", "cpu": "X", "device": "cpu", "threads": 1}
    mine["environment"] = dict(here)
    assert verify.sample(records, 1, here)[0]["key"].startswith("B-seed2-test")


def test_a_retrained_run_equal_to_its_record_is_bit_identical(filled, monkeypatch):
    monkeypatch.setattr(store, "train_for_store", fake)
    results = verify.run(3, filled.path, jobs=1)
    assert results["identical"] == 3 and [r["predictions_differ"] for r in results["runs"]] == [0, 0, 0]


@pytest.mark.parametrize("change", ["weight", "prediction", "history"])
def test_any_difference_makes_a_run_not_identical(filled, monkeypatch, change):
    def moved(spec):
        record, tensors = fake(spec)
        if change == "weight":
            tensors["weight"][1, 2] += 0.5
        elif change == "prediction":
            record["predictions"] = "1123456789"
        else:
            record["history"] = [{"epoch": 1, "test_acc": 98.99, "seconds": 1.0}]
        return record, tensors

    monkeypatch.setattr(store, "train_for_store", moved)
    row = verify.run(1, filled.path, jobs=1)["runs"][0]
    assert not row["identical"]
    assert (row["largest_weight_change"], row["predictions_differ"]) == \
        {"weight": (0.1, 0), "prediction": (0.0, 1), "history": (0.0, 0)}[change]  # 0.5 of the largest weight, 5


def test_each_run_is_shown_beside_the_stored_seeds_of_its_cell(filled, monkeypatch):
    monkeypatch.setattr(store, "train_for_store", fake)
    rows = verify.run(2, filled.path, jobs=1)["runs"]  # B seed 1 (B seed 2 shares its cell), L seed 2 (alone: L seed 1 validates)
    assert [(r["cell"]["n"], r["cell"]["mean"], r["cell"]["sd"]) for r in rows] == [(2, 99.0, 0.0), (1, 99.0, 0.0)]


def shifted_by(differences: list[float]) -> list[dict]:
    return [{"acc": 99.5 + d, "stored_acc": 99.5} for d in differences]


@pytest.mark.parametrize("differences,verdict", [
    ([0.0] * 6, "replicates within +-0.10"),  # bit-identical: the interval is a point
    ([0.04, -0.06, 0.08, -0.02, 0.03, -0.05], "replicates within +-0.10"),  # another CPU's spread
    ([0.30, 0.25, 0.35, 0.28, 0.31, 0.33], "differs"),
    ([0.04, -0.06, 0.08], "inconclusive"),  # three runs with that spread: the interval reaches past 0.10
    ([0.1], "inconclusive")])
def test_the_replication_verdict(differences, verdict):
    found = verify.replication(shifted_by(differences))
    assert found["verdict"] == verdict
    if len(differences) > 1 and found["sd"] > 0:  # the 90% interval is the one TOST's verdict reads
        low, high = found["interval_90"]
        assert (verdict.startswith("replicates")) == (-0.1 < low and high < 0.1)


def test_verify_writes_under_runs_unless_published(filled, monkeypatch, tmp_path):
    monkeypatch.setattr(store, "train_for_store", fake)
    monkeypatch.setattr(verify, "OUT_DIR", tmp_path / "out")
    monkeypatch.setattr(sys, "argv", ["experiments", "verify", "--sample", "1", "--store", str(filled.path), "--jobs", "1"])
    from experiments import __main__ as cli
    cli.main()
    assert (tmp_path / "out" / "results" / "verify.json").is_file()
    monkeypatch.setattr(sys, "argv", ["experiments", "verify", "--publish", "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.main()


def test_seconds_alone_do_not_make_a_run_differ(filled, monkeypatch):
    monkeypatch.setattr(store, "train_for_store", lambda spec: (lambda r, t: ({**r, "seconds": 9.0, "history": [
        {**r["history"][0], "seconds": 9.0}]}, t))(*fake(spec)))
    assert verify.run(1, filled.path, jobs=1)["identical"] == 1


def test_kept_runs_go_to_another_store_never_the_verified_one(filled, monkeypatch, tmp_path):
    monkeypatch.setattr(store, "train_for_store", fake)
    with pytest.raises(ValueError, match="--keep .* is the store being verified"):
        verify.run(2, filled.path, jobs=1, keep=filled.path / ".")
    verify.run(2, filled.path, jobs=1, keep=tmp_path / "kept")
    assert len(list((tmp_path / "kept").glob("*.safetensors"))) == 2


@pytest.mark.parametrize("n", [0, 8])
def test_a_sample_larger_than_the_store_or_empty_is_refused(filled, n):
    with pytest.raises(ValueError, match="--sample must be a whole number from 1 to the 7 runs"):
        verify.run(n, filled.path)


def test_the_commit_recorded_is_the_one_that_started_the_work(filled, monkeypatch):
    """A commit made while runs train (or are verified) is not the one that made them: the environment is taken at
    the start, by verify and by training.train."""
    commits = iter(f"commit{i}" for i in range(100))
    monkeypatch.setattr(store.records, "environment", lambda device: {"torch": "t", "cpu": "c", "device": "cpu",
                                                                    "threads": 1, "git_commit": next(commits)})
    monkeypatch.setattr(store, "train_for_store", fake)
    assert verify.run(1, filled.path, jobs=1)["environment"]["git_commit"] == "commit0"
    monkeypatch.setattr(training, "fit_model", lambda *a: (store.records.environment("cpu"), [], torch.zeros(2, dtype=torch.long)))
    spec = training.run_spec(settings.RECIPE, "L", seed=1)
    assert training.train(spec)[1]["environment"]["git_commit"] == "commit1"  # fit_model's own call took commit2
