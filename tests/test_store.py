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

import data
import records
import settings
import store
import training
from conftest import ELSEWHERE, MNIST_ROOT, ROOT, needs_mnist, raises, write_idx, write_sums
from experiments import l1, runner
from model import Net

SETTINGS = settings.RECIPE
FAKE = {**SETTINGS, "DATA": ELSEWHERE}  # fake records: of digits not here, so their predictions are not scored


@pytest.mark.parametrize("override, value, message", [
    ("epochs", 0, "epochs must be a whole number >= 1, got 0"), ("epochs", 20.0, "epochs must be a whole number"),
    ("max_lr", float("nan"), "max_lr must be a finite number > 0, got nan"), ("max_lr", 0, "max_lr must be a finite"),
    ("weight_decay", float("inf"), "weight_decay must be a finite number >= 0, got inf"),
    ("ema_decay", 1.0, "ema_decay must be None or a number in (0, 1), got 1.0"),
    ("batch_size", True, "batch_size must be a whole number >= 1, got True"),
    ("test_batch_size", 2.5, "test_batch_size must be a whole number >= 1, got 2.5"),
    ("dropout", 1.0, "dropout must be a number in [0, 1), got 1.0"),
    ("train_limit", 0, "train_limit must be None (every digit) or a whole number of digits >= 1, got 0"),
    ("test_limit", "10", "test_limit must be None (every digit) or a whole number of digits >= 1, got '10'"),
    ("augmentation", {"degrees": 10}, "augmentation must be None or {} (no augmentation), or a dict of exactly"),
])
def test_a_recipe_override_is_checked_as_its_setting_is(override, value, message):
    with raises(ValueError, message):
        store.load("G", **{override: value})  # not "no stored run": no run can have it


@pytest.mark.parametrize("extra", [None, "lr"])
def test_a_dict_that_is_not_a_run_spec_is_named(extra):
    spec = {} if extra is None else {**training.run_spec(SETTINGS, "B", seed=1), extra: 0.1}
    with raises(ValueError, "not a run spec", "unknown ['lr']" if extra else "missing ['augmentation', 'batch_size',",
                "build one with training.run_spec(settings.RECIPE, norm, seed, ...)"):
        store.Store().get(spec)


def test_runs_made_elsewhere_are_counted_once_and_named(capsys):
    here = {**records.environment("cpu"), "threads": 1}
    same = {"environment": {f: here[f] for f in store.COMPARED}}
    other_torch = {"environment": {**same["environment"], "torch": "9.9.9"}}
    no_cpu = {"environment": {f: here[f] for f in store.COMPARED if f != "cpu"}}
    runner.report_elsewhere([same, same])
    assert capsys.readouterr().out == ""
    runner.report_elsewhere([same, other_torch, no_cpu])
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("2 of these 3 stored runs were made in another environment")
    assert f"torch 9.9.9 (here {here['torch']})" in out and f"cpu unknown (here {here['cpu']})" in out


