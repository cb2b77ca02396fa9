"""The notebook's Colab set-up cell (cell 1) and the Colab badges built from its GITHUB_REPO and GITHUB_BRANCH.

The cell's own source runs in a fresh `python -I` process (no PYTHONPATH, no script folder or current folder on
sys.path, so the repository's model.py is not importable), started in an empty temporary folder that is put on
sys.path as Colab's kernel has /content and, for "in Colab", a stand-in `google.colab` module in sys.modules. The clone
source is this repository itself (its committed HEAD), through a file:// URL so that --depth applies as on GitHub.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROAD

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "S6_Normalization.ipynb"
PLACEHOLDER = "OWNER/REPO"
PUBLISHED = "someone/s6-normalization"  # a real-looking name for the clone tests; the clone comes from S6_CLONE_URL


def colab_badge(repo: str, branch: str) -> str:
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{repo}/blob/{branch}/S6_Normalization.ipynb)"
    )


def setup_source() -> str:
    return nbformat.read(NOTEBOOK, as_version=4).cells[1].source


def constants(source: str) -> dict[str, ast.Constant]:
    """The set-up cell's top-level `GITHUB_REPO = "..."` and `GITHUB_BRANCH = "..."`, as their string nodes."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("GITHUB_REPO", "GITHUB_BRANCH"):
                assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str), ast.dump(node)
                assert node.targets[0].id not in found, f"{node.targets[0].id} is set twice"
                found[node.targets[0].id] = node.value
    assert set(found) == {"GITHUB_REPO", "GITHUB_BRANCH"}, "the set-up cell must set GITHUB_REPO and GITHUB_BRANCH"
    return found


def with_constants(source: str, **values: str) -> str:
    """The cell's source with the given constants' string literals replaced, every other character unchanged."""
    lines = source.splitlines(keepends=True)
    for name, node in sorted(constants(source).items(), key=lambda item: -item[1].lineno):
        if name in values:
            assert node.lineno == node.end_lineno
            line = lines[node.lineno - 1].encode()  # ast offsets are UTF-8 byte offsets
            lines[node.lineno - 1] = (line[: node.col_offset] + repr(values[name]).encode() + line[node.end_col_offset :]).decode()
    return "".join(lines)


def github_name(url: str) -> str | None:
    """owner/name of a GitHub remote URL (https or ssh form), None for any other URL."""
    match = re.fullmatch(r"(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)([^/]+/[^/]+?)(?:\.git)?/?", url)
    return match.group(1) if match else None


# ---- the badges and the published name ----------------------------------------------------------------------------


def test_badges_are_built_from_the_setup_cell_constants():
    found = constants(setup_source())
    badge = colab_badge(found["GITHUB_REPO"].value, found["GITHUB_BRANCH"].value)
    readme_badges = [line for line in (ROOT / "README.md").read_text().splitlines() if "colab-badge.svg" in line]
    notebook_badges = [line for line in nbformat.read(NOTEBOOK, as_version=4).cells[0].source.splitlines() if "colab-badge.svg" in line]
    assert readme_badges == [badge]
    assert notebook_badges == [badge]


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/someone/s6-normalization.git", "someone/s6-normalization"),
        ("https://github.com/someone/s6-normalization", "someone/s6-normalization"),
        ("https://user@github.com/someone/s6.normalization/", "someone/s6.normalization"),
        ("git@github.com:someone/s6-normalization.git", "someone/s6-normalization"),
        ("ssh://git@github.com/someone/s6-normalization.git", "someone/s6-normalization"),
        ("https://gitlab.com/someone/s6-normalization.git", None),
        ("/srv/git/s6-normalization.git", None),
    ],
)
def test_github_name(url, name):
    assert github_name(url) == name


def test_the_cell_and_the_readme_ask_for_the_notebooks_road_alone():
    """The modules the cell asks a Colab session to upload, as README.md's "In Colab" does: what the notebook imports
    and all that imports (ROAD), no more (not store.py, nor experiments/) and no fewer."""
    cell = re.search(r'modules = "([^"]*)"', setup_source()).group(1)
    readme = next(part for part in (ROOT / "README.md").read_text().split("\n\n") if "Files pane" in part)
    for text in (cell, readme):
        assert set(re.findall(r"(\w+)\.py\b", text)) == ROAD and "experiments" not in text


def test_github_repo_names_the_origin_remote():
    """Once the repository has a GitHub origin, the placeholder (or any other name) in GITHUB_REPO fails here."""
    origin = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True, text=True)
    if origin.returncode != 0:
        pytest.skip("no origin remote (the repository has no public address yet): GITHUB_REPO is not checked against it")
    name = github_name(origin.stdout.strip())
    if name is None:
        pytest.skip(f"origin {origin.stdout.strip()} is not on GitHub: GITHUB_REPO is not checked against it")
    assert constants(setup_source())["GITHUB_REPO"].value == name


