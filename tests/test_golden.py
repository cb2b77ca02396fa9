"""The training version's golden numbers: a few steps of every norm on a tiny fixed data set, through the one
training path (training.fit_model), with augmentation, the weights' moving average, L1, dropout and the OneCycle schedule
all on, compared with the values pinned for training.TRAINING_VERSION in tests/golden.json.

Under the torch build, CPU kernels and thread count that pinned them (torch.__version__,
torch.backends.cpu.get_cpu_capability() and torch.get_num_threads(), all in golden.json) the numbers must be equal to
the last bit. Elsewhere (AVX2 against AVX512, or two threads against one: float sums in another order) they must
agree within TOLERANCE. A change to the training path that moves a number fails here until TRAINING_VERSION is bumped
(which gives every run a new key) and the values are pinned again:
`OMP_NUM_THREADS=1 PYTHONPATH=. python tests/test_golden.py`. The last tests show that each of six such changes moves
a number by far more than TOLERANCE, and that the golden runs pass under the other vectorised kernels this torch has
(AVX2 where the pins are AVX512's). torch's portable kernels (ATEN_CPU_CAPABILITY=default, a CPU without AVX2) move
the InstanceNorm run by 4.8e-4, more than the smallest guarded change moves any number: on such a CPU the golden test
cannot tell the two apart, and is skipped, saying so.
"""

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import data
import model
import settings
import training
import utils
from conftest import write_idx, write_sums

pytestmark = pytest.mark.filterwarnings("ignore:epoch .* chance level")  # a few steps on random strokes: no learning

GOLDEN = Path(__file__).with_name("golden.json")
# relative, elsewhere: measured, AVX2 kernels move these numbers by at most 2.3e-6 and a second thread by 2e-7; the
# smallest guarded change below (the EMA's) moves one by 1.8e-4
TOLERANCE = 2e-5
RECIPE = {**settings.RECIPE, "EPOCHS": 2, "BATCH_SIZE": 8, "TEST_BATCH_SIZE": 6, "MAX_LR": 0.05, "EMA_DECAY": 0.3,
          "DROPOUT": 0.1}
RUNS = {"B": dict(norm="B", l1_lambda=1e-3), "B-k4": dict(norm="B", norm_batch=4), "L": dict(norm="L", l1_lambda=1e-3),
        "G": dict(norm="G"), "I": dict(norm="I")}


def golden_data(root: Path) -> Path:
    """24 training and 12 test digits: random strokes on a black background, labels 0-9 in turn (a fixed draw)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 24), ("t10k", 12)):
        images = (torch.rand(n, 28, 28, generator=g) > 0.8).to(torch.uint8) * 255
        write_idx(raw, prefix, images, torch.arange(n, dtype=torch.uint8) % 10)
    write_sums(root)
    return root


def numbers(root: Path) -> dict:
    """Each run's per-epoch numbers (without seconds), its predictions, and its weights (a SHA-256 and a sum of |w|)."""
    recipe = {**RECIPE, "DATA": data.mnist_digest(root)}
    out = {}
    for name, run in RUNS.items():
        spec = training.run_spec(recipe, seed=1, **run)
        net, history, predictions = training.fit_model(spec, torch.device("cpu"), root)
        state = net.state_dict()
        out[name] = {"history": [{k: v for k, v in e.items() if k != "seconds"} for e in history],
                     "predictions": predictions.tolist(),
                     "weights_sha256": hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in state.values())).hexdigest(),
                     "weights_abs_sum": sum(float(t.double().abs().sum()) for t in state.values())}
    return out


