"""The experiments' statistics by hand, and each experiment run end to end in its quick mode."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from conftest import MNIST_ROOT, ROOT, needs_mnist
from experiments import runner, seeds


def test_settings_are_the_notebooks():
    settings = runner.notebook_settings()
    assert settings["EPOCHS"] == 20 and settings["BATCH_SIZE"] == 128 and settings["VARIANTS"] == {"BN": "B", "LN": "L", "GN": "G"}
    assert runner.settings_for(True, EPOCHS=2)["EPOCHS"] == runner.QUICK["EPOCHS"]  # --quick wins
    assert runner.settings_for(False, EPOCHS=2)["EPOCHS"] == 2


def test_standard_error_of_one_accuracy():
    assert runner.standard_error(99.5) == pytest.approx(0.0705, abs=1e-4)  # sqrt(0.995 * 0.005 / 10,000) in points
    assert runner.standard_error(50.0, n=100) == pytest.approx(5.0)


def test_mcnemar_counts_only_the_discordant_digits():
    labels = "0123456789"
    a = "0123456780"  # wrong on the last digit
    b = "9999456789"  # wrong on the first four
    assert runner.mcnemar(a, b, labels) == {"only_a": 4, "only_b": 1, "p": pytest.approx(0.375)}  # 2 * P(X <= 1 | 5, 1/2)
    assert runner.mcnemar(a, a, labels)["p"] == 1.0
    lopsided = runner.mcnemar(labels * 3, "0" * 30, labels * 3)  # 27 digits only A gets right, none only B
    assert lopsided["only_a"] == 27 and lopsided["p"] < 1e-7


def test_paired_t_needs_two_pairs_and_sees_a_consistent_shift():
    assert runner.paired_t([99.5], [99.4]) is None
    assert runner.paired_t([99.5, 99.6, 99.4], [99.5, 99.6, 99.4]) == 1.0
    assert runner.paired_t([99.51, 99.62, 99.43, 99.55], [99.41, 99.50, 99.34, 99.44]) < 0.001
    assert runner.p_value(None) == "-" and runner.p_value(0.0004) == "< 0.001" and runner.p_value(0.25) == "0.250"


def test_time_to_target_sums_the_epochs_up_to_the_first_hit():
    history = [dict(epoch=1, test_acc=98.0, seconds=5.0), dict(epoch=2, test_acc=99.1, seconds=6.0),
               dict(epoch=3, test_acc=98.9, seconds=7.0), dict(epoch=4, test_acc=99.5, seconds=8.0)]
    assert seeds.time_to(history, 99.0) == (2, 11.0)
    assert seeds.time_to(history, 99.4) == (4, 26.0)
    assert seeds.time_to(history, 99.9) == (None, None)


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("name", ["norm_batch", "gn_groups", "bn_test", "seeds", "l1"])
def test_quick_run_writes_its_json_and_figure(tmp_path, name):
    subprocess.run([sys.executable, "-m", "experiments", name, "--quick", "--out-dir", str(tmp_path)], cwd=ROOT,
                   check=True, timeout=600, env={**os.environ, "MNIST_ROOT": str(MNIST_ROOT)})
    results = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert (tmp_path / "Images" / f"{name}.png").stat().st_size > 0
    assert results["experiment"] == name and results["settings"]["EPOCHS"] == runner.QUICK["EPOCHS"]
    assert {"torch", "python", "device", "threads", "git_commit", "jobs"} <= set(results["environment"])
    assert results["runs"] and results["summary"] and results["seconds"] > 0
    module = importlib.import_module(f"experiments.{name}")
    assert all(table.startswith("| ") for table in module.tables(results))
