"""Runs the whole notebook for one epoch on a few digits, writing into a temporary folder."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import MNIST_ROOT, needs_mnist

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in ("BN", "LN", "GN")]


def parameters_index(notebook) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))


def test_parameters_cell_holds_the_study_settings():
    notebook = nbformat.read(ROOT / "S6_Normalization.ipynb", as_version=4)
    source = notebook.cells[parameters_index(notebook)].source
    for setting in ("EPOCHS = 20", "SEED =", "BATCH_SIZE =", "L1_LAMBDA =", 'DATA_ROOT = os.environ.get("MNIST_ROOT", "data")'):
        assert setting in source


@pytest.mark.slow
@needs_mnist
def test_notebook_runs_end_to_end(tmp_path):
    notebook = nbformat.read(ROOT / "S6_Normalization.ipynb", as_version=4)
    overrides = f"EPOCHS = 1\nTRAIN_LIMIT = 1024\nTEST_LIMIT = 1000\nDATA_ROOT = {str(MNIST_ROOT)!r}\nOUT_DIR = {str(tmp_path)!r}"
    notebook.cells.insert(parameters_index(notebook) + 1, nbformat.v4.new_code_cell(overrides))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()

    shown = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == len(FIGURES)  # every figure is also in the notebook itself, whatever MPLBACKEND says
    for figure in FIGURES:
        assert (tmp_path / "Images" / f"{figure}.png").stat().st_size > 0, figure
    runs = json.loads((tmp_path / "results" / "history.json").read_text())
    assert list(runs) == ["BN", "LN", "GN"]
    assert runs["BN"]["l1_lambda"] > 0 and runs["LN"]["l1_lambda"] == 0
    assert all(len(run["history"]) == 1 for run in runs.values())
