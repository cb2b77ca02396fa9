import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import matplotlib
import pytest
import torch
import torch.nn as nn

import data
import figures
import records
import settings
import utils
from conftest import MNIST_ROOT, needs_mnist
from model import Net, count_parameters


def test_load_mnist_normalises_and_shapes(tiny_mnist):
    images, labels = data.load_mnist(tiny_mnist, train=True, download=False)
    assert images.shape == (20, 1, 28, 28) and images.dtype == torch.float32
    assert labels.tolist() == [i % 10 for i in range(20)]
    assert images.min() >= data.BACKGROUND - 1e-6 and images.max() <= (1 - data.MNIST_MEAN) / data.MNIST_STD + 1e-6
    test_images, _ = data.load_mnist(tiny_mnist, train=False, limit=4, download=False)
    assert test_images.shape == (4, 1, 28, 28)


def test_load_mnist_reads_mnist_root(tiny_mnist, monkeypatch):
    monkeypatch.setenv("MNIST_ROOT", str(tiny_mnist))
    assert len(data.load_mnist(download=False)[0]) == 20


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST_ROOT") as error:
        data.load_mnist(tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in str(error.value)


def test_loader_covers_every_sample_once_per_epoch():
    images = torch.arange(10.0).reshape(10, 1, 1, 1)
    loader = data.TensorLoader(images, torch.arange(10), batch_size=3, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 4
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(10))
    assert epochs[0].tolist() != epochs[1].tolist()  # reshuffled
    for x, y in loader:
        assert x.flatten().long().tolist() == y.tolist()  # images stay with their labels


def test_loader_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        data.TensorLoader(torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long), batch_size=2)


def test_augment_shape_seed_and_identity():
    x = torch.randn(6, 1, 28, 28)
    a = data.augment(x, torch.Generator().manual_seed(1))
    b = data.augment(x, torch.Generator().manual_seed(1))
    c = data.augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    identity = data.augment(x, torch.Generator().manual_seed(1), degrees=0, translate=0, scale=0)
    torch.testing.assert_close(identity, x, atol=1e-5, rtol=1e-5)


def test_augment_fills_with_background():
    blank = torch.full((4, 1, 28, 28), data.BACKGROUND)
    shifted = data.augment(blank, torch.Generator().manual_seed(0), degrees=30, translate=0.2, scale=0.2)
    torch.testing.assert_close(shifted, blank)


# ---- augment in physical units: synthetic shapes, measured by the moments of their ink ----------------------
# Pixel coordinates: x to the right, y down; the image centre is at (13.5, 13.5) (align_corners=False).
# affine_grid maps output to input coordinates, input = R(angle) / zoom * output + shift, so the picture moves by
# -shift (in pixels: up to translate * 28 along each axis), turns by the angle and grows by zoom (not 1 / zoom).
AUGMENT_SAMPLES = 2000
YY, XX = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
CENTRE = 13.5


def ink_image(ink: torch.Tensor, n: int = AUGMENT_SAMPLES) -> torch.Tensor:
    """n copies of a [28, 28] picture with ink in [0, 1] on a black background, normalised as MNIST is."""
    return ((ink - data.MNIST_MEAN) / data.MNIST_STD).expand(n, 1, 28, 28).contiguous()


def blob(sigma: float = 1.5) -> torch.Tensor:
    return torch.exp(-((XX - CENTRE) ** 2 + (YY - CENTRE) ** 2) / (2 * sigma**2))


def bar(length: int = 16) -> torch.Tensor:
    """A horizontal bar through the centre, `length` pixels long, with a Gaussian cross-section (sigma 1 pixel)."""
    return (length / 2 + 0.5 - (XX - CENTRE).abs()).clamp(0, 1) * torch.exp(-((YY - CENTRE) ** 2) / 2)


