"""One CPU thread per process (benchmarks/threads.py says why): set before torch loads its OpenMP runtime, by the
experiments' entry points and by the tests, unless OMP_NUM_THREADS is given."""

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def threads_after(statement: str, **env: str) -> int:
    """torch's thread count in a fresh Python after `statement` (then `import torch`), OMP_NUM_THREADS as in `env`."""
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env
    done = subprocess.run([sys.executable, "-c", f"{statement}\nimport torch\nprint(torch.get_num_threads())"],
                          cwd=ROOT, env=environ, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.slow  # six fresh Pythons that import torch
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one thread is every setting's answer")
@pytest.mark.parametrize("entry", ["experiments.__main__", "experiments.protocol"])
def test_an_entry_point_sets_one_thread_before_torch_loads(entry):
    assert threads_after("pass") > 1  # without it, torch takes a thread per core
    assert threads_after(f"import {entry}") == 1
    assert threads_after(f"import {entry}", OMP_NUM_THREADS="2") == 2  # a person's own setting wins


def test_the_tests_run_with_the_thread_count_conftest_sets_before_torch_loads():
    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])  # 1 unless given outside
