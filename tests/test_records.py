"""records.py: the history file, the results table, and files written by several processes at once."""

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

import records
import settings
from conftest import ROOT, raises


def test_history_round_trip(tmp_path):
    path = tmp_path / "results" / "history.json"
    entry = {"norm": "B", "l1_lambda": 1e-05, "params": 7234,
             "history": [dict(epoch=1, train_loss=0.5, train_acc=88.25, test_loss=0.1, test_acc=97.5, lr=0.004, seconds=5.0)]}
    records.save_history(path, "BN", entry)
    records.save_history(path, "GN", {**entry, "norm": "G"})
    loaded = records.load_history(path)
    assert loaded["BN"] == entry and loaded["GN"]["norm"] == "G"
    assert json.loads(path.read_text()) == loaded
    assert records.load_history(tmp_path / "absent.json") == {}


def table_cells(table: str) -> dict[str, str]:
    """The header cells of a one-model Markdown table mapped to that model's cells."""
    header, _, row = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return dict(zip(header, row, strict=True))


@pytest.mark.parametrize("epochs, second_half, seconds, median", [
    (5, "3-5", [4.0, 1.0, 9.0, 2.0, 30.0], "4.0"),  # sorted 1, 2, 4, 9, 30; the middle epoch's is 9, the mean 9.2
    # 30 epochs: sorted, the middle two are 6 and 7 -> 6.5 (median_low 6, median_high 7, mean 24.2)
    (30, "16-30", [50.0] * 7 + [1.0] * 7 + [7.0] + [50.0] * 7 + [6.0] + [1.0] * 7, "6.5"),
])
def test_results_table_second_half_minimum_and_median_seconds(epochs, second_half, seconds, median):
    first = int(second_half.split("-")[0])
    accuracy = {e: 99.0 + e / 100 for e in range(1, epochs + 1)}
    accuracy[1], accuracy[first - 1], accuracy[first] = 90.0, 95.0, 98.5  # the half's lowest is its first epoch
    history = [dict(epoch=e, train_loss=0.1, train_acc=99.0, test_loss=0.02, test_acc=accuracy[e], lr=0.01,
                    seconds=s) for e, s in zip(range(1, epochs + 1), seconds, strict=True)]
    cells = table_cells(records.results_table({"GN": dict(norm="G", l1_lambda=0.0, params=7234, device="cpu",
                                                        history=history)}))
    assert cells[f"lowest test acc, epochs {second_half} (%)"] == "98.50"  # not 95.00 (one epoch early), not 99.xx
    assert cells["final test acc (%)"] == f"{accuracy[epochs]:.2f}"
    assert cells["seconds / epoch"] == median


# ---- Files written by several processes at once ----------------------------------------------------------------------

WRITES = 300  # per writer process


def record(writer: int, n: int) -> dict:
    return {"writer": writer, "n": n, "padding": "x" * 20_000}  # large enough for a reader to catch a half-written one


STUDY = dict(variants={"BN": "B"}, epochs=1, max_lr=0.1, weight_decay=0.0, ema_decay=None, l1_lambda=0.0, groups=2,
             dropout=0.0)
ACTIONS = {  # each writes `data` into folder/record.json as its callers do, or probes folder as a notebook set-up does
    "write_json": lambda folder, data: records.write_json(folder / "record.json", data),
    "replace_file": lambda folder, data: records.replace_file(folder / "record.json",
                                                            lambda tmp: tmp.write_text(json.dumps(data))),
    "replace_files": lambda folder, data: records.replace_files({folder / name: json.dumps(data).encode()
                                                               for name in ("record.json", "other.json")}),
    "check_study": lambda folder, data: settings.check_study(**STUDY, out_dir=folder),
}


def attempt_many(action: str, folder: Path) -> list[str]:
    """The action WRITES times, with this process's records; the errors it raised."""
    errors = []
    for n in range(WRITES):
        try:
            ACTIONS[action](folder, record(os.getpid(), n))
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
    return errors


