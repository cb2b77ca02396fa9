import json

import matplotlib
import pytest
import torch
import torch.nn as nn

import utils
from conftest import MNIST_ROOT, needs_mnist
from model import Net, count_parameters


def test_load_mnist_normalises_and_shapes(tiny_mnist):
    images, labels = utils.load_mnist(tiny_mnist, train=True, download=False)
    assert images.shape == (20, 1, 28, 28) and images.dtype == torch.float32
    assert labels.tolist() == [i % 10 for i in range(20)]
    assert images.min() >= utils.BACKGROUND - 1e-6 and images.max() <= (1 - utils.MNIST_MEAN) / utils.MNIST_STD + 1e-6
    test_images, _ = utils.load_mnist(tiny_mnist, train=False, limit=4, download=False)
    assert test_images.shape == (4, 1, 28, 28)


def test_load_mnist_reads_mnist_root(tiny_mnist, monkeypatch):
    monkeypatch.setenv("MNIST_ROOT", str(tiny_mnist))
    assert len(utils.load_mnist(download=False)[0]) == 20


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST_ROOT") as error:
        utils.load_mnist(tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in str(error.value)


def test_loader_covers_every_sample_once_per_epoch():
    images = torch.arange(10.0).reshape(10, 1, 1, 1)
    loader = utils.TensorLoader(images, torch.arange(10), batch_size=3, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 4
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(10))
    assert epochs[0].tolist() != epochs[1].tolist()  # reshuffled
    for x, y in loader:
        assert x.flatten().long().tolist() == y.tolist()  # images stay with their labels


def test_loader_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        utils.TensorLoader(torch.zeros(3, 1, 28, 28), torch.zeros(2), batch_size=2)


def test_augment_shape_seed_and_identity():
    x = torch.randn(6, 1, 28, 28)
    a = utils.augment(x, torch.Generator().manual_seed(1))
    b = utils.augment(x, torch.Generator().manual_seed(1))
    c = utils.augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    identity = utils.augment(x, torch.Generator().manual_seed(1), degrees=0, translate=0, scale=0)
    torch.testing.assert_close(identity, x, atol=1e-5, rtol=1e-5)


def test_augment_fills_with_background():
    blank = torch.full((4, 1, 28, 28), utils.BACKGROUND)
    shifted = utils.augment(blank, torch.Generator().manual_seed(0), degrees=30, translate=0.2, scale=0.2)
    torch.testing.assert_close(shifted, blank)


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


@needs_mnist
def test_short_training_learns():
    utils.set_seed(0)
    images, labels = utils.load_mnist(MNIST_ROOT, limit=512)
    loader = utils.TensorLoader(images, labels, 16, generator=torch.Generator().manual_seed(0))
    net = Net("G")
    history = utils.fit(net, loader, utils.TensorLoader(images, labels, 256, shuffle=False), torch.device("cpu"),
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
        loader = utils.TensorLoader(x, y, 16, augment_fn=utils.augment, generator=g)
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
    loader = utils.TensorLoader(x, y, 10, shuffle=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    with pytest.raises(FloatingPointError, match="epoch 7, batch 1 of 4"):
        utils.train(net, loader, optimizer, torch.device("cpu"), epoch=7)


def test_misclassified_returns_only_wrong_predictions():
    torch.manual_seed(0)
    net = Net("G").eval()
    x, y = torch.randn(200, 1, 28, 28), torch.arange(200) % 10
    images, predicted, true = utils.misclassified(net, utils.TensorLoader(x, y, 50, shuffle=False), torch.device("cpu"), n=10)
    assert images.shape == (10, 1, 28, 28)
    assert (predicted != true).all()
    with torch.inference_mode():
        torch.testing.assert_close(net(images).argmax(dim=1), predicted)
    for image, label in zip(images, true):  # each image keeps its own true label
        index = (x == image).flatten(1).all(dim=1).nonzero().item()
        assert y[index] == label


def test_misclassified_grid_is_5_by_2_with_titles(tmp_path):
    images, labels = torch.randn(10, 1, 28, 28), torch.arange(10)
    fig = utils.plot_misclassified(images, (labels + 1) % 10, labels, "GN", tmp_path / "grid.png")
    axes = fig.axes
    assert len(axes) == 10
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in axes} == {(5, 2)}
    assert axes[0].get_title() == "predicted 1, true 0"
    assert fig._suptitle.get_text() == "GN"
    assert (tmp_path / "grid.png").stat().st_size > 0
    matplotlib.pyplot.close(fig)


def test_metric_and_curve_plots(tmp_path):
    history = [dict(epoch=e, train_loss=1 / e, train_acc=90 + e, test_loss=1 / e, test_acc=91 + e) for e in (1, 2, 3)]
    fig = utils.plot_metric({"BN": history, "GN": history}, "test_loss", tmp_path / "loss.png")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["BN", "GN"]
    fig2 = utils.plot_curves("BN", history, tmp_path / "curves.png")
    assert len(fig2.axes) == 2
    assert (tmp_path / "loss.png").exists() and (tmp_path / "curves.png").exists()
    matplotlib.pyplot.close("all")


def test_summary_leaves_the_model_untouched(capsys):
    net = Net("B").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    utils.print_summary(net)
    assert f"Total params: {count_parameters(net):,}" in capsys.readouterr().out
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_history_round_trip(tmp_path):
    path = tmp_path / "results" / "history.json"
    entry = {"norm": "B", "l1_lambda": 1e-05, "params": 7234,
             "history": [dict(epoch=1, train_loss=0.5, train_acc=88.25, test_loss=0.1, test_acc=97.5, lr=0.004, seconds=5.0)]}
    utils.save_history(path, "BN", entry)
    utils.save_history(path, "GN", {**entry, "norm": "G"})
    loaded = utils.load_history(path)
    assert loaded["BN"] == entry and loaded["GN"]["norm"] == "G"
    assert json.loads(path.read_text()) == loaded
    assert utils.load_history(tmp_path / "absent.json") == {}


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
    loader = utils.TensorLoader(x, y, 16, generator=torch.Generator().manual_seed(0))
    net = Net("B")
    history = utils.fit(net, loader, utils.TensorLoader(x, y, 64, shuffle=False), torch.device("cpu"),
                        epochs=2, max_lr=0.01, ema_decay=0.9)
    assert utils.test(net, utils.TensorLoader(x, y, 64, shuffle=False), torch.device("cpu")) == (
        history[-1]["test_loss"], history[-1]["test_acc"])


def test_peak_memory_counts_a_large_allocation():
    before = utils.peak_memory_mb()
    block = torch.ones(int((before + 200) * 2**20) // 4)  # larger than the whole peak so far, every page touched
    assert utils.peak_memory_mb() >= before + 200
    del block
