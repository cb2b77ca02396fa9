"""publish.py: the committed results change only on purpose, all files or none, never after an interrupt."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import data
import publish
import records
import utils
from conftest import ROOT, raises

CPU = torch.device("cpu")


def test_a_run_at_chance_warns_and_is_not_published(tmp_path):
    x, y = torch.randn(40, 1, 28, 28), torch.arange(40) % 10
    loader = data.TensorLoader(x, y, 20, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
    nn.init.zeros_(model[1].weight), nn.init.zeros_(model[1].bias)  # all logits equal on blank digits: class 0
    blank = data.TensorLoader(torch.zeros(40, 1, 28, 28), y, 20, shuffle=False)  # balanced labels: 10% for class 0
    with pytest.warns(RuntimeWarning, match="chance level"):
        history = utils.fit(model, loader, blank, CPU, epochs=1, max_lr=1e-9)
    assert history[-1]["test_acc"] == 10.0
    run_dir, histories = make_run(tmp_path, variants=(FIRST,), EPOCHS=1)
    histories[FIRST][-1]["test_acc"] = history[-1]["test_acc"]
    records.write_json(run_dir / "results" / "history.json", {FIRST: {**COMMITTED[FIRST], "history": histories[FIRST],
                                                                    "settings": SETTINGS | {"EPOCHS": 1, "VARIANTS": {FIRST: "B"}}}})
    with raises(RuntimeError, FIRST, "chance level", "not published"):
        publish.publish(run_dir, tmp_path / "out", histories)
    assert not (tmp_path / "out").exists()


# ---- Publishing: the committed results change only on purpose, all files or none, never after an interrupt -------

COMMITTED = json.loads((ROOT / "results" / "history.json").read_text())
FIRST = next(iter(COMMITTED))  # the committed study's first variant (BatchNorm + L1)
SETTINGS = COMMITTED[FIRST]["settings"]  # the committed study's
FIGURES = ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in COMMITTED]


def make_run(tmp_path: Path, variants=tuple(COMMITTED), **changes) -> tuple[Path, dict]:
    """A finished run's folder as the notebook leaves it, with the committed runs' entries under `changes` to the
    committed settings (fewer EPOCHS: the first epochs), each epoch a second slower so that its files differ from the
    committed ones, and a figure of each name; returns the folder and the run's histories."""
    settings = SETTINGS | {"VARIANTS": {name: SETTINGS["VARIANTS"][name] for name in variants}} | changes
    run_dir = tmp_path / "runs" / "study-test"
    runs = {name: {**COMMITTED[name], "settings": settings, "history": [
        {**record, "seconds": record["seconds"] + 1} for record in COMMITTED[name]["history"][: settings["EPOCHS"]]]}
        for name in variants}
    records.write_json(run_dir / "results" / "history.json", runs)
    for figure in ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in variants]:
        (run_dir / "Images").mkdir(parents=True, exist_ok=True)
        (run_dir / "Images" / f"{figure}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + f"{figure} of this run".encode())
    return run_dir, {name: entry["history"] for name, entry in runs.items()}


@pytest.fixture
def out_dir(tmp_path):
    """An OUT_DIR holding a copy of the committed results/ and Images/."""
    for folder in ("results", "Images"):
        shutil.copytree(ROOT / folder, tmp_path / "out" / folder)
    return tmp_path / "out"


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def published_from(run_dir: Path, out_dir: Path) -> bool:
    """Whether every file of the run is in out_dir, byte for byte."""
    return all((out_dir / p.relative_to(run_dir)).read_bytes() == content for p, content in snapshot(run_dir).items())


@pytest.mark.parametrize("variants, changes, named", [
    (tuple(COMMITTED), {"EPOCHS": 1}, "EPOCHS 1 (published: 20)"),
    (tuple(COMMITTED), {"TRAIN_LIMIT": 2048}, "TRAIN_LIMIT 2048 (published: None)"),
    (tuple(COMMITTED), {"TEST_LIMIT": 500}, "TEST_LIMIT 500 (published: None)"),
    ((FIRST,), {}, f"VARIANTS {{{FIRST!r}: 'B'}} (published: {SETTINGS['VARIANTS']!r})"),
    (tuple(COMMITTED), {"SEED": 2}, "SEED 2 (published: 1)"),
    (tuple(COMMITTED), {"DEVICE": "cpu"}, "DEVICE 'cpu' (published: None)"),
    (tuple(COMMITTED), {"AUGMENTATION": None}, "AUGMENTATION None (published: {'degrees': 10.0"),
])
def test_a_run_that_is_not_the_committed_study_stays_apart(tmp_path, out_dir, capsys, variants, changes, named):
    run_dir, histories = make_run(tmp_path, variants, **changes)
    before = snapshot(out_dir)
    assert publish.publish(run_dir, out_dir, histories) == []
    assert snapshot(out_dir) == before  # every committed file byte-identical, nothing added
    printed = capsys.readouterr().out
    assert f"not published into {out_dir}" in printed and named in printed and str(run_dir) in printed
    assert "REPLACE_RESULTS = True" in printed


@pytest.mark.parametrize("changes", [{}, {"GITHUB_REPO": "someone/s6", "GITHUB_BRANCH": "dev"}])  # Colab's: no study's
def test_the_full_study_at_the_committed_settings_replaces_its_files_and_only_them(tmp_path, out_dir, changes):
    run_dir, histories = make_run(tmp_path, **changes)
    before = snapshot(out_dir)
    published = publish.publish(run_dir, out_dir, histories)
    assert sorted(published) == sorted(out_dir / p.relative_to(run_dir) for p in snapshot(run_dir))
    assert published_from(run_dir, out_dir)
    assert {p: b for p, b in snapshot(out_dir).items() if p not in published} == \
        {p: b for p, b in before.items() if p not in published}  # the experiments' JSON and figures untouched
    assert not [p for p in out_dir.rglob("*") if ".tmp." in p.name or ".old." in p.name]


@pytest.mark.parametrize("folder", ["results", "Images/x", "link/results", "results/runs"])
def test_out_dir_in_the_committed_results_or_figures_is_refused(tmp_path, folder):
    (tmp_path / "link").symlink_to(ROOT)  # the repository by another name
    out_dir = tmp_path / folder if folder.startswith("link") else ROOT / folder
    place = "results" if "results" in folder else "Images"
    with raises(ValueError, f"OUT_DIR={str(out_dir)!r} is in {place}/", 'Use OUT_DIR = "."'):
        publish.check_out_dir(out_dir)
    for allowed in (ROOT, tmp_path / "link", tmp_path / "mine", "."):  # the repository root, or a folder elsewhere
        assert publish.check_out_dir(allowed) == Path(allowed)


@pytest.mark.parametrize("variants, changes, replace, named", [
    (SETTINGS["VARIANTS"], {"EPOCHS": 1, "TRAIN_LIMIT": 2048, "TEST_LIMIT": 500}, True,
     ["EPOCHS 1 (the study: 20)", "TRAIN_LIMIT 2048 (the study: None)", "TEST_LIMIT 500 (the study: None)",
      "REPLACE_RESULTS = {'EPOCHS', 'TRAIN_LIMIT', 'TEST_LIMIT'} to publish it on purpose"]),
    ({FIRST: "B"}, {}, True, [f"VARIANTS {{{FIRST!r}: 'B'}} (the study: {SETTINGS['VARIANTS']!r}", "cannot be forced"]),
    ({FIRST: "B"}, {}, {"EPOCHS"}, [f"VARIANTS {{{FIRST!r}: 'B'}}", "cannot be forced"]),
    (SETTINGS["VARIANTS"], {"EPOCHS": 1, "TRAIN_LIMIT": 2048}, {"EPOCHS"}, ["TRAIN_LIMIT 2048", "{'EPOCHS', 'TRAIN_LIMIT'}"]),
    (SETTINGS["VARIANTS"], {"SEED": 7, "L1_LAMBDA": 0, "MAX_LR": 0.5, "BATCH_SIZE": 1024}, True,
     ["SEED 7 (the study: 1)", "BATCH_SIZE 1024 (the study: 128)", "MAX_LR 0.5 (the study: 0.02)",
      "L1_LAMBDA 0 (the study: 1e-05)", "REPLACE_RESULTS = {'SEED', 'BATCH_SIZE', 'MAX_LR', 'L1_LAMBDA'}"]),
    (SETTINGS["VARIANTS"], {"SEED": 7, "MAX_LR": 0.5}, ["MAX_LR"], ["SEED 7 (the study: 1)", "{'SEED', 'MAX_LR'}"]),
    (SETTINGS["VARIANTS"], {"TEST_BATCH_SIZE": 500, "DEVICE": "cpu"}, True,
     ["TEST_BATCH_SIZE 500 (the study: 2000)", "DEVICE 'cpu' (the study: None)"]),
    (SETTINGS["VARIANTS"], {}, {"VARIANTS"}, ["REPLACE_RESULTS must be True, False or a set", "got {'VARIANTS'}"]),
    (SETTINGS["VARIANTS"], {}, ["OUT_DIR"], ["REPLACE_RESULTS must be True, False or a set", "got ['OUT_DIR']"]),
    (SETTINGS["VARIANTS"], {}, 1, ["REPLACE_RESULTS must be True, False or a set", "got 1"]),
])
def test_replace_results_refuses_a_partial_run_before_training(variants, changes, replace, named):
    with raises(ValueError, *named):
        publish.check_replace(SETTINGS | changes, variants, replace)


@pytest.mark.parametrize("changes, replace", [({}, True), ({"EPOCHS": 1, "TRAIN_LIMIT": 2048}, False),
                                              ({"EPOCHS": 1, "TEST_LIMIT": 500}, {"EPOCHS", "TEST_LIMIT"}),
                                              ({"MAX_LR": 0.04, "SEED": 7}, ["SEED", "MAX_LR"]),  # a new recipe: on purpose
                                              ({"GITHUB_REPO": "someone/s6"}, True)])  # Colab's: no study's setting
def test_replace_results_passes_the_whole_study_a_forced_one_or_none(changes, replace):
    publish.check_replace(SETTINGS | changes, {FIRST: "batch", "LN": "L", "GN": "G"}, replace)


def test_replace_results_publishes_any_finished_run(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path, EPOCHS=1, TRAIN_LIMIT=2048)
    assert len(publish.publish(run_dir, out_dir, histories, replace=True)) == 1 + len(FIGURES)
    assert published_from(run_dir, out_dir)


def test_a_run_publishes_where_it_replaces_nothing(tmp_path):
    run_dir, histories = make_run(tmp_path, EPOCHS=1)
    assert len(publish.publish(run_dir, tmp_path / "fresh", histories)) == 1 + len(FIGURES)
    assert published_from(run_dir, tmp_path / "fresh")


@pytest.mark.parametrize("history", [None, "foreign"])
def test_files_whose_origin_is_not_recorded_are_not_replaced(tmp_path, out_dir, capsys, history):
    if history is None:
        (out_dir / "results" / "history.json").unlink()
    else:
        (out_dir / "results" / "history.json").write_text('{"experiment": "seeds"}')
    run_dir, histories = make_run(tmp_path)  # the committed settings, but out_dir no longer says what made its figures
    before = snapshot(out_dir)
    assert publish.publish(run_dir, out_dir, histories) == []
    assert snapshot(out_dir) == before
    assert ("no results/history.json" if history is None else "is not a history file") in capsys.readouterr().out


@pytest.mark.parametrize("break_target", ["folder in a file's place", "file in Images/'s place"])
def test_a_target_that_cannot_be_written_leaves_every_file_as_it_was(tmp_path, out_dir, break_target):
    if break_target == "folder in a file's place":  # found after the first files are staged
        (out_dir / "Images" / "misclassified_GN.png").unlink()
        (out_dir / "Images" / "misclassified_GN.png").mkdir()
    else:
        shutil.rmtree(out_dir / "Images")
        (out_dir / "Images").write_text("not a folder")
    run_dir, histories = make_run(tmp_path)
    before = snapshot(out_dir)
    with pytest.raises(OSError):
        publish.publish(run_dir, out_dir, histories)
    assert snapshot(out_dir) == before  # the staged and set-aside files removed too


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failure_among_the_replacements_puts_back_every_file(tmp_path, out_dir, monkeypatch, error):
    run_dir, histories = make_run(tmp_path)
    before = snapshot(out_dir)
    replace, calls = Path.replace, []

    def fail_on_the_fifth(self, target):
        calls.append(self)
        if len(calls) == 5:
            raise error
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", fail_on_the_fifth)
    with pytest.raises(type(error)):
        publish.publish(run_dir, out_dir, histories)
    assert len(calls) > 5  # four files were in, and were put back
    assert snapshot(out_dir) == before


def test_a_staged_file_that_does_not_read_back_is_not_published(tmp_path, out_dir, monkeypatch):
    run_dir, histories = make_run(tmp_path)
    before = snapshot(out_dir)
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: b"" if ".tmp." in self.name else read_bytes(self))
    with raises(OSError, "does not read back as it was written"):
        publish.publish(run_dir, out_dir, histories)
    assert snapshot(out_dir) == before