def here() -> dict:
    """What decides the golden numbers' last bits besides the code: torch's build, its CPU kernels and threads."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def exact_here(golden: dict) -> bool:
    """Whether this process runs as the one that pinned `golden`: only then must it match bit for bit."""
    return all(golden.get(k) == v for k, v in here().items())


def comparable_here(golden: dict) -> None:
    """Skip, saying why, on a CPU without the vectorised kernels (see the module's docstring)."""
    if not exact_here(golden) and here()["cpu_capability"] == "DEFAULT":
        pytest.skip("this CPU runs torch's portable kernels, which move the golden numbers by more than the smallest "
                    "guarded change: the golden test cannot tell them apart here")


def largest_change(found: dict, pinned: dict) -> float:
    """The largest relative difference between `found` and `pinned` over every epoch's numbers and weight sums."""
    def relative(a: float, b: float) -> float:
        return abs(a - b) / max(abs(a), abs(b), 1.0)
    changes = [relative(a[k], b[k]) for name, run in pinned.items()
               for a, b in zip(found[name]["history"], run["history"], strict=True) for k in b]
    return max(changes + [relative(found[name]["weights_abs_sum"], run["weights_abs_sum"]) for name, run in pinned.items()])


def differences(found: dict, pinned: dict, exact: bool) -> list[str]:
    """Where `found` is not `pinned`: exactly, or within TOLERANCE (then weights by their sum, not their hash)."""
    close = lambda a, b: a == b if exact else math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    wrong = []
    for name, run in pinned.items():
        got = found[name]
        for epoch, (a, b) in enumerate(zip(got["history"], run["history"], strict=True), 1):
            wrong += [f"{name} epoch {epoch} {k}: {a[k]!r} != {b[k]!r}" for k in b if not close(a[k], b[k])]
        if not close(got["weights_abs_sum"], run["weights_abs_sum"]) or exact and got["weights_sha256"] != run["weights_sha256"]:
            wrong.append(f"{name}: weights differ")
        if exact and got["predictions"] != run["predictions"]:
            wrong.append(f"{name}: predictions differ")
    return wrong


@pytest.fixture(scope="module")
def golden_root(tmp_path_factory) -> Path:
    return golden_data(tmp_path_factory.mktemp("golden"))


def pinned() -> dict:
    return json.loads(GOLDEN.read_text())


def test_golden_values_are_those_of_this_training_version(golden_root):
    golden = pinned()
    assert golden["training_version"] == training.TRAINING_VERSION, (
        "TRAINING_VERSION changed: pin its golden values with `python tests/test_golden.py`")
    comparable_here(golden)
    exact = exact_here(golden)
    wrong = differences(numbers(golden_root), golden["runs"], exact)
    assert not wrong, (f"the training path computes other numbers than TRAINING_VERSION {training.TRAINING_VERSION} "
                       f"({'exactly' if exact else f'within {TOLERANCE}'}): bump it and pin them again. "
                       + "; ".join(wrong[:5]))


# The functions the changes below replace, each change calling its original with one thing altered.
AUGMENT, EMA_INIT, L1, MAKE_NORM = data._augment, utils.WeightEMA.__init__, utils.l1_penalty, model.make_norm
ONE_CYCLE, KAIMING = torch.optim.lr_scheduler.OneCycleLR, torch.nn.init.kaiming_uniform_


def with_eps(norm: torch.nn.Module) -> torch.nn.Module:
    norm.eps = 1e-4
    return norm


CHANGES = {  # each alters a number a run records: the golden test must see it
    "augmentation": lambda mp: mp.setattr(data, "_augment", lambda x, g, degrees, translate, scale:
                                          AUGMENT(x, g, degrees * 1.1, translate, scale)),
    "EMA": lambda mp: mp.setattr(utils.WeightEMA, "__init__", lambda self, net, decay: EMA_INIT(self, net, decay * 0.99)),
    "L1": lambda mp: mp.setattr(utils, "l1_penalty", lambda net: L1(net) * 1.01),
    "a norm's epsilon": lambda mp: mp.setattr(model, "make_norm", lambda *a, **k: with_eps(MAKE_NORM(*a, **k))),
    "the schedule": lambda mp: mp.setattr(torch.optim.lr_scheduler, "OneCycleLR",
                                          lambda *a, **k: ONE_CYCLE(*a, **k, pct_start=0.25)),
    "the initialisation": lambda mp: mp.setattr(torch.nn.init, "kaiming_uniform_",
                                                lambda t, a=0, **k: KAIMING(t, a=1.0, **k)),
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_change_moves_a_number_far_beyond_the_tolerance(change, golden_root, monkeypatch):
    """Caught exactly here, and on any other CPU too: the smallest number each change moves moves by over 10 x
    TOLERANCE, while another CPU's kernels move them by about 1e-7 (the next test)."""
    comparable_here(pinned())
    CHANGES[change](monkeypatch)
    runs = pinned()["runs"]
    found = numbers(golden_root)
    moved = largest_change(found, runs)
    print(f"{change}: moves a golden number by {moved:.2e} (relative); tolerance {TOLERANCE:.0e}")
    assert moved > 5 * TOLERANCE and differences(found, runs, exact=False), f"{change} moved no golden number enough"


@pytest.mark.slow  # a fresh Python trains the golden runs again (4-10 s); the fast loop checks them in-process
@pytest.mark.parametrize("threads", [1, 2])
def test_the_golden_runs_pass_under_another_cpus_kernels(golden_root, threads):
    """The golden runs in a child process under the other vectorised kernels (ATEN_CPU_CAPABILITY=avx2 where the pins
    are AVX512's, else avx512), with one thread and with two: other float rounding, as on another CPU, well within
    TOLERANCE (and differing from the pins, or the test would show nothing)."""
    golden = pinned()
    other = "avx2" if golden["cpu_capability"] == "AVX512" else "avx512"
    if here()["cpu_capability"] not in ("AVX2", "AVX512") or other == "avx512" and here()["cpu_capability"] != "AVX512":
        pytest.skip(f"this CPU cannot run torch's {other} kernels")
    script = (f"import json, sys; sys.path[:0] = {[str(Path(__file__).parent), str(Path(__file__).parent.parent)]!r}; "
              f"import test_golden as g, torch; from pathlib import Path; "
              f"print(json.dumps([torch.backends.cpu.get_cpu_capability(), g.numbers(Path({str(golden_root)!r}))]))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": other, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    capability, found = json.loads(done.stdout.strip().splitlines()[-1])
    moved = largest_change(found, golden["runs"])
    print(f"under {capability} kernels, {threads} thread(s), the golden numbers move by {moved:.2e} (relative)")
    assert capability == other.upper() and 0 < moved and not differences(found, golden["runs"], exact=False)


if __name__ == "__main__":  # pin the golden values of this TRAINING_VERSION, under this torch
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        values = numbers(golden_data(Path(folder)))
    GOLDEN.write_text(json.dumps({"training_version": training.TRAINING_VERSION, **here(), "runs": values}, indent=1) + "\n")
    print(f"pinned {GOLDEN} for TRAINING_VERSION {training.TRAINING_VERSION} under {here()}")
