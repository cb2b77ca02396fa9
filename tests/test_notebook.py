"""The notebook run with parameters by papermill: its outputs; that a run which fails, is interrupted however it is
(SIGINT, SIGTERM, a dying kernel, a parent that ignores SIGINT) or is not the committed study leaves the published
results as they were and keeps its own files; and that REPLACE_RESULTS publishes on purpose."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import pytest

import publish
import records
import settings
from conftest import MNIST_ROOT, ROOT, needs_mnist

NOTEBOOK = ROOT / "S6_Normalization.ipynb"
FIGURES = ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in ("BN+L1", "LN", "GN")]
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


def test_settings_knows_every_setting_the_notebook_assigns():
    # settings.check tells an injected typo from a setting by these names: they must be the cells' own
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assigned = lambda cell: [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                             for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
    assert tuple(assigned(notebook.cells[parameters_index(notebook)])) == tuple(settings.SETTINGS)
    assert tuple(name for cell in notebook.cells[: parameters_index(notebook)] if cell.cell_type == "code"
                 for name in assigned(cell)) == settings.COLAB_SETTINGS


@pytest.fixture(autouse=True)
def sigint_reaches_this_process():
    """The kernels run here are children of pytest, and the notebook never publishes under a parent that ignores
    SIGINT (as a shell's background job does): let it reach pytest, as in a foreground run, whoever started it."""
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)


def test_the_parameters_cell_as_written_is_the_committed_study():
    # a run of the notebook as it stands publishes (its settings are those results/history.json records) and a run
    # with any setting changed does not, unless REPLACE_RESULTS says so
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    names = {}
    exec(notebook.cells[parameters_index(notebook)].source, names)
    settings = {k: v for k, v in names.items() if k.isupper() and k not in ("DATA_ROOT", "OUT_DIR", "REPLACE_RESULTS")}
    committed = records.load_history(ROOT / "results" / "history.json")
    assert json.loads(json.dumps(settings)) == publish._study_settings(committed)
    assert names["REPLACE_RESULTS"] is False


def test_runs_started_in_one_second_get_folders_of_their_own(tmp_path):
    # cell 3's lines that make run_dir, run twice within one second: two folders, each of its own
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(cell for cell in notebook.cells if "run_dir = " in cell.source)
    lines = cell.source.splitlines()
    start = next(i for i, line in enumerate(lines) if "Path(OUT_DIR)" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("run_dir ="))
    making = "\n".join(["import tempfile", "from datetime import datetime", "from pathlib import Path",
                        *lines[start : end + 1]])
    folders = []
    for _ in range(2):
        names = {"OUT_DIR": str(tmp_path)}
        exec(making, names)
        folders.append(names["run_dir"])
    assert folders[0] != folders[1] and all(folder.is_dir() for folder in folders)
    assert sorted(tmp_path.glob("runs/study-*")) == sorted(folders)


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
    assert list(runs) == ["BN+L1", "LN", "GN"]
    assert runs["BN+L1"]["l1_lambda"] > 0 and runs["LN"]["l1_lambda"] == 0
    for run in runs.values():
        assert len(run["history"]) == 1 and len(run["predictions"]) == SMALL["TEST_LIMIT"]
        assert run["settings"]["EPOCHS"] == 1 and run["settings"]["SEED"] == 1
        assert {"torch", "python", "device", "threads", "git_commit"} <= set(run["environment"])
    (run_dir,) = (tmp_path / "runs").glob("study-*")  # the run's own copy stays
    assert json.loads((run_dir / "results" / "history.json").read_text()) == runs


# The research road's packages (the run store's safetensors, the statistics' scipy, the cluster's dask): the notebook's
# road (tests/test_imports.py's ROAD) needs none of them
RESEARCH_ONLY = ("safetensors", "scipy", "dask")
REFUSER = """# tests/test_notebook.py's: this Python cannot import {names}, as a runtime without them; it notes each start
import sys
from pathlib import Path


class Refuser:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {names!r}:
            raise ImportError(f"{{name}} is refused here (tests/test_notebook.py)")
        return None


sys.meta_path.insert(0, Refuser())
with open(Path(__file__).with_name("started"), "a") as log:
    log.write(" ".join(sys.orig_argv) + "\\n")
"""


@pytest.mark.slow
@needs_mnist
def test_the_notebook_runs_without_the_research_roads_packages(tmp_path, monkeypatch):
    """In a kernel that cannot import safetensors, scipy or dask (a sitecustomize.py on its PYTHONPATH refuses them),
    the notebook runs end to end, as quick as test_notebook_runs_end_to_end."""
    refuser = tmp_path / "refuser"
    refuser.mkdir()
    (refuser / "sitecustomize.py").write_text(REFUSER.format(names=RESEARCH_ONLY))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(refuser), os.environ.get("PYTHONPATH")])))
    for name in RESEARCH_ONLY:  # the refuser works: where it is on the path, each import fails
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
        assert f"{name} is refused here" in done.stderr
    execute(tmp_path)
    assert any("ipykernel" in line for line in (refuser / "started").read_text().splitlines())  # the kernel had it
    assert len(json.loads(next(tmp_path.glob("runs/study-*/results/history.json")).read_text())) == 3


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
    ("max_lrr", 0.5, "unknown setting max_lrr=0.5: did you mean MAX_LR"),  # in any case (its injected cell is read)
    ("seed_", 3, "unknown setting seed_=3: did you mean SEED"),
])
def test_a_failing_run_changes_nothing(tmp_path, published, setting, value, message):
    value = value.format(tmp=tmp_path) if isinstance(value, str) else value
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        execute(tmp_path, **{setting: value})
    assert unchanged(published)
    assert not list(tmp_path.glob("runs/study-*/results"))  # it failed before the first training step