@pytest.mark.parametrize("damage, named", [
    (lambda run_dir: (run_dir / "Images" / "curves_LN.png").unlink(), "curves_LN.png is missing or not a PNG"),
    (lambda run_dir: (run_dir / "Images" / "test_loss.png").write_bytes(b""), "test_loss.png is missing or not a PNG"),
    (lambda run_dir: records.write_json(run_dir / "results" / "history.json", {
        k: v for k, v in records.load_history(run_dir / "results" / "history.json").items() if k != "GN"}),
     f"its history file holds {sorted(set(COMMITTED) - {'GN'})}, the run {sorted(COMMITTED)}"),
])
def test_a_run_whose_files_are_not_whole_is_refused(tmp_path, out_dir, damage, named):
    run_dir, histories = make_run(tmp_path)
    damage(run_dir)
    before = snapshot(out_dir)
    with raises(RuntimeError, "not published", named, str(run_dir)):
        publish.publish(run_dir, out_dir, histories, replace=True)
    assert snapshot(out_dir) == before


def test_a_run_without_its_last_save_is_refused(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path)
    runs = records.load_history(run_dir / "results" / "history.json")
    del runs["GN"]["predictions"]  # saved with the last epoch's, as the notebook does once a variant has finished
    records.write_json(run_dir / "results" / "history.json", runs)
    with raises(RuntimeError, "GN has 20 of its 20 epochs on file, or no predictions"):
        publish.publish(run_dir, out_dir, histories, replace=True)