@pytest.mark.slow  # a copy of the code and a child Python that imports torch: about 5 s
def test_a_refactor_that_moves_training_code_keeps_every_key(tmp_path):
    """Move the weight EMA and the L1 penalty out of utils.py into a module of their own, as a code split would: every
    committed record's key, computed from that copy of the code, is the same."""
    for name in ("checks.py", "model.py", "utils.py", "data.py", "records.py", "settings.py", "training.py"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    source = (tmp_path / "utils.py").read_text()
    moved = [source[source.index(start):source.index(end)] for start, end in
             (("def l1_penalty(", "class WeightEMA"), ("class WeightEMA", "CHECK_EVERY = "))]
    for part in moved:
        source = source.replace(part, "")
    source = source.replace("from checks import", "from engine import WeightEMA, l1_penalty\nfrom checks import", 1)
    (tmp_path / "utils.py").write_text(source)
    (tmp_path / "engine.py").write_text("import copy\n\nimport torch\nimport torch.nn as nn\n\n\n" + "".join(moved)
                                        .replace("check_ema_decay(", "(lambda *a, **k: None)("))
    specs = [r["identity"]["spec"] for r in committed_records()]
    script = ("import json, sys, training, utils, engine; assert 'WeightEMA' not in vars(utils) or utils.WeightEMA is "
              "engine.WeightEMA; print(json.dumps([training.key(s) for s in json.load(sys.stdin)]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, input=json.dumps(specs), capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=True).stdout
    assert json.loads(out) == [r["key"] for r in committed_records()]


def committed_records() -> list[dict]:
    return [store.Store().read(path)[0] for path in sorted(store.STORE.glob("*.safetensors"))]


def test_every_committed_record_is_under_its_key():
    records = committed_records()
    assert len(records) >= 118
    for record in records:
        assert record["key"] == training.key(record["identity"]["spec"]) and record["identity"]["training"] == \
            training.TRAINING_VERSION


def fake_record(spec: dict) -> tuple[dict, dict]:
    """A record of `spec` whose numbers agree on the tiny fake MNIST's test digits (labels 0-9): 5 of 10 right."""
    model = torch.nn.Linear(3, 2)
    record = {"key": training.key(spec), "identity": training.identity(spec), "environment": {"git_commit": "abc"},
              "seconds": 1.5, "history": [{"epoch": 1, "test_acc": 50.0}], "predictions": "0123400000"}
    return record, model.state_dict()


def test_record_round_trips_and_damage_is_caught(tmp_path):
    runs = store.Store(tmp_path)
    spec = training.run_spec(FAKE, "B", seed=1)
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


@pytest.mark.parametrize("change, message", [
    ({"history": [{"epoch": 1, "test_acc": float("nan")}]}, ["history, epoch 1, holds test_acc=nan", "finite"]),
    ({"history": [{"epoch": 1, "test_acc": 50.0}, {"epoch": 2, "train_loss": float("inf"), "test_acc": 50.0}]},
     ["history, epoch 2, holds train_loss=inf"]),
    ({"history": []}, ["history is not a non-empty list of epochs"]),
    ({"predictions": [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]}, ["predictions must be a string of digits 0-9", "(list)"]),
    ({"predictions": "abc"}, ["predictions must be a string of digits 0-9", "'abc' (str)"]),
    ({"predictions": ""}, ["predictions must be a string of digits 0-9"]),
])
def test_a_record_that_would_not_read_back_never_enters_the_store(tmp_path, change, message):
    record, tensors = fake_record(training.run_spec(FAKE, "B", seed=1))
    with raises(ValueError, "put: ", *message):
        store.Store(tmp_path).put({**record, **change}, tensors)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("change, message", [
    ({"predictions": "01234"}, "it has 5 predictions for the 10 digits its spec holds out"),
    ({"predictions": "0123450000"}, "its last test_acc, 50.0, is not the accuracy of its predictions on the 10 digits"),
])
def test_predictions_that_disagree_with_the_digits_never_enter_the_store(tiny_store, change, message):
    runs, spec, record, tensors = tiny_store
    runs.file(spec).unlink()
    with raises(ValueError, "put: ", message):
        runs.put({**record, **change}, tensors)
    assert not runs.file(spec).exists()


def test_committed_store_refuses_runs_from_uncommitted_code(monkeypatch, tmp_path):
    monkeypatch.setattr(records, "git_commit", lambda: "0123abc+changes")
    monkeypatch.setattr(runner, "ensure", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match="uncommitted changes"):  # a full run: a quick one is refused there anyway
        runner.execute(l1, False, 1, tmp_path, store.STORE)
    with pytest.raises(ValueError, match="uncommitted changes"):
        runner.execute(l1, False, 1, ROOT, tmp_path / "store")


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
        assert strip_times(a) == strip_times(b) and b["environment"]["threads"] == 1
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.slow
def test_a_cluster_that_cannot_train_this_repository_is_named_before_any_run_is_sent(tmp_path):
    for name, source in (("missing", "import mnist_tools  # a module this machine lacks\n"), ("old", "TRAINING_VERSION = 0\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training.py").write_text(source)  # found before the installed training
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

    specs = [training.run_spec(FAKE, "B", seed=s) for s in (1, 2, 3)]

    def train(spec):
        if spec["seed"] == 2:
            raise FloatingPointError("non-finite training loss")
        record, tensors = fake_record(spec)
        return {**record, "key": "another-key"} if spec["seed"] == 3 else record, tensors

    monkeypatch.setattr(store, "train_for_store", train)
    monkeypatch.setattr(runner, "executor", contextmanager(lambda jobs, scheduler: (yield ThreadPoolExecutor(1))))
    with pytest.raises(RuntimeError, match=r"2 of 3 runs failed.*FloatingPointError.*another-key"):
        runner.ensure(specs, store.Store(tmp_path))
    assert [p.name for p in tmp_path.glob("*.safetensors")] == [training.key(specs[0]) + ".safetensors"]


# ---- What the store hands back: only what was asked for --------------------------------------------------------------

def stored(tmp_path, seed: int = 1, recipe: dict = FAKE) -> tuple[store.Store, dict, dict, dict]:
    runs = store.Store(tmp_path)
    spec = training.run_spec(recipe, "L", seed=seed)
    record, tensors = fake_record(spec)
    runs.put(record, tensors)
    return runs, spec, record, tensors


@pytest.fixture
def tiny_store(tiny_mnist, monkeypatch) -> tuple[store.Store, dict, dict, dict]:
    """`stored`, of a run on the tiny fake MNIST, which MNIST_ROOT points at: its record is scored on those digits."""
    monkeypatch.setenv("MNIST_ROOT", str(tiny_mnist))
    return stored(tiny_mnist / "store", recipe={**SETTINGS, "DATA": data.mnist_digest(tiny_mnist)})


def signed_again(path: Path, edit) -> None:
    """Apply `edit(body, tensors)` to the record file at `path` and give it a new SHA-256, as one could by hand."""
    from safetensors.torch import save

    body, tensors, _ = store._parse(path.read_bytes())
    edit(body, tensors)
    path.write_bytes(save(tensors, {"record": json.dumps(body), "sha256": store._checksum(body, tensors)}))


def last_epoch(**numbers):
    """An edit for `signed_again`: these numbers in the history's last epoch."""
    return lambda body, tensors: body["history"][-1].update(numbers)


EDITS = {  # edit, what the store says of the record it makes
    "test_acc 99.99": (last_epoch(test_acc=99.99), "its last test_acc, 99.99, is not the accuracy of its predictions on "
                                                   "the 10 digits its spec holds out (50.0): it was edited"),
    "test_acc NaN": (last_epoch(test_acc=float("nan")), "its history, epoch 1, holds test_acc=nan where a finite"),
    "one prediction": (lambda body, tensors: tensors["predictions"].__setitem__(5, 5), "its last test_acc, 50.0, is not"),
    "fewer predictions": (lambda body, tensors: tensors.update(predictions=tensors["predictions"][:5]),
                          "it has 5 predictions for the 10 digits its spec holds out"),
    "split": (lambda body, tensors: body["identity"]["spec"].update(split="train"), "its spec's split is 'train'"),
    "test_limit": (lambda body, tensors: body["identity"]["spec"].update(test_limit=[5]),
                   "its spec's test_limit must be None (every digit) or a whole number"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_record_edited_and_signed_again_is_set_aside_as_damage_is(tiny_store, edit):
    runs, spec, _, _ = tiny_store
    change, message = EDITS[edit]
    signed_again(runs.file(spec), change)
    with raises(store.CorruptRecord, f"{runs.file(spec)} is not a record of a run: {message}"):
        runs.read(runs.file(spec))
    with pytest.warns(RuntimeWarning, match="moved to .*corrupt, and the run is trained again"):
        assert runs.get(spec) is None
    assert runs.file(spec).with_name(runs.file(spec).name + ".corrupt").exists()


@pytest.mark.parametrize("here", ["other digits", "no digits"])
def test_where_the_runs_digits_are_not_here_only_finite_numbers_are_required(tiny_mnist, monkeypatch, here):
    (tiny_mnist / "empty").mkdir()
    monkeypatch.setenv("MNIST_ROOT", str(tiny_mnist if here == "other digits" else tiny_mnist / "empty"))
    runs, spec, _, _ = stored(tiny_mnist / "store")  # of digits no machine has
    signed_again(runs.file(spec), last_epoch(test_acc=99.99))
    assert runs.get(spec)[0]["history"][-1]["test_acc"] == 99.99  # no labels to score its predictions on
    signed_again(runs.file(spec), last_epoch(train_loss=float("nan")))
    with pytest.warns(RuntimeWarning, match="holds train_loss=nan where a finite number belongs"):
        assert runs.get(spec) is None
    assert not list((tiny_mnist / "empty").iterdir())  # nothing downloaded to find the labels


def test_the_held_out_labels_are_read_once_per_data_setting(tiny_store, monkeypatch):
    runs, one, record, tensors = tiny_store
    two = training.run_spec({**SETTINGS, "DATA": one["data"]}, "L", seed=2)
    runs.put({**record, "key": training.key(two), "identity": training.identity(two)}, tensors)
    calls = []
    monkeypatch.setattr(store, "_labels", {})
    monkeypatch.setattr(data, "held_out_labels", lambda *args, read=data.held_out_labels: calls.append(args) or read(*args))
    assert runs.get(one) and runs.get(two) and runs.get(one)
    assert len(calls) == 1


def test_a_record_copied_under_another_runs_name_is_refused_as_foreign(tmp_path):
    runs, one, _, _ = stored(tmp_path)
    two = training.run_spec(FAKE, "L", seed=2)
    runs.file(two).write_bytes(runs.file(one).read_bytes())  # seed 1's record under seed 2's file name
    with pytest.warns(RuntimeWarning, match=f"holds another run \\({training.key(one)}\\), not {training.key(two)}"):
        assert runs.get(two) is None
    assert runs.get(one) is not None and runs.file(two).with_name(runs.file(two).name + ".corrupt").exists()


def test_a_worker_trains_without_progress_bars_whatever_its_environment(tiny_mnist, monkeypatch, capfd):
    """A Dask worker started without TQDM_DISABLE (and tqdm reads it only when imported): its log gets no bars."""
    import functools
    import utils

    monkeypatch.setattr(utils, "tqdm", functools.partial(utils.tqdm, disable=False))  # bars on, as such a worker has
    monkeypatch.setenv("MNIST_ROOT", str(tiny_mnist))  # the worker's digits
    spec = training.run_spec({**SETTINGS, "DATA": data.mnist_digest(tiny_mnist)}, "L", seed=1, epochs=2, batch_size=10)
    record, tensors = store.train_for_store(spec)
    assert len(record["history"]) == 2 and tensors
    printed = capfd.readouterr()
    assert "%|" not in printed.err + printed.out  # tqdm's bar: "epoch 1:   0%|          | 0/2"
    assert "epoch  2  lr" in printed.out  # the plain line per epoch stays
    training.train(spec)
    assert "epoch 1:   0%|" in capfd.readouterr().err  # the bars were on: elsewhere they are the environment's to set


def test_a_relabelled_copy_of_the_digits_is_another_run(tiny_mnist, tmp_path):
    copy = tmp_path / "copy"
    (copy / "MNIST" / "raw").mkdir(parents=True)
    for path in (tiny_mnist / "MNIST" / "raw").iterdir():
        raw = bytearray(path.read_bytes())
        if path.name == "train-labels-idx1-ubyte":
            raw[8] = (raw[8] + 1) % 10  # one label changed
        (copy / "MNIST" / "raw" / path.name).write_bytes(bytes(raw))
    write_sums(copy)  # with a checksum list that agrees with the changed file
    digests = [data.mnist_digest(root) for root in (tiny_mnist, copy)]
    assert digests[0] != digests[1] and data.MNIST_DIGEST not in digests
    specs = [training.run_spec({**SETTINGS, "DATA": d}, "L", seed=1) for d in digests]
    assert training.key(specs[0]) != training.key(specs[1])
    with pytest.raises(ValueError, match="are not the digits this run was specified on"):
        training.loaders(specs[0], "cpu", copy)  # the spec of one copy never trains on the other


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "", ".hidden", "x\0y"])
def test_keys_that_name_a_path_outside_the_store_are_refused(tmp_path, name):
    runs, spec, record, tensors = stored(tmp_path / "store")
    with pytest.raises(ValueError, match="a run's key must be letters"):
        runs.put({**record, "key": name}, tensors)
    with pytest.raises(ValueError, match="a run's key must be letters"):
        runs.file(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_key_too_long_for_a_file_name_is_refused_and_the_longest_allowed_is_stored(tmp_path):
    runs, _, record, tensors = stored(tmp_path)
    with raises(ValueError, f"a run's key must be at most {store.MAX_KEY} characters", "got one of 300"):
        runs.file("k" * 300)
    with raises(ValueError, f"at most {store.MAX_KEY} characters"):
        runs.put({**record, "key": "k" * (store.MAX_KEY + 1)}, tensors)
    longest = {**record, "key": "k" * store.MAX_KEY}
    assert runs.read(runs.put(longest, tensors))[0] == longest  # its temporary file's name fits too


def damaged(runs: store.Store, spec: dict, record: dict, tensors: dict, how: str) -> None:
    """Replace the spec's record file by one damaged as `how` says, re-checksummed where it still could be."""
    path = runs.file(spec)
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif how == "too large":
        path.write_bytes(bytes(store.MAX_RECORD_BYTES + 1))
    elif how == "nested header":
        header = b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        path.write_bytes(len(header).to_bytes(8, "little") + header)
    else:
        from safetensors.torch import save
        body = {k: v for k, v in record.items() if k != "predictions"}
        saved = {f"model.{k}": t for k, t in tensors.items()} | {"predictions": torch.tensor([1, 2], dtype=torch.uint8)}
        if how == "no predictions":
            del saved["predictions"]
        elif how == "float predictions":
            saved["predictions"] = torch.tensor([1.0, 2.0])
        elif how == "no weight":
            del saved["model.weight"]
        elif how == "a list for the record":
            body = [1, 2]
        text = json.dumps(body)
        path.write_bytes(save(saved, {"record": text, "sha256": store._checksum(body, saved) if isinstance(body, dict)
                                        else "0"}))


@pytest.mark.parametrize("how", ["fifo", "link to /dev/zero", "too large", "nested header", "no predictions",
                                 "float predictions", "a list for the record"])
def test_every_malformed_record_is_reported_as_corrupt(tmp_path, how):
    import threading

    runs, spec, record, tensors = stored(tmp_path)
    damaged(runs, spec, record, tensors, how)
    raised = []

    def read() -> None:
        try:
            runs.read(runs.file(spec))
        except store.CorruptRecord:
            raised.append(True)

    reader = threading.Thread(target=read, daemon=True)  # a FIFO would block a reader forever: it must not be opened
    reader.start()
    reader.join(30)
    assert not reader.is_alive() and raised, f"reading a {how} did not end in CorruptRecord"
    with pytest.warns(RuntimeWarning, match="moved to .*corrupt, and the run is trained again"):
        assert runs.get(spec) is None


def test_a_file_larger_than_a_record_can_be_is_not_read(tmp_path, monkeypatch):
    runs, spec, _, _ = stored(tmp_path)
    monkeypatch.setattr(store, "MAX_RECORD_BYTES", runs.file(spec).stat().st_size - 1)  # a whole record, one byte over
    monkeypatch.setattr(type(runs.file(spec)), "read_bytes", lambda self: pytest.fail("read a file of any size"))
    with pytest.raises(store.CorruptRecord, match="larger than a record can be"):
        runs.read(runs.file(spec))


def test_a_reader_waits_for_a_writer_and_sets_aside_only_what_is_still_corrupt(tmp_path):
    """A reader finds a corrupt file while a writer holds the lock to put the whole record in place: it waits, reads
    again, and returns the whole record; nothing is moved aside."""
    import threading

    runs, spec, record, tensors = stored(tmp_path)
    whole = runs.file(spec).read_bytes()
    damaged(runs, spec, record, tensors, "no predictions")
    got = []
    with runs._lock():  # the writer's turn
        reader = threading.Thread(target=lambda: got.append(runs.get(spec)))
        reader.start()
        reader.join(1.0)
        assert reader.is_alive(), "the reader set the file aside without waiting for the writer"
        staged = tmp_path / "staged"
        staged.write_bytes(whole)
        staged.replace(runs.file(spec))  # the writer's atomic replace
    reader.join(30)
    assert got and got[0] is not None and got[0][0] == record
    assert not list(tmp_path.glob("*.corrupt"))


def test_a_record_without_a_weight_the_network_needs_is_reported_as_corrupt(tmp_path):
    runs = store.Store(tmp_path)
    spec = training.run_spec(FAKE, "L", seed=1)
    record, _ = fake_record(spec)
    tensors = Net("L").state_dict()
    del tensors["fc.bias"]
    runs.put(record, tensors)
    with pytest.raises(store.CorruptRecord, match="does not hold this network's weights"):
        runs.model(spec)


def test_a_missing_run_says_how_to_train_it(tmp_path):
    with pytest.raises(store.NotStored, match=r"no stored run G-g2-seed77-test-.*training.train\(spec\)"):
        store.load("G", seed=77, path=tmp_path)
    assert store.load("G", seed=3).training is False  # a committed run, in eval mode


def test_score_is_a_stored_models_accuracy_on_the_digits_its_run_holds_out(tiny_mnist, tmp_path, monkeypatch):
    """A stored model scored on the tiny fake MNIST, relabelled so that it gets 7 of its 10 test digits right."""
    torch.manual_seed(0)
    net = Net("L").eval()
    raw = tiny_mnist / "MNIST" / "raw"
    predicted = net(data.load_mnist(tiny_mnist, train=False, download=False)[0]).argmax(dim=1)
    labels = torch.cat([(predicted[:3] + 1) % 10, predicted[3:]]).to(torch.uint8)
    images = torch.frombuffer(bytearray((raw / "t10k-images-idx3-ubyte").read_bytes()[16:]), dtype=torch.uint8)
    write_idx(raw, "t10k", images.view(-1, 28, 28), labels)
    write_sums(tiny_mnist)
    monkeypatch.setenv("MNIST_ROOT", str(tiny_mnist))
    monkeypatch.setattr(data, "MNIST_DIGEST", data.mnist_digest(tiny_mnist))  # as if these digits were MNIST
    spec = training.run_spec(SETTINGS, "L", seed=1, batch_size=4)
    record = {**fake_record(spec)[0], "history": [{"epoch": 1, "test_acc": 70.0}],
              "predictions": "".join(map(str, predicted.tolist()))}
    store.Store(tmp_path / "store").put(record, net.state_dict())
    assert store.score("L", seed=1, batch_size=4, path=tmp_path / "store") == 70.0


def test_a_corrupt_record_in_a_store_that_cannot_be_written_is_not_announced_as_moved(tmp_path, monkeypatch):
    runs, spec, record, tensors = stored(tmp_path)
    damaged(runs, spec, record, tensors, "no predictions")
    monkeypatch.setattr(type(runs.file(spec)), "replace", lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(store.CorruptRecord, match="cannot be moved aside \\(Permission denied\\): remove it"):
        runs.get(spec)


@pytest.mark.parametrize("where, says", [("a regular file", "cannot be read (Not a directory)"),
                                         ("below a regular file", "cannot be read (Not a directory)"),
                                         ("a full disk", "cannot take records (No space left on device)")])
def test_a_store_that_cannot_take_records_is_refused_before_training(tmp_path, monkeypatch, where, says):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(runner, "executor", contextmanager(lambda jobs, scheduler: (yield ThreadPoolExecutor(1))))
    monkeypatch.setattr(store, "train_for_store", lambda spec: pytest.fail("a run trained before the store was checked"))
    (tmp_path / "file").write_text("not a folder")
    path = {"a regular file": tmp_path / "file", "below a regular file": tmp_path / "file" / "store"}.get(where, tmp_path)
    if where == "a full disk":
        monkeypatch.setattr(store.tempfile, "TemporaryFile",
                            lambda **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with raises(ValueError, f"the run store {path} {says}", "--store"):
        runner.ensure([training.run_spec(SETTINGS, "L", seed=1)], store.Store(path))


def test_a_store_that_cannot_be_read_is_not_an_empty_one(tmp_path, monkeypatch):
    spec = training.run_spec(FAKE, "L", seed=1)
    assert store.Store(tmp_path / "new").get(spec) is None  # a store yet to be made: empty
    (tmp_path / "file").write_text("not a folder")
    with raises(ValueError, f"the run store {tmp_path / 'file'} cannot be read (Not a directory)"):
        store.Store(tmp_path / "file").get(spec)
    with raises(ValueError, f"the run store {tmp_path / 'file'} cannot be read (Not a directory)"):
        store.load("L", path=tmp_path / "file")
    runs, spec, _, _ = stored(tmp_path / "store")
    monkeypatch.setattr(Path, "lstat", lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with raises(ValueError, f"the run store {runs.path} cannot be read (Permission denied)"):  # a folder of mode 000
        runs.model(spec)


def writer(path: str, seed: int, count: int) -> None:
    runs = store.Store(path)
    record, tensors = fake_record(training.run_spec(FAKE, "L", seed=1))
    for i in range(count):
        runs.put({**record, "seconds": float(seed * 1000 + i)}, tensors)


@pytest.mark.slow  # two writer processes and a reader, many rounds: about 10 s
def test_two_writers_and_a_reader_on_one_record_leave_it_whole(tmp_path):
    import multiprocessing

    runs, spec, _, _ = stored(tmp_path)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=writer, args=(str(tmp_path), seed, 150)) for seed in (1, 2)]
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        assert runs.get(spec) is not None  # never half-written, never set aside
        reads += 1
    assert all(w.join() or w.exitcode == 0 for w in writers) and reads > 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", runs.file(spec).name]


def test_local_workers_are_at_most_the_runs_to_train(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    started = []
    monkeypatch.setattr(store, "train_for_store", fake_record)
    monkeypatch.setattr(runner, "executor", contextmanager(lambda jobs, scheduler: (yield started.append(jobs) or
                                                                                    ThreadPoolExecutor(1))))
    runner.ensure([training.run_spec(FAKE, "B", seed=s) for s in range(1, 5)], store.Store(tmp_path), jobs=16)
    assert started == [4]  # --jobs 16 for 4 runs starts 4 workers, not 12 idle ones besides