@pytest.mark.slow
@needs_mnist
def test_a_quick_run_leaves_the_committed_results_alone(tmp_path, published):
    notebook = execute(tmp_path)  # EPOCHS 1 and limits: not the study that made the committed files
    assert unchanged(published)
    assert {p for p in tmp_path.rglob("*") if p.is_file() and "runs" not in p.parts} - set(published) == \
        {tmp_path / "executed.ipynb"}  # nothing added beside them either
    (run_dir,) = (tmp_path / "runs").glob("study-*")  # the run's own files are all there
    assert [f.stem for f in sorted((run_dir / "Images").glob("*.png"))] == sorted(FIGURES)
    assert list(json.loads((run_dir / "results" / "history.json").read_text())) == ["BN+L1", "LN", "GN"]
    said = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert "not published into" in said and "EPOCHS 1 (published: 20)" in said and f"kept in {run_dir}" in said


@pytest.mark.slow
@needs_mnist
def test_replace_results_publishes_a_quick_run_only_where_it_names_what_differs(tmp_path, published):
    with pytest.raises(papermill.PapermillExecutionError, match=r"EPOCHS 1 \(the study: 20\)"):
        execute(tmp_path, REPLACE_RESULTS=True)  # not the whole study: refused before training
    assert unchanged(published) and not list(tmp_path.glob("runs/study-*/results"))
    execute(tmp_path, REPLACE_RESULTS=list(SMALL))  # papermill passes a list
    runs = json.loads((tmp_path / "results" / "history.json").read_text())
    assert {run["settings"]["EPOCHS"] for run in runs.values()} == {1}
    replaced = {tmp_path / "results" / "history.json"} | {tmp_path / "Images" / f"{figure}.png" for figure in FIGURES}
    assert all(p.read_bytes() != content for p, content in published.items() if p in replaced)
    assert unchanged({p: content for p, content in published.items() if p not in replaced})  # the experiments' files


def kernel_of(papermill: int) -> int:
    """The pid of the kernel papermill started (its child), from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == papermill and "ipykernel" in (stat.parent / "cmdline").read_text():
            return int(stat.parent.name)
    raise AssertionError(f"papermill (pid {papermill}) has no kernel")


INTERRUPTS = {  # what is signalled, with what, and whether papermill starts with SIGINT ignored (a background job)
    "SIGINT to the kernel": ("kernel", signal.SIGINT, False),
    "SIGTERM to the kernel": ("kernel", signal.SIGTERM, False),
    "a dying kernel": ("kernel", signal.SIGKILL, False),
    "SIGINT to papermill, which ignores it": ("papermill", signal.SIGINT, True),
}


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("case", INTERRUPTS)
def test_an_interrupted_run_is_never_published_and_keeps_its_finished_epochs(tmp_path, published, case):
    target, signum, ignore_sigint = INTERRUPTS[case]
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "executed.ipynb"), "--cwd", str(ROOT),
               "-p", "DATA_ROOT", str(MNIST_ROOT), "-p", "OUT_DIR", str(tmp_path), "-p", "EPOCHS", "3",
               "-p", "TRAIN_LIMIT", "2048", "-p", "TEST_LIMIT", "500", "-p", "BATCH_SIZE", "32",
               "-y", "REPLACE_RESULTS: [EPOCHS, TRAIN_LIMIT, TEST_LIMIT, BATCH_SIZE]"]  # so that only the interrupt keeps it from publication
    sigint = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "TQDM_DISABLE": "1"}, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    kernel, deadline = None, time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # wait for the first finished epoch, then interrupt the run
            histories = list(tmp_path.glob("runs/study-*/results/history.json"))
            if histories and json.loads(histories[0].read_text() or "{}").get("BN+L1", {}).get("history"):
                break
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished in time")
        kernel = kernel_of(process.pid)
        os.kill(process.pid if target == "papermill" else kernel, signum)
        process.wait(timeout=180)
        while Path(f"/proc/{kernel}").exists() and time.monotonic() < deadline:  # the kernel ends with papermill
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if kernel and Path(f"/proc/{kernel}").exists():
            os.kill(kernel, signal.SIGKILL)
    assert unchanged(published)
    runs = json.loads(histories[0].read_text())
    assert [r["epoch"] for r in runs["BN+L1"]["history"]][:1] == [1]  # its finished epochs stay in its own folder
    if ignore_sigint:  # the run went on to the end, as its parent ignored the interrupt: only the record stopped it
        assert {name: len(run["history"]) for name, run in runs.items()} == {"BN+L1": 3, "LN": 3, "GN": 3}