def test_a_variant_missing_from_the_run_is_refused(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path, variants=tuple(COMMITTED)[:2], VARIANTS=SETTINGS["VARIANTS"])  # GN never trained
    with raises(RuntimeError, f"VARIANTS names {sorted(COMMITTED)}"):
        publish.publish(run_dir, out_dir, histories, replace=True)


def test_a_run_with_fewer_epochs_on_file_than_it_ran_is_refused(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path)
    histories["LN"] = histories["LN"] + [histories["LN"][-1]]  # the run went on after its last save
    with raises(RuntimeError, "LN's epochs on file (20) are not those it trained (21)"):
        publish.publish(run_dir, out_dir, histories, replace=True)


@pytest.fixture
def restore_signals():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_is_never_published(tmp_path, out_dir, restore_signals, monkeypatch, signum):
    monkeypatch.setattr(publish, "_parent_ignores_sigint", lambda: False)
    interruptions = publish.watch_interrupts()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signum)  # as a Ctrl-C or a kill would, during training
        time.sleep(5)  # the handler runs here
    assert interruptions == [f"{signal.Signals(signum).name} arrived"]
    run_dir, histories = make_run(tmp_path)  # the files are whole: the run went on, as if the interrupt were caught
    before = snapshot(out_dir)
    with raises(RuntimeError, "not published", f"{signal.Signals(signum).name} arrived", str(run_dir)):
        publish.publish(run_dir, out_dir, histories, True, interruptions)
    assert snapshot(out_dir) == before
    assert publish.watch_interrupts() == []  # a new run starts with a clean record