# ---- running the set-up cell ---------------------------------------------------------------------------------------

DRIVER = r"""
import json, subprocess, sys, types

args = json.loads(sys.argv[1])
sys.path.insert(0, __import__("os").getcwd())  # as Colab's kernel, whose start folder /content is on sys.path
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]  # Colab
# has not `pip install -e .`d this repository (requirements.txt has, here)
if args["colab"]:
    sys.modules["google.colab"] = types.ModuleType("google.colab")
for name in args["hide"]:  # as a runtime without it: find_spec gives None, import raises ImportError
    sys.modules[name] = None
calls, real_run = [], subprocess.run

def run(cmd, *a, **k):  # records every command; pip is faked (no network), anything else really runs
    calls.append({"cmd": [str(c) for c in cmd], "check": k.get("check", False)})
    if "pip" in cmd:
        return subprocess.CompletedProcess(cmd, 0)
    return real_run(cmd, *a, **k)

subprocess.run = run
result = {"error": None}
try:
    for _ in range(args["runs"]):
        exec(compile(open(args["cell"]).read(), "<setup cell>", "exec"), {"__name__": "__main__"})
except Exception as e:
    result["error"], result["message"] = type(e).__name__, str(e)
result["calls"], result["cwd"] = calls, __import__("os").getcwd()
if result["error"] is None:
    import importlib.util
    spec = importlib.util.find_spec("model")
    result["model_spec"] = spec and spec.origin
    if args["import_model"]:
        import model  # imports torch: a few seconds
        result["model_file"] = model.__file__
print(json.dumps(result))
"""


@pytest.fixture
def branch() -> str:
    """The branch this repository has checked out: the clone tests clone it, and must find it."""
    name = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True, check=True)
    assert name.stdout.strip() != "HEAD", "detached HEAD: no branch to clone"
    return name.stdout.strip()


@pytest.fixture
def session(tmp_path):
    """Runs the set-up cell as a fresh Colab (or other) kernel would, in the empty folder tmp_path/content."""
    tmp_path = tmp_path.resolve()  # os.getcwd() in the child is the resolved path
    content = tmp_path / "content"
    content.mkdir()
    clone_dir = tmp_path / "clones" / "s6-normalization"

    def run_cell(source, colab=True, runs=1, url=ROOT.as_uri(), import_model=False, hide=()):
        cell = tmp_path / "cell.py"
        cell.write_text(source)
        args = dict(cell=str(cell), colab=colab, runs=runs, import_model=import_model, hide=list(hide))
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "S6_CLONE_URL": url, "S6_CLONE_DIR": str(clone_dir), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-I", "-c", DRIVER, json.dumps(args)], cwd=content, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    run_cell.content, run_cell.clone_dir = content, clone_dir
    return run_cell


def clones(result) -> list[list[str]]:
    return [call["cmd"] for call in result["calls"] if call["cmd"][:2] == ["git", "clone"]]


def test_placeholder_in_colab_raises_with_instructions(session):
    result = session(setup_source())
    assert result["error"] == "RuntimeError"
    for words in ("upload checks.py, model.py, utils.py, data.py, figures.py, records.py, training.py, settings.py and publish.py", str(session.content), "Files pane", "set GITHUB_REPO", "OWNER/REPO"):
        assert words in result["message"]
    assert result["calls"] == [] and not session.clone_dir.exists()


@pytest.mark.parametrize("repo", ["noslash", "owner/..", "", "owner/name/extra", "own er/name"])
def test_a_malformed_github_repo_is_named_before_any_clone(session, repo):
    result = session(with_constants(setup_source(), GITHUB_REPO=repo))
    assert result["error"] == "ValueError" and f"got {repo!r}" in result["message"]
    assert "GITHUB_REPO must be a GitHub repository as 'owner/name'" in result["message"]
    assert result["calls"] == [] and not session.clone_dir.exists()


