"""The notebook run with parameters by papermill, as the experiments run it: its outputs, and that a run that fails
or is interrupted leaves the published results as they were and keeps its own finished epochs."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import papermill
import pytest

import utils
from conftest import MNIST_ROOT, ROOT, needs_mnist

NOTEBOOK = ROOT / "S6_Normalization.ipynb"
FIGURES = ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in ("BN", "LN", "GN")]
SMALL = dict(EPOCHS=1, TRAIN_LIMIT=2048, TEST_LIMIT=500, BATCH_SIZE=32)  # 64 steps: well above chance, seconds


def parameters_index(notebook) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))


def test_parameters_cell_holds_the_study_settings():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    source = notebook.cells[parameters_index(notebook)].source
    for setting in ("EPOCHS = 20", "SEED =", "BATCH_SIZE =", "L1_LAMBDA =", 'DATA_ROOT = os.environ.get("MNIST_ROOT", "data")'):
        assert setting in source


def test_papermill_reads_every_setting_of_the_parameters_cell():
    # papermill injects a setting it cannot parse all the same, but warns about it on every run
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tree = ast.parse(notebook.cells[parameters_index(notebook)].source)
    settings = [node.targets[0].id for node in tree.body if isinstance(node, ast.Assign)]
    assert list(papermill.inspect_notebook(NOTEBOOK)) == settings


def test_utils_knows_every_setting_the_notebook_assigns():
    # check_notebook tells an injected typo from a setting by these names: they must be the cells' own
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assigned = lambda cell: [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                             for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
    assert tuple(assigned(notebook.cells[parameters_index(notebook)])) == utils.SETTINGS
    assert tuple(name for cell in notebook.cells[: parameters_index(notebook)] if cell.cell_type == "code"
                 for name in assigned(cell)) == utils.COLAB_SETTINGS


def execute(out_dir, **parameters):
    """Run the notebook with the small settings, DATA_ROOT and OUT_DIR, and `parameters` on top."""
    settings = {**SMALL, "DATA_ROOT": str(MNIST_ROOT), "OUT_DIR": str(out_dir), **parameters}
    return papermill.execute_notebook(NOTEBOOK, out_dir / "executed.ipynb", parameters=settings, cwd=ROOT,
                                      kernel_name="python3", progress_bar=False)


@pytest.fixture
def published(tmp_path):
    """An OUT_DIR holding a copy of the committed results and figures; returns {path: bytes} to compare against."""
    for folder in ("results", "Images"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}


def unchanged(files: dict) -> bool:
    return all(p.read_bytes() == content for p, content in files.items())


@pytest.mark.slow
@needs_mnist
def test_notebook_runs_end_to_end(tmp_path):
    notebook = execute(tmp_path)
    shown = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == len(FIGURES)  # every figure is also in the notebook itself, whatever MPLBACKEND says
    for figure in FIGURES:
        assert (tmp_path / "Images" / f"{figure}.png").stat().st_size > 0, figure
    runs = json.loads((tmp_path / "results" / "history.json").read_text())
    assert list(runs) == ["BN", "LN", "GN"]
    assert runs["BN"]["l1_lambda"] > 0 and runs["LN"]["l1_lambda"] == 0
    for run in runs.values():
        assert len(run["history"]) == 1 and len(run["predictions"]) == SMALL["TEST_LIMIT"]
        assert run["settings"]["EPOCHS"] == 1 and run["settings"]["SEED"] == 1
        assert {"torch", "python", "device", "threads", "git_commit"} <= set(run["environment"])
    (run_dir,) = (tmp_path / "runs").glob("study-*")  # the run's own copy stays
    assert json.loads((run_dir / "results" / "history.json").read_text()) == runs


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("setting, value, message", [
    ("DATA_ROOT", "{tmp}/nowhere", "MNIST_ROOT"),
    ("GROUPS", 3, "groups=3"),
    ("EPOCHS", 0, "EPOCHS"),
    ("BATCH_SIZE", 0, "BATCH_SIZE"),
    ("VARIANTS", {"BN": "B", "XN": "X"}, "norm must be one of"),
    ("TEST_LIMIT", 0, "TEST_LIMIT"),
    ("MAX_LRR", 0.5, "did you mean MAX_LR"),  # a typo: papermill injects it all the same
])
def test_a_failing_run_changes_nothing(tmp_path, published, setting, value, message):
    value = value.format(tmp=tmp_path) if isinstance(value, str) else value
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        execute(tmp_path, **{setting: value})
    assert unchanged(published)
    assert not list(tmp_path.glob("runs/study-*/results"))  # it failed before the first training step


@pytest.mark.slow
@needs_mnist
def test_an_interrupted_run_keeps_its_finished_epochs(tmp_path, published):
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "executed.ipynb"), "--cwd", str(ROOT),
               "-p", "DATA_ROOT", str(MNIST_ROOT), "-p", "OUT_DIR", str(tmp_path), "-p", "EPOCHS", "20",
               "-p", "TRAIN_LIMIT", "2048", "-p", "TEST_LIMIT", "500", "-p", "BATCH_SIZE", "32"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # wait for the first finished epoch, then interrupt the run
            histories = list(tmp_path.glob("runs/study-*/results/history.json"))
            if histories and len(json.loads(histories[0].read_text() or "{}").get("BN", {}).get("history", [])) >= 2:
                break
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.5)
        else:
            pytest.fail("no epoch finished in time")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # papermill and its kernel, as a closed laptop or a Ctrl-C would
        process.wait()
    assert unchanged(published)
    kept = json.loads(histories[0].read_text())["BN"]["history"]
    assert [r["epoch"] for r in kept[:2]] == [1, 2]