def test_a_parent_that_ignores_sigint_keeps_the_run_from_publication(tmp_path, out_dir, restore_signals, monkeypatch):
    monkeypatch.setattr(publish, "_parent_ignores_sigint", lambda: True)
    with pytest.warns(RuntimeWarning, match="ignores SIGINT"):
        interruptions = publish.watch_interrupts()
    run_dir, histories = make_run(tmp_path)
    with raises(RuntimeError, "not published", "ignores SIGINT", "set -m"):
        publish.publish(run_dir, out_dir, histories, True, interruptions)


@pytest.mark.slow  # a child Python that imports torch, twice: about 7 s
@pytest.mark.parametrize("ignored", [True, False])
def test_parent_ignores_sigint_reads_the_parent(ignored):
    # a parent process that ignores SIGINT (or not) starts a child that asks
    parent = ("import signal, subprocess, sys; "
              + ("signal.signal(signal.SIGINT, signal.SIG_IGN); " if ignored else "signal.signal(signal.SIGINT, signal.SIG_DFL); ")
              + "sys.exit(subprocess.run([sys.executable, '-c', 'import sys, publish; sys.exit(publish._parent_ignores_sigint())']).returncode)")
    assert subprocess.run([sys.executable, "-c", parent], cwd=ROOT).returncode == int(ignored)