def in_two_processes(action: str, folder: Path, meanwhile: Callable[[], None] = lambda: time.sleep(0.01)) -> list[str]:
    """attempt_many in two forked processes at once, `meanwhile()` called here until both end; their errors."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(attempt_many, action, folder) for _ in range(2)]
        while not all(future.done() for future in futures):
            meanwhile()
    return [error for future in futures for error in future.result()]


@pytest.mark.parametrize("how", ["write_json", "replace_file", "replace_files"])
def test_two_writers_and_a_reader_on_one_file_lose_nothing(tmp_path, how):
    ACTIONS[how](tmp_path, record(-1, 0))
    reads, torn = [], []

    def read() -> None:
        text = (tmp_path / "record.json").read_text()
        reads.append(len(text))
        try:
            data = json.loads(text)
            assert data == record(data["writer"], data["n"])
        except (ValueError, AssertionError, KeyError, TypeError):
            torn.append(text[:60])

    errors = in_two_processes(how, tmp_path, meanwhile=read)
    assert not errors and not torn, (f"{len(errors)} of {2 * WRITES} writes failed ({errors[:2]}); {len(torn)} of "
                                     f"{len(reads)} reads were not one whole record ({torn[:2]})")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"record.json", "other.json"} if how == "replace_files"
                                                                else {"record.json"})  # no temporary file left
    assert json.loads((tmp_path / "record.json").read_text())["n"] == WRITES - 1


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("where", ["write", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, error, where):
    path = records.write_json(tmp_path / "record.json", {"old": 1})

    def write(tmp: Path) -> None:
        tmp.write_text('{"half": ')
        if where == "write":
            raise error

    def fail(self, target):
        raise error

    if where == "replace":
        monkeypatch.setattr(Path, "replace", fail)
    with pytest.raises(type(error)):
        records.replace_file(path, write)
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
    assert json.loads(path.read_text()) == {"old": 1}


def test_a_written_file_has_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    mode = plain.stat().st_mode
    for path in (records.write_json(tmp_path / "record.json", {}),
                 *records.replace_files({tmp_path / "new.json": b"{}", plain: b"{}"})):
        assert path.stat().st_mode == mode


def test_two_set_ups_probe_one_out_dir_at_once(tmp_path):
    errors = in_two_processes("check_study", tmp_path)
    assert not errors, f"{len(errors)} of {2 * WRITES} set-ups failed: {errors[:3]}"
    assert list(tmp_path.rglob("*")) == [tmp_path / "runs"]


# ---- Errors for people: each bad argument, file or diverging run is named ------------------------------------


# ---- load_history -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, parts", [
    ('{"BN": {"history": [', ["not valid JSON", "line 1, column 21"]),
    ("", ["not valid JSON", "line 1, column 1"]),
    ("[1, 2]", ["[1, 2]", "not a JSON object"]),
    ('"BN"', ['"BN"', "not a JSON object"]),
    ("null", ["null", "not a JSON object"]),
])
def test_load_history_rejects_a_bad_file(tmp_path, text, parts):
    path = tmp_path / "history.json"
    path.write_text(text)
    with raises(ValueError, str(path), *parts):
        records.load_history(path)


EPOCH = dict(epoch=1, train_loss=0.5, train_acc=88.0, test_loss=0.1, test_acc=97.5, lr=0.004, seconds=5.0)
ENTRY = dict(norm="B", l1_lambda=1e-5, params=7234, device="cpu", history=[EPOCH])
FOREIGN = {  # what a history file must not be mistaken for; each: (its text, what the error says)
    "an experiment's JSON": (json.dumps({"experiment": "seeds", "settings": {"EPOCHS": 20}, "runs": []}),
                             ["model 'experiment' has no 'history' list"]),
    "an entry without history": (json.dumps({"BN": {"norm": "B"}}), ["model 'BN' has no 'history' list"]),
    "history as text": (json.dumps({"BN": {"history": "20 epochs"}}), ["model 'BN' has no 'history' list"]),
    "no epochs": (json.dumps({"BN": {"history": []}}), ["model 'BN' has no 'history' list"]),
    "a record as a list": (json.dumps({"BN": {"history": [[1, 0.5]]}}), ["epoch record 1", "'epoch'"]),
    "a number as text": (json.dumps({"BN": {"history": [EPOCH, {**EPOCH, "test_acc": "97.5"}]}}),
                         ["model 'BN', epoch record 2: no number for ['test_acc']"]),
    "a missing number": (json.dumps({"BN": {"history": [{k: v for k, v in EPOCH.items() if k != "lr"}]}}), ["['lr']"]),
    "a NaN epoch": (json.dumps({"BN": {"history": [EPOCH, {**EPOCH, "epoch": float("nan")}]}}),
                    ["model 'BN', epoch record 2: NaN or infinite ['epoch']"]),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_load_history_refuses_a_file_that_is_no_history(tmp_path, case):
    text, parts = FOREIGN[case]
    path = tmp_path / "history.json"
    path.write_text(text)
    with raises(ValueError, str(path), "is not a history file", *parts):
        records.load_history(path)
    with raises(ValueError, str(path)):  # nor is anything saved into it
        records.save_history(path, "GN", ENTRY)
    assert path.read_text() == text


@pytest.mark.parametrize("runs, parts", [
    ({}, ["no models"]),
    ({"BN": {k: v for k, v in ENTRY.items() if k != "params"}}, ["model 'BN' lacks ['params']"]),
    ({"BN": {**ENTRY, "params": "7,234"}}, ["['params']"]),
    ({"BN": {**ENTRY, "device": None}}, ["['device']"]),
    ({"BN": {**ENTRY, "history": [{**EPOCH, "test_acc": None}]}}, ["epoch record 1", "['test_acc']"]),
    ({"BN": [ENTRY]}, ["model 'BN' has no 'history' list"]),
])
def test_results_table_says_what_is_wrong_with_its_input(runs, parts):
    with raises(ValueError, "results_table", *parts):
        records.results_table(runs)


def test_a_history_that_must_be_there_is_named_when_it_is_not(tmp_path):
    assert records.load_history(tmp_path / "history.json") == {}  # a history yet to start, for save_history
    with raises(ValueError, str(tmp_path / "history.json"), "does not exist"):
        records.load_history(tmp_path / "history.json", missing_ok=False)


def test_results_table_of_the_committed_history_still_works():
    assert records.results_table(records.load_history(ROOT / "results" / "history.json")).count("\n") == 4


def test_nothing_non_finite_goes_into_json(tmp_path):
    path = tmp_path / "history.json"
    records.save_history(path, "BN", {"history": [EPOCH]})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not JSON compliant"):
        records.save_history(path, "LN", {"history": [{**EPOCH, "test_loss": float("nan")}]})
    assert path.read_bytes() == before