def test_published_name_clones_once_and_makes_model_importable(session, branch):
    result = session(with_constants(setup_source(), GITHUB_REPO=PUBLISHED, GITHUB_BRANCH=branch))
    assert result["error"] is None, result
    assert clones(result) == [["git", "clone", "-q", "--branch", branch, "--depth", "1", ROOT.as_uri(), str(session.clone_dir)]]
    assert all(call["check"] is True for call in result["calls"])
    assert result["calls"] == [result["calls"][0]]  # torchsummary is installed here: no pip
    assert result["cwd"] == str(session.clone_dir)
    assert result["model_spec"] == str(session.clone_dir / "model.py")
    shallow = subprocess.run(["git", "-C", str(session.clone_dir), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True)
    assert shallow.stdout.strip() == "true"


@pytest.mark.slow  # `import model` imports torch: about 3 s
def test_cloned_model_imports(session, branch):
    result = session(with_constants(setup_source(), GITHUB_REPO=PUBLISHED, GITHUB_BRANCH=branch), import_model=True)
    assert result["error"] is None, result
    assert result["model_file"] == str(session.clone_dir / "model.py")


def test_rerun_and_restarted_runtime_reuse_the_clone(session, branch):
    source = with_constants(setup_source(), GITHUB_REPO=PUBLISHED, GITHUB_BRANCH=branch)
    first = session(source, runs=2)  # Run all twice in one kernel
    assert first["error"] is None, first
    assert len(clones(first)) == 1
    marker = session.clone_dir / "left-by-the-test"
    marker.write_text("the clone folder must not be recreated")
    again = session(source)  # a restarted runtime: model.py is not importable, the clone folder is there
    assert again["error"] is None, again
    assert clones(again) == []
    assert again["cwd"] == str(session.clone_dir) and marker.exists()


def test_failed_clone_raises(session, branch):
    missing = (session.content.parent / "no-such-repo.git").as_uri()
    result = session(with_constants(setup_source(), GITHUB_REPO=PUBLISHED, GITHUB_BRANCH=branch), url=missing)
    assert result["error"] == "CalledProcessError", result
    assert result["cwd"] == str(session.content)


@pytest.mark.parametrize("route", ["upload", pytest.param("clone", marks=pytest.mark.slow)])  # a clone: about 1.2 s each
@pytest.mark.parametrize("missing", [["torchsummary"], ["torchsummary", "safetensors", "scipy", "dask"]])
def test_missing_packages_are_installed_with_pip_on_either_route(session, branch, route, missing):
    """Uploaded files or a clone: either way the cell pip-installs, once, what the notebook's road lacks
    (torchsummary), never what only the research road needs (the run store's safetensors, scipy, dask)."""
    if route == "upload":
        (session.content / "model.py").write_text("")  # as uploaded with the Files pane
        source = setup_source()
    else:
        source = with_constants(setup_source(), GITHUB_REPO=PUBLISHED, GITHUB_BRANCH=branch)
    result = session(source, hide=missing)
    assert result["error"] is None, result
    assert len(clones(result)) == (route == "clone")
    pip = [call for call in result["calls"] if "pip" in call["cmd"]]
    assert [call["cmd"] for call in pip] == [[sys.executable, "-m", "pip", "install", "-q", "torchsummary"]]
    assert pip[0]["check"] is True
    assert result["calls"][-1] == pip[0]  # after the clone, so a failed clone installs nothing


OTHER = "https://github.com/other/project.git"


@pytest.mark.parametrize(
    "make, origin",
    [
        pytest.param([], "not a git checkout", id="plain-folder"),
        pytest.param([["git", "init", "-q"]], "origin: none", id="no-origin"),
        pytest.param([["git", "init", "-q"], ["git", "remote", "add", "origin", OTHER]], f"origin: {OTHER}", id="other-origin"),
    ],
)
def test_existing_folder_of_another_project_is_refused(session, branch, make, origin):
    """A folder where the clone would go is reused only if its origin is the clone URL; else the cell says what to do."""
    session.clone_dir.mkdir(parents=True)
    (session.clone_dir / "model.py").write_text("raise SystemExit('another project')\n")
    for cmd in make:
        subprocess.run(cmd, cwd=session.clone_dir, check=True, capture_output=True)
    result = session(with_constants(setup_source(), GITHUB_REPO=PUBLISHED, GITHUB_BRANCH=branch))
    assert result["error"] == "RuntimeError", result
    for words in (str(session.clone_dir), ROOT.as_uri(), origin, "Remove that folder", "S6_CLONE_DIR"):
        assert words in result["message"]
    assert not [call for call in result["calls"] if "clone" in call["cmd"] or "pip" in call["cmd"]]
    assert result["cwd"] == str(session.content)
    assert (session.clone_dir / "model.py").exists()


def test_outside_colab_does_nothing(session):
    for source in (setup_source(), with_constants(setup_source(), GITHUB_REPO=PUBLISHED)):
        result = session(source, colab=False, hide=["torchsummary", "safetensors"])  # nor installs anything
        assert result["error"] is None and result["calls"] == [] and result["cwd"] == str(session.content)
        assert result["model_spec"] is None  # the repository's model.py is out of reach, as meant
    assert not session.clone_dir.exists()


def test_uploaded_model_in_colab_does_nothing(session):
    (session.content / "model.py").write_text("")  # as uploaded with the Files pane (find_spec does not run it)
    result = session(setup_source())
    assert result["error"] is None and result["calls"] == [] and result["cwd"] == str(session.content)
    assert result["model_spec"] == str(session.content / "model.py")
    assert not session.clone_dir.exists()
