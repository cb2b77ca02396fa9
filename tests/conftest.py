"""Helpers shared by the test modules: where real MNIST is, a tiny fake MNIST, the norms' input shapes, an experiment
that needs no run, and `raises`."""

import hashlib
import os
import re
import struct
from pathlib import Path
from types import SimpleNamespace

# One CPU thread per test process, set before torch loads OpenMP, as the notebook and the experiments run: on a busy
# machine two threads spin at several times the time (benchmarks/threads.py). OMP_NUM_THREADS given outside wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent  # the repository
MNIST_ROOT = os.environ.get("MNIST_ROOT", "data")  # as data.load_mnist: the folder that holds MNIST/raw
# The notebook's road: the modules S6_Normalization.ipynb imports, and all that they import (tests/test_imports.py);
# what a Colab session needs of the repository
ROAD = {"checks", "settings", "model", "utils", "data", "figures", "records", "training", "publish"}
BAD_COUNTS = [0, -1, True, 2.5, "10"]  # each refused where a whole number >= 1 is needed
# The digest of digits no machine has (data.mnist_digest): the store reads a fake record of them without scoring its
# predictions against their labels, wherever MNIST is
ELSEWHERE = "e" * 64
needs_mnist = pytest.mark.skipif(
    not (Path(MNIST_ROOT) / "MNIST" / "raw").is_dir(), reason="real MNIST not found; set MNIST_ROOT"
)


def write_idx(folder: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """MNIST's IDX format: a big-endian header, then raw uint8."""
    n = len(images)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.numpy().tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.numpy().tobytes())


def write_sums(root: Path, wrong: set[str] = frozenset()) -> dict[str, str]:
    """root/SHA256SUMS for the four files under root, with a made-up sum for those in `wrong`; returns {file: sum}."""
    names = sorted(p.relative_to(root).as_posix() for p in (root / "MNIST" / "raw").glob("*-ubyte"))
    sums = {name: "0" * 64 if name in wrong else hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}
    (root / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    return sums


@pytest.fixture
def tiny_mnist(tmp_path):
    """A root folder holding MNIST/raw with 20 training and 10 test digits of random pixels, labels 0-9 in turn, and
    the SHA256SUMS that lists them (they are not MNIST's files, whose published sums utils checks otherwise)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
        write_idx(raw, prefix, images, torch.arange(n, dtype=torch.uint8) % 10)
    write_sums(tmp_path)
    return tmp_path


def norm_input_shapes(net) -> list[tuple[int, ...]]:
    """The [C, H, W] shape of the activation each of net's norms sees for one 28x28 image."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, inputs, out: shapes.append(tuple(inputs[0].shape[1:]))) for m in net.norms]
    try:
        net(torch.zeros(1, 1, 28, 28))
    finally:
        for h in hooks:
            h.remove()
    return shapes


@pytest.fixture
def fake_experiment(monkeypatch):
    """Makes experiments for runner.execute that list no run and need no MNIST (the digest of the digits is a
    stand-in): `fake_experiment(value, tables)` summarises to {"value": value}, draws it, and prints `tables`."""
    import matplotlib.pyplot as plt

    import data

    monkeypatch.setattr(data, "mnist_digest", lambda root=None: "0" * 64)

    def figure(results: dict):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.bar([0], [results["summary"]["value"]])
        return fig

    return lambda value, tables=("| a table |",): SimpleNamespace(
        NAME="fake", SEEDS=(1,), OVERRIDES={}, runs=lambda settings, seeds: [],
        summarise=lambda runs, settings, runs_store: {"value": value}, figure=figure, tables=lambda results: list(tables))


def raises(error: type[Exception], *parts: str):
    """pytest.raises that also checks that the message contains every one of `parts`, in any order."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(part)})" for part in parts))


# ---- Protocol 2's experiments on made-up accuracies (their summarise, picks and headlines) ----

def summarised(name: str, acc) -> dict:
    """An experiment's results from made-up accuracies (`acc` of each of its runs' labels), through its summarise."""
    import importlib

    from experiments import runner

    module = importlib.import_module(f"experiments.{name}")
    settings = runner.settings_for(False, **module.OVERRIDES)
    trained = [dict(r, record={"history": [{"test_acc": acc(r)}]}) for r in module.runs(settings, module.SEEDS)]
    return {"summary": module.summarise(trained, settings, None)}


def below_the_rest(variant: str):
    """Accuracies where `variant` is 0.2 points below every other on every seed, with a little spread."""
    return lambda r: 99.5 - (0.2 + 0.01 * (r["seed"] % 2)) * (r["variant"] == variant) + 0.01 * (r["seed"] % 3)


def drift_results(running: float, adapted: float) -> dict:
    """drift's summary with BN running `running` points and BN re-estimated `adapted` points from LN, every shift."""
    from experiments import drift, primary

    seeds = range(12)
    acc = {way: [90.0 + 0.01 * s for s in seeds] for way in drift.WAYS}
    acc[drift.RUNNING] = [a + running * (1 + 0.1 * (s % 2)) for s, a in enumerate(acc["LN"])]
    acc[drift.PRIMARY_WAYS[drift.ADAPTED]] = [a + adapted * (1 + 0.1 * (s % 2)) for s, a in enumerate(acc["LN"])]
    rows = [dict(shift=name, severity=1.0, acc=acc, changed={w: 0 for w in drift.WAYS}) for name in drift.SHIFTS]
    tests = [primary.comparison(f"{label} - LN, {name}", acc[way], acc["LN"], "exact permutation")
             for name in drift.SHIFTS for label, way in drift.PRIMARY_WAYS.items()]
    return {"summary": dict(rows=rows, seeds=12, ways=list(drift.WAYS), primary=primary.decide("drift", tests))}
