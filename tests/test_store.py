"""The run store: what its key sees of the code, records that round-trip and are checked, and experiments that read
stored runs instead of training them again, locally or on a Dask cluster."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

import store
import utils
from conftest import MNIST_ROOT, ROOT, needs_mnist
from experiments import l1, runner

SOURCES = {m: (ROOT / f"{m}.py").read_text() for m in ("model", "utils", "store")}
SETTINGS = dict(EPOCHS=20, BATCH_SIZE=128, TEST_BATCH_SIZE=2000, MAX_LR=0.02, WEIGHT_DECAY=1e-4, EMA_DECAY=0.998,
                DROPOUT=0.0, AUGMENTATION={"degrees": 10.0, "translate": 0.1, "scale": 0.1}, TRAIN_LIMIT=None,
                TEST_LIMIT=None, GROUPS=2)


def fingerprint_after(module: str, old: str, new: str) -> str:
    assert old in SOURCES[module], old
    return store.code_fingerprint({**SOURCES, module: SOURCES[module].replace(old, new, 1)})


BASE = store.code_fingerprint(SOURCES)


@pytest.mark.parametrize("module, old, new", [
    ("utils", "def fit(", "# a comment\ndef fit("),  # a comment
    ("utils", '"""Train `epochs` epochs', '"""Train for `epochs` epochs'),  # a docstring
    ("utils", 'raise FloatingPointError(_divergence(model, x,', 'raise RuntimeError(str(model) + _divergence(model, x,'),
    ("utils", '    whole_number("epochs", epochs, "a whole number >= 1")\n', ""),  # a check that only raises
    ("utils", 'ax.grid(alpha=0.3)', 'ax.grid(alpha=0.5)'),  # a figure: outside the training path
    ("model", "def count_macs(", "def count_macs_renamed("),  # outside the training path
])
def test_fingerprint_ignores_what_cannot_change_a_number(module, old, new):
    assert fingerprint_after(module, old, new) == BASE


@pytest.mark.parametrize("module, old, new", [
    ("utils", "lr=max_lr, weight_decay=weight_decay)", "lr=max_lr, weight_decay=weight_decay, eps=1e-7)"),
    ("utils", "CHECK_EVERY = 50", "CHECK_EVERY = 49"),  # a constant the training loop reads
    ("model", "WIDTHS = (8, 16, 32, 48, 48)", "WIDTHS = (8, 16, 32, 48, 40)"),  # the network
    ("utils", "decay = min(self.decay, (1 + self.updates) / (10 + self.updates))",
     "decay = min(self.decay, (1 + self.updates) / (11 + self.updates))"),  # the EMA, a class the loop uses
    ("utils", "MNIST_MEAN, MNIST_STD = 0.1307, 0.3081", "MNIST_MEAN, MNIST_STD = 0.1307, 0.3080"),  # the data
    ("store", "utils.reseed(spec[\"seed\"], train_loader)", "utils.reseed(spec[\"seed\"] + 1, train_loader)"),
])
def test_fingerprint_changes_with_what_trains(module, old, new):
    assert fingerprint_after(module, old, new) != BASE


def test_committed_code_has_the_fingerprint_of_the_files():
    assert store.code_fingerprint() == BASE


def test_spec_is_canonical_and_checked():
    gn = store.run_spec(SETTINGS, "group", seed=1)
    assert gn["groups"] == 2 and gn["norm"] == "G"  # the notebook's GN and 2 groups are one run
    assert store.key(gn) == store.key(store.run_spec(SETTINGS, "G", seed=1, groups=2))
    assert store.run_spec(SETTINGS, "L", seed=1)["groups"] is None
    plain = [store.key(store.run_spec({**SETTINGS, "AUGMENTATION": a}, "L", seed=1)) for a in (None, {})]
    assert plain[0] == plain[1]  # no augmentation, however it is said, is one run
    with pytest.raises(ValueError, match="norm_batch=128"):
        store.run_spec(SETTINGS, "B", seed=1, norm_batch=128)  # the whole batch is plain BN: one run, one label
    with pytest.raises(ValueError, match="max_lrr"):
        store.run_spec(SETTINGS, "B", seed=1, max_lrr=0.1)
    keys = {store.key(store.run_spec(SETTINGS, "B", seed=s)) for s in (1, 2)}
    keys |= {store.key(store.run_spec(SETTINGS, "B", seed=1), threads=2), store.key(store.run_spec(SETTINGS, "B", seed=1), "cuda")}
    keys |= {store.key(store.run_spec(SETTINGS, "B", seed=1, split="validation"))}
    assert len(keys) == 5


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


@contextmanager
def dask_cluster(folder: Path, scheduler_path: Path | None = None, worker_path: Path | None = None) -> Iterator[str]:
    """A real `dask scheduler` on 127.0.0.1 and one `dask worker ADDRESS --nthreads 1`, separate processes started in
    `folder` (outside the repository) without PYTHONPATH, as STUDY.md starts them: they import this repository as
    installed (CI: requirements.txt's `-e .`), unless a *_path puts other modules first. Yields the scheduler's address
    once the worker is connected, and stops both (with the worker's own process) however the test ends."""
    distributed = pytest.importorskip("distributed", reason="the dask CLI (distributed) is not installed")
    processes = []

    def start(*args: str, path: Path | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | ({"PYTHONPATH": str(path)} if path else {})
        log = open(folder / f"{args[0]}.log", "w")
        processes.append(subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=folder, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))  # a group: worker + nanny

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
              str(folder / "scheduler.json"), path=scheduler_path)
        deadline = time.monotonic() + 60
        while not (folder / "scheduler.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads((folder / "scheduler.json").read_text())["address"]
        start("worker", address, "--nthreads", "1", "--no-dashboard", path=worker_path)
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow
@needs_mnist
def test_dask_cluster_stores_the_same_runs_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_ROOT", str(Path(MNIST_ROOT).resolve()))  # the worker's, started in another folder
    local = runner.execute(l1, True, 2, tmp_path / "local", tmp_path / "local-store")
    (tmp_path / "cluster").mkdir()
    with dask_cluster(tmp_path / "cluster") as address:
        remote = runner.execute(l1, True, 1, tmp_path / "dask", tmp_path / "dask-store", address)
    assert remote["summary"] == local["summary"]
    for path in (tmp_path / "local-store").glob("*.safetensors"):
        a, ta = store.Store(path.parent).read(path)
        b, tb = store.Store(tmp_path / "dask-store").read(tmp_path / "dask-store" / path.name)
        assert strip_times(a) == strip_times(b) and b["identity"]["threads"] == 1
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.slow
def test_a_cluster_that_cannot_train_this_repository_is_named_before_any_run_is_sent(tmp_path):
    for name, source in (("missing", "import mnist_tools  # a module this machine lacks\n"), ("old", "TRAINING_VERSION = 0\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "store.py").write_text(source)  # found before the installed store
    with dask_cluster(tmp_path, scheduler_path=tmp_path / "missing", worker_path=tmp_path / "old") as address:
        with pytest.raises(ValueError) as error:
            runner.execute(l1, True, 1, tmp_path / "out", tmp_path / "store", address)
    message = str(error.value)
    assert message.startswith(f"--scheduler {address!r}: the cluster cannot train this repository's runs")
    assert "the scheduler: ModuleNotFoundError: No module named 'mnist_tools'" in message
    assert re.search(r"; worker tcp://127\.0\.0\.1:\d+: training version 0\. ", message)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_failed_run_is_reported_and_the_others_are_stored(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

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
    assert [p.name for p in tmp_path.iterdir()] == [store.key(specs[0]) + ".safetensors"]


def test_local_workers_are_at_most_the_runs_to_train(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    started = []
    monkeypatch.setattr(store, "train_for_store", fake_record)
    monkeypatch.setattr(runner, "executor", contextmanager(lambda jobs, scheduler: (yield started.append(jobs) or
                                                                                    ThreadPoolExecutor(1))))
    runner.ensure([store.run_spec(SETTINGS, "B", seed=s) for s in range(1, 5)], store.Store(tmp_path), jobs=16)
    assert started == [4]  # --jobs 16 for 4 runs starts 4 workers, not 12 idle ones besides
