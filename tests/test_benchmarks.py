"""The benchmarks run (on a subset); their timings are not asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MNIST_ROOT, needs_mnist

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # subprocesses that train and time: CI only


@needs_mnist
def test_speed_benchmark_runs_on_a_subset():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--root", MNIST_ROOT, "--limit", "512", "--repeats", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    table = result.stdout.split("| pipeline |")[1]
    assert "512 training digits, median of 1 runs" in result.stdout
    assert table.count("\n| ") == 4  # one row per configuration
    assert "| standard | typical |" in table and "| project | project |" in table


def test_step_benchmark_runs(tmp_path):
    out = tmp_path / "step.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--norms", "L", "--batch-size", "16", "--rounds", "1",
         "--steps", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    assert result.stdout.count("\n| L | ") == 5  # 2 layouts x 2 precisions, and compiled
    assert "| L | nchw | fp32 |" in result.stdout and "| 1.00x |" in result.stdout
    assert "| L | channels_last | compiled |" in result.stdout and "1 threads" in result.stdout
    assert out.exists()
