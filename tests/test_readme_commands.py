"""Every command the README gives leaves `git status` clean, unless it publishes on purpose: each is run as written
(the quick form where it has one) in a fresh clone of this repository's committed HEAD, with real MNIST."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import MNIST_ROOT, ROOT, needs_mnist

pytestmark = pytest.mark.slow

# The README's commands that this test does not run, each with its reason; any other command it gives is run.
NOT_RUN = {
    "pip install": "installs: changes the environment, not the repository",
    "nbconvert": "the full study: publishes on purpose (tests/test_notebook.py runs it on a subset)",
    "python -m pytest": "this very suite",
    "--scheduler": "needs a Dask cluster (tests/test_experiments.py starts one)",
    "experiments verify": "retrains 6 full runs, ~15 minutes (tests/test_verify.py shows it writes under runs/)",
}
QUICK = {"python -m experiments main": "python -m experiments main --quick"}  # the quick form of a long command


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks, one per line, without their comments; `a && b` as two."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [part.strip() for line in lines if line for part in line.split("&&")]


def test_every_reason_not_to_run_a_command_names_a_readme_command():
    commands = readme_commands()
    assert any("papermill" in c for c in commands) and any("experiments --help" in c for c in commands)
    assert [skip for skip in NOT_RUN if not any(skip in c for c in commands)] == []


@needs_mnist
def test_readme_commands_leave_a_clean_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "MNIST_ROOT": str(Path(MNIST_ROOT).resolve()), "MPLBACKEND": "Agg"}
    ran = []
    for command in readme_commands():
        if any(skip in command for skip in NOT_RUN):
            continue
        command = QUICK.get(command, command)
        words = shlex.split(command)
        assignments = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=\S*", w))
        argv = [w for w in words if w.split("=", 1)[0] not in assignments]
        done = subprocess.run(argv, cwd=clone, env={**env, **assignments}, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
        assert status == "", f"`{command}` left the clone changed:\n{status}"
        ran.append(command)
    assert any("papermill" in c for c in ran) and "python -m experiments main --quick" in ran
