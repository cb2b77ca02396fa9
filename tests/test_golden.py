"""The training version's golden numbers: a few steps of every norm on a tiny fixed data set, through the one
training path (store.fit_model), with augmentation, the weights' moving average, L1, dropout and the OneCycle schedule
all on, compared with the values pinned for store.TRAINING_VERSION in tests/golden.json.

Under the torch that pinned them the numbers must be equal to the last bit; under another, within TOLERANCE. A change
to the training path that moves a number fails here until TRAINING_VERSION is bumped (which gives every run a new key)
and the values are pinned again: `PYTHONPATH=. python tests/test_golden.py`. The last test shows that each of six such changes
is caught.
"""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import data
import model
import settings
import store
import utils
from conftest import write_idx, write_sums

pytestmark = pytest.mark.filterwarnings("ignore:epoch .* chance level")  # a few steps on random strokes: no learning

GOLDEN = Path(__file__).with_name("golden.json")
TOLERANCE = 1e-3  # relative, on another torch: a few steps on 24 digits move by far less, unless the code changed
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
        spec = store.run_spec(recipe, seed=1, **run)
        net, history, predictions = store.fit_model(spec, torch.device("cpu"), root)
        state = net.state_dict()
        out[name] = {"history": [{k: v for k, v in e.items() if k != "seconds"} for e in history],
                     "predictions": predictions.tolist(),
                     "weights_sha256": hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in state.values())).hexdigest(),
                     "weights_abs_sum": sum(float(t.double().abs().sum()) for t in state.values())}
    return out


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
    assert golden["training_version"] == store.TRAINING_VERSION, (
        "TRAINING_VERSION changed: pin its golden values with `python tests/test_golden.py`")
    exact = golden["torch"] == torch.__version__
    wrong = differences(numbers(golden_root), golden["runs"], exact)
    assert not wrong, (f"the training path computes other numbers than TRAINING_VERSION {store.TRAINING_VERSION} "
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
def test_each_change_that_moves_a_number_fails_the_golden_test(change, golden_root, monkeypatch):
    CHANGES[change](monkeypatch)
    golden = pinned()
    assert differences(numbers(golden_root), golden["runs"], golden["torch"] == torch.__version__), \
        f"{change} moved no golden number"


if __name__ == "__main__":  # pin the golden values of this TRAINING_VERSION, under this torch
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        values = numbers(golden_data(Path(folder)))
    GOLDEN.write_text(json.dumps({"training_version": store.TRAINING_VERSION, "torch": torch.__version__,
                                  "runs": values}, indent=1) + "\n")
    print(f"pinned {GOLDEN} for TRAINING_VERSION {store.TRAINING_VERSION} under torch {torch.__version__}")