def ink_moments(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image, from the intensities above background: total ink, centroid (x, y) in pixels, the principal axis's
    angle in degrees and the standard deviation along it in pixels (proportional to a bar's length)."""
    w = (images.squeeze(1) - data.BACKGROUND).clamp_min(0)
    mass = w.sum((1, 2))
    x, y = (w * XX).sum((1, 2)) / mass, (w * YY).sum((1, 2)) / mass
    dx, dy = XX - x[:, None, None], YY - y[:, None, None]
    mxx, myy, mxy = ((w * a * b).sum((1, 2)) / mass for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * mxy, mxx - myy))
    major = 0.5 * (mxx + myy) + torch.sqrt(0.25 * (mxx - myy) ** 2 + mxy**2)
    return {"ink": mass, "x": x, "y": y, "angle": angle, "length": major.sqrt()}


def augmented_moments(ink: torch.Tensor, **settings) -> tuple[dict, dict]:
    """The moments of the picture as it is and of AUGMENT_SAMPLES augmentations of it."""
    before = ink_moments(ink_image(ink, 1))
    after = ink_moments(data.augment(ink_image(ink), torch.Generator().manual_seed(0), **settings))
    return before, after


def test_augment_rotates_by_at_most_degrees_and_reaches_them():
    before, after = augmented_moments(bar(), degrees=10, translate=0, scale=0)
    assert abs(before["angle"].item()) < 1e-4
    turn = after["angle"] - before["angle"]  # measured: -9.977 to +9.978 degrees
    assert turn.abs().max() <= 10.2  # degrees read as radians would turn by up to 573 degrees
    assert turn.min() < -9.5 and turn.max() > 9.5  # the whole range, both ways: half of it would fail
    torch.testing.assert_close(after["length"], before["length"].expand(AUGMENT_SAMPLES), rtol=0.005, atol=0)


def test_augment_shifts_by_at_most_translate_times_28_pixels_per_axis():
    before, after = augmented_moments(blob(), degrees=0, translate=0.1, scale=0)
    torch.testing.assert_close(after["ink"], before["ink"].expand(AUGMENT_SAMPLES))  # none of the blob left the image
    for axis in ("x", "y"):
        moved = after[axis] - before[axis]  # measured: -2.797 to +2.799 pixels on each axis
        assert moved.abs().max() <= 2.8 + 0.01, axis  # 0.1 of 28 pixels
        assert moved.min() < -2.7 and moved.max() > 2.7, axis


def test_augment_zooms_lengths_by_1_plus_minus_scale():
    before, after = augmented_moments(bar(), degrees=0, translate=0, scale=0.1)
    ratio = after["length"] / before["length"]
    # measured 0.8994 to 1.1006: the picture grows by zoom in [1 - scale, 1 + scale] (affine_grid divides by it);
    # the inverse, [1 / 1.1, 1 / 0.9] = [0.909, 1.111], would fail both ends
    assert 0.896 < ratio.min() < 0.903 and 1.097 < ratio.max() < 1.104
    assert (after["angle"] - before["angle"]).abs().max() < 1e-3


def test_augment_at_the_notebook_setting_moves_a_centred_blob_under_3_6_pixels():
    # |zoom * R(-angle) shift| per axis is at most 1.1 * 2.8 * (cos 10 + sin 10) = 3.57 pixels, as a distance
    # 1.1 * 2.8 * sqrt(2) = 4.36; measured over 2,000 samples: 3.37 (x) and 3.16 (y) pixels, 4.13 as a distance.
    before, after = augmented_moments(blob(), degrees=10, translate=0.1, scale=0.1)
    dx, dy = after["x"] - before["x"], after["y"] - before["y"]
    assert dx.abs().max() < 3.6 and dy.abs().max() < 3.6
    assert (dx**2 + dy**2).sqrt().max() < 4.4
    assert dx.abs().max() > 3.0 and dy.abs().max() > 3.0


def test_l1_penalty_by_hand_leaves_norms_out():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.GroupNorm(1, 2), nn.Flatten(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([-1.0, 2.0]).reshape(2, 1, 1, 1))
        net[4].weight.copy_(torch.tensor([[3.0, -4.0]]))
        for p in (net[0].bias, net[1].weight, net[1].bias, net[2].weight, net[2].bias, net[4].bias):
            p.fill_(100.0)
    assert utils.l1_penalty(net).item() == 10.0


def test_l1_penalty_has_a_gradient():
    net = Net("B")
    utils.l1_penalty(net).backward()
    assert all(m.weight.grad.abs().sum() > 0 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.slow
@needs_mnist
def test_short_training_learns():
    utils.set_seed(0)
    images, labels = data.load_mnist(MNIST_ROOT, limit=512)
    loader = data.TensorLoader(images, labels, 16, generator=torch.Generator().manual_seed(0))
    net = Net("G")
    history = utils.fit(net, loader, data.TensorLoader(images, labels, 256, shuffle=False), torch.device("cpu"),
                        epochs=10, max_lr=0.01)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 4
    assert history[-1]["test_acc"] > 90
    assert [r["epoch"] for r in history] == list(range(1, 11))


def train_twice(seed):
    runs = []
    for _ in range(2):
        utils.set_seed(seed)
        x, y = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
        g = torch.Generator().manual_seed(seed)
        loader = data.TensorLoader(x, y, 16, augment_fn=data.augment, generator=g)
        net = Net("B")
        history = utils.fit(net, loader, loader, torch.device("cpu"), epochs=2, max_lr=0.01, l1_lambda=1e-4)
        runs.append([(r["train_loss"], r["test_loss"], r["test_acc"]) for r in history])
    return runs


def test_same_seed_same_history():
    first, second = train_twice(3)
    assert first == second


def test_nan_loss_stops_training():
    net = Net("L")
    with torch.no_grad():
        net.fc.bias.fill_(float("nan"))
    x, y = torch.randn(40, 1, 28, 28), torch.arange(40) % 10
    loader = data.TensorLoader(x, y, 10, shuffle=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    with pytest.raises(FloatingPointError, match="epoch 7, batch 1 of 4"):
        utils.train(net, loader, optimizer, torch.device("cpu"), epoch=7)


def test_misclassified_returns_only_wrong_predictions():
    torch.manual_seed(0)
    net = Net("G").eval()
    x, y = torch.randn(200, 1, 28, 28), torch.arange(200) % 10
    images, predicted, true = utils.misclassified(net, data.TensorLoader(x, y, 50, shuffle=False), torch.device("cpu"), n=10)
    assert images.shape == (10, 1, 28, 28)
    assert (predicted != true).all()
    with torch.inference_mode():
        torch.testing.assert_close(net(images).argmax(dim=1), predicted)
    for image, label in zip(images, true):  # each image keeps its own true label
        index = (x == image).flatten(1).all(dim=1).nonzero().item()
        assert y[index] == label


def test_misclassified_grid_is_5_by_2_with_titles(tmp_path):
    images, labels = torch.randn(10, 1, 28, 28), torch.arange(10)
    fig = figures.plot_misclassified(images, (labels + 1) % 10, labels, "GN", tmp_path / "grid.png")
    axes = fig.axes
    assert len(axes) == 10
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in axes} == {(5, 2)}
    assert axes[0].get_title() == "predicted 1, true 0"
    assert fig._suptitle.get_text() == "GN"
    assert (tmp_path / "grid.png").stat().st_size > 0
    matplotlib.pyplot.close(fig)


def test_metric_and_curve_plots(tmp_path):
    history = [dict(epoch=e, train_loss=1 / e, train_acc=90 + e, test_loss=1 / e, test_acc=91 + e) for e in (1, 2, 3)]
    fig = figures.plot_metric({"BN": history, "GN": history}, "test_loss", tmp_path / "loss.png")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["BN", "GN"]
    accuracy = figures.plot_metric({"BN": history}, "test_acc")
    (line,) = accuracy.axes[0].get_lines()
    assert list(line.get_ydata()) == [8, 7, 6] and accuracy.axes[0].get_yscale() == "log"  # every epoch, as error
    fig2 = figures.plot_curves("BN", history, tmp_path / "curves.png")
    assert len(fig2.axes) == 2
    assert (tmp_path / "loss.png").exists() and (tmp_path / "curves.png").exists()
    matplotlib.pyplot.close("all")


def test_summary_leaves_the_model_untouched(capsys):
    net = Net("B").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    figures.print_summary(net)
    assert f"Total params: {count_parameters(net):,}" in capsys.readouterr().out
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_history_round_trip(tmp_path):
    path = tmp_path / "results" / "history.json"
    entry = {"norm": "B", "l1_lambda": 1e-05, "params": 7234,
             "history": [dict(epoch=1, train_loss=0.5, train_acc=88.25, test_loss=0.1, test_acc=97.5, lr=0.004, seconds=5.0)]}
    records.save_history(path, "BN", entry)
    records.save_history(path, "GN", {**entry, "norm": "G"})
    loaded = records.load_history(path)
    assert loaded["BN"] == entry and loaded["GN"]["norm"] == "G"
    assert json.loads(path.read_text()) == loaded
    assert records.load_history(tmp_path / "absent.json") == {}


def table_cells(table: str) -> dict[str, str]:
    """The header cells of a one-model Markdown table mapped to that model's cells."""
    header, _, row = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return dict(zip(header, row, strict=True))


@pytest.mark.parametrize("epochs, second_half, seconds, median", [
    (5, "3-5", [4.0, 1.0, 9.0, 2.0, 30.0], "4.0"),  # sorted 1, 2, 4, 9, 30; the middle epoch's is 9, the mean 9.2
    # 30 epochs: sorted, the middle two are 6 and 7 -> 6.5 (median_low 6, median_high 7, mean 24.2)
    (30, "16-30", [50.0] * 7 + [1.0] * 7 + [7.0] + [50.0] * 7 + [6.0] + [1.0] * 7, "6.5"),
])
def test_results_table_second_half_minimum_and_median_seconds(epochs, second_half, seconds, median):
    first = int(second_half.split("-")[0])
    accuracy = {e: 99.0 + e / 100 for e in range(1, epochs + 1)}
    accuracy[1], accuracy[first - 1], accuracy[first] = 90.0, 95.0, 98.5  # the half's lowest is its first epoch
    history = [dict(epoch=e, train_loss=0.1, train_acc=99.0, test_loss=0.02, test_acc=accuracy[e], lr=0.01,
                    seconds=s) for e, s in zip(range(1, epochs + 1), seconds, strict=True)]
    cells = table_cells(records.results_table({"GN": dict(norm="G", l1_lambda=0.0, params=7234, device="cpu",
                                                        history=history)}))
    assert cells[f"lowest test acc, epochs {second_half} (%)"] == "98.50"  # not 95.00 (one epoch early), not 99.xx
    assert cells["final test acc (%)"] == f"{accuracy[epochs]:.2f}"
    assert cells["seconds / epoch"] == median


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    assert utils.get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert utils.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device() == torch.device("cuda")


def test_weight_ema_ramps_up_and_tracks_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = utils.WeightEMA(net, decay=0.99)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    net[1].num_batches_tracked += 5
    ema.update(net)  # first update: decay min(0.99, 2 / 11)
    weight = 2 / 11 * start["0.weight"] + 9 / 11
    torch.testing.assert_close(ema.module[0].weight, weight)
    assert ema.module[1].num_batches_tracked.item() == 5  # integer buffers are copied
    for _ in range(1000):
        ema.update(net)
    torch.testing.assert_close(ema.module[0].weight, torch.ones(2, 2))
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_weight_ema_rejects_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        utils.WeightEMA(nn.Linear(1, 1), decay=1.0)


def test_fit_with_ema_tests_and_returns_the_average():
    utils.set_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
    loader = data.TensorLoader(x, y, 16, generator=torch.Generator().manual_seed(0))
    net = Net("B")
    history = utils.fit(net, loader, data.TensorLoader(x, y, 64, shuffle=False), torch.device("cpu"),
                        epochs=2, max_lr=0.01, ema_decay=0.9)
    assert utils.test(net, data.TensorLoader(x, y, 64, shuffle=False), torch.device("cpu")) == (
        history[-1]["test_loss"], history[-1]["test_acc"])


def test_peak_memory_counts_a_large_allocation():
    before = utils.peak_memory_mb()
    block = torch.ones(int((before + 200) * 2**20) // 4)  # larger than the whole peak so far, every page touched
    assert utils.peak_memory_mb() >= before + 200
    del block


# ---- Files written by several processes at once ----------------------------------------------------------------------

WRITES = 300  # per writer process


def record(writer: int, n: int) -> dict:
    return {"writer": writer, "n": n, "padding": "x" * 20_000}  # large enough for a reader to catch a half-written one


STUDY = dict(variants={"BN": "B"}, epochs=1, max_lr=0.1, weight_decay=0.0, ema_decay=None, l1_lambda=0.0, groups=2,
             dropout=0.0)
ACTIONS = {  # each writes `data` into folder/record.json as its callers do, or probes folder as a notebook set-up does
    "write_json": lambda folder, data: records.write_json(folder / "record.json", data),
    "replace_file": lambda folder, data: records.replace_file(folder / "record.json",
                                                            lambda tmp: tmp.write_text(json.dumps(data))),
    "replace_files": lambda folder, data: records.replace_files({folder / name: json.dumps(data).encode()
                                                               for name in ("record.json", "other.json")}),
    "check_study": lambda folder, data: settings.check_study(**STUDY, out_dir=folder),
}


def attempt_many(action: str, folder: Path) -> list[str]:
    """The action WRITES times, with this process's records; the errors it raised."""
    errors = []
    for n in range(WRITES):
        try:
            ACTIONS[action](folder, record(os.getpid(), n))
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
    return errors


def in_two_processes(action: str, folder: Path, meanwhile: Callable[[], None] = lambda: time.sleep(0.01)) -> list[str]:
    """attempt_many in two forked processes at once, `meanwhile()` called here until both end; their errors."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(attempt_many, action, folder) for _ in range(2)]
        while not all(future.done() for future in futures):
            meanwhile()
    return [error for future in futures for error in future.result()]


@pytest.mark.parametrize("how", ["write_json", "replace_file", "replace_files"])
def test_two_writers_and_a_reader_on_one_file_lose_nothing(tmp_path, how):
    ACTIONS[how](tmp_path, record(-1, 0))
    reads, torn = [], []

    def read() -> None:
        text = (tmp_path / "record.json").read_text()
        reads.append(len(text))
        try:
            data = json.loads(text)
            assert data == record(data["writer"], data["n"])
        except (ValueError, AssertionError, KeyError, TypeError):
            torn.append(text[:60])

    errors = in_two_processes(how, tmp_path, meanwhile=read)
    assert not errors and not torn, (f"{len(errors)} of {2 * WRITES} writes failed ({errors[:2]}); {len(torn)} of "
                                     f"{len(reads)} reads were not one whole record ({torn[:2]})")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"record.json", "other.json"} if how == "replace_files"
                                                                else {"record.json"})  # no temporary file left
    assert json.loads((tmp_path / "record.json").read_text())["n"] == WRITES - 1


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("where", ["write", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, error, where):
    path = records.write_json(tmp_path / "record.json", {"old": 1})

    def write(tmp: Path) -> None:
        tmp.write_text('{"half": ')
        if where == "write":
            raise error

    def fail(self, target):
        raise error

    if where == "replace":
        monkeypatch.setattr(Path, "replace", fail)
    with pytest.raises(type(error)):
        records.replace_file(path, write)
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
    assert json.loads(path.read_text()) == {"old": 1}


def test_a_written_file_has_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    mode = plain.stat().st_mode
    for path in (records.write_json(tmp_path / "record.json", {}),
                 *records.replace_files({tmp_path / "new.json": b"{}", plain: b"{}"})):
        assert path.stat().st_mode == mode


def test_two_set_ups_probe_one_out_dir_at_once(tmp_path):
    errors = in_two_processes("check_study", tmp_path)
    assert not errors, f"{len(errors)} of {2 * WRITES} set-ups failed: {errors[:3]}"
    assert list(tmp_path.rglob("*")) == [tmp_path / "runs"]
