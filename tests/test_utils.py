"""utils.py, the training engine: L1, train/test/fit, the weights' average, seeding and identical batches, the
OneCycle schedule, the device, predictions and misclassified digits. Small synthetic data unless marked slow."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import checks
import data
import utils
from conftest import BAD_COUNTS, MNIST_ROOT, needs_mnist, raises
from model import Net


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


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    assert utils.get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert utils.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device() == torch.device("cuda")


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
    statm = Path("/proc/self/statm")  # Linux: resident pages now; the peak is only passed by what is above them
    resident = int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20 if statm.exists() else 0.0
    block = torch.empty(int((before - resident + 250) * 2**20), dtype=torch.uint8)  # 50 MB to spare: reused pages
    block[::4096] = 1  # one byte per page: every page resident, without writing them all
    assert utils.peak_memory_mb() >= before + 200
    del block


# ---- from the training loop: evaluation, the weights' average, identical batches, the schedule -------------

CPU = torch.device("cpu")
no_chance_warning = pytest.mark.filterwarnings("ignore:.*chance level:RuntimeWarning")  # random labels: never learned


def random_digits(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


# ---- utils.test ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_evaluation_leaves_parameters_running_statistics_and_mode_untouched(training):
    torch.manual_seed(0)
    net = Net("B").train(training)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = random_digits(64)
    loss, accuracy = utils.test(net, data.TensorLoader(x + 3, y, 32, shuffle=False), CPU)  # shifted: stats would move
    assert net.training is training
    for k, v in net.state_dict().items():  # weights, running_mean, running_var, num_batches_tracked
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        expected = F.nll_loss(net.eval()(x + 3), y).item()
    assert loss == pytest.approx(expected, rel=1e-5) and 0 <= accuracy <= 100


# ---- utils.WeightEMA -------------------------------------------------------------------------------------------

def small_bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def sgd_step(net, optimizer, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 3, generator=g) + 2, torch.randint(0, 2, (8,), generator=g)  # +2: running_mean moves
    optimizer.zero_grad()
    F.cross_entropy(net(x), y).backward()
    optimizer.step()


def test_weight_ema_lags_the_live_weights_after_real_steps():
    net = small_bn_net().train()
    ema = utils.WeightEMA(net, decay=0.9)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    for seed in range(3):
        sgd_step(net, optimizer, seed)
        ema.update(net)
    live, average = net.state_dict(), ema.module.state_dict()
    moved = [k for k, v in live.items() if v.is_floating_point() and not torch.allclose(v, start[k])]
    assert len(moved) == 7  # all but 0.bias, which BatchNorm cancels (a gradient of rounding errors)
    for k in moved:
        assert not torch.allclose(average[k], live[k]) and not torch.allclose(average[k], start[k]), k
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(ema.module.parameters(), net.parameters()))


def test_weight_ema_averages_float_buffers_by_the_formula_and_copies_integer_ones():
    net = small_bn_net().train()
    ema = utils.WeightEMA(net, decay=0.2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    # after n updates the decay is min(decay, (1 + n) / (10 + n)): 2/11 (ramp), then min(0.2, 3/12) = 0.2 (cap)
    for seed, decay in ((0, 2 / 11), (1, 0.2)):
        sgd_step(net, optimizer, seed)
        ema.update(net)
        live = net.state_dict()
        for k, v in live.items():
            expected[k] = decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v.clone()
    average = ema.module.state_dict()
    assert set(average) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                            "1.num_batches_tracked", "2.weight", "2.bias"}
    for k, v in expected.items():
        torch.testing.assert_close(average[k], v, rtol=1e-6, atol=1e-7, msg=k)
    assert average["1.num_batches_tracked"].item() == 2
    assert not torch.allclose(average["1.running_mean"], live["1.running_mean"])  # averaged, not copied
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())  # a frozen copy


def test_weight_ema_rejects_a_model_with_other_state_keys():
    net = small_bn_net()
    other = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))  # no running statistics
    with pytest.raises(ValueError, match="running_mean"):
        utils.WeightEMA(net, decay=0.9).update(other)
    ema = utils.WeightEMA(net, decay=0.9)
    ema.update(net)
    with pytest.raises(ValueError, match="state differs"):  # also after it has been updated from another model
        ema.update(other)


# ---- Every variant of the study sees the same batches ------------------------------------------------------

def batches_each_variant_sees(reseed: bool) -> dict[str, tuple[list, list]]:
    """The notebook's loop over "B", "L", "G" on 96 random digits (3 batches of 32, augmented, one epoch each):
    for each variant the indices of every training batch and the exact images the model received."""
    x, y = random_digits(96)
    x[:, 0, 0, 0] = torch.arange(96.0)  # each digit carries its index, read before augmentation
    indices = []

    def augment(images, generator):
        indices.append(images[:, 0, 0, 0].long())
        return data.augment(images, generator)

    loader = data.TensorLoader(x, y, 32, augment_fn=augment, generator=torch.Generator().manual_seed(0))
    test_loader = data.TensorLoader(x, y, 96, shuffle=False)
    seen = {}
    for norm in ("B", "L", "G"):
        if reseed:
            utils.reseed(1, loader)
        model, inputs, indices = Net(norm), [], []
        model.register_forward_pre_hook(lambda m, args: inputs.append(args[0].clone()) if m.training else None)
        utils.fit(model, loader, test_loader, CPU, epochs=1, max_lr=0.01)
        seen[norm] = (indices, inputs)
    return seen


@no_chance_warning
def test_every_variant_is_trained_on_bitwise_identical_batches():
    seen = batches_each_variant_sees(reseed=True)
    indices, inputs = seen["B"]
    assert len(inputs) == 3 and sorted(torch.cat(indices).tolist()) == list(range(96))
    for norm in ("L", "G"):
        assert all(torch.equal(a, b) for a, b in zip(seen[norm][0], indices, strict=True)), norm
        assert all(torch.equal(a, b) for a, b in zip(seen[norm][1], inputs, strict=True)), norm


@no_chance_warning
def test_without_reseed_the_variants_see_other_batches():
    seen = batches_each_variant_sees(reseed=False)
    for norm in ("L", "G"):
        assert not torch.equal(torch.cat(seen[norm][0]), torch.cat(seen["B"][0])), norm
        assert not torch.equal(torch.cat(seen[norm][1]), torch.cat(seen["B"][1])), norm


# ---- fit's OneCycle schedule ---------------------------------------------------------------------------------

@no_chance_warning
def test_fit_follows_one_cycle_per_optimiser_step(monkeypatch):
    steps = []  # (lr, beta1) that each optimiser step used
    adamw_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        steps.append((self.param_groups[0]["lr"], self.param_groups[0]["betas"][0]))
        return adamw_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 2, 2, generator=g), torch.randint(0, 10, (40,), generator=g)
    loader = data.TensorLoader(x, y, 4, generator=g)  # 10 batches an epoch
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 10), nn.LogSoftmax(dim=1))
    max_lr, epochs = 0.02, 3
    history = utils.fit(model, loader, data.TensorLoader(x, y, 40, shuffle=False), CPU, epochs, max_lr)
    lrs, beta1 = zip(*steps)
    assert len(lrs) == 30
    assert lrs[0] == pytest.approx(max_lr / 25, rel=1e-9)  # div_factor 25
    peak = max(range(30), key=lambda i: lrs[i])
    assert peak == 8 and lrs[peak] == pytest.approx(max_lr, rel=1e-9)  # pct_start 0.3: step 9 of 30 (0.3 * 30 - 1)
    assert all(a < b for a, b in zip(lrs[: peak], lrs[1 : peak + 1]))  # up to the peak, then down to the end
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :]))
    assert lrs[-1] == pytest.approx(max_lr / (25 * 1e4), rel=1e-9)  # final_div_factor 1e4
    assert beta1[0] == pytest.approx(0.95) and beta1[peak] == pytest.approx(0.85) and beta1[-1] == pytest.approx(0.95)
    assert min(beta1) == pytest.approx(0.85) and max(beta1) == pytest.approx(0.95)
    assert [r["lr"] for r in history] == [lrs[0], lrs[10], lrs[20]]  # each epoch records the lr it starts with


def test_fit_turns_on_cudnn_benchmark_for_a_gpu_run_and_restores_it(monkeypatch):
    # fixed input shapes: cuDNN may pick its fastest kernels once, for this run only, not for the caller's code after
    seen = []
    monkeypatch.setattr(utils, "_train", lambda *args: seen.append(torch.backends.cudnn.benchmark) or (0.1, 99.0))
    monkeypatch.setattr(utils, "_test", lambda *args: (0.1, 99.0))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(checks, "available_devices", lambda: ["cpu", "cuda", "cuda:0"])  # as on a GPU machine
    loader = data.TensorLoader(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 2)
    utils.fit(Net("L"), loader, loader, torch.device("cuda"), epochs=2, max_lr=0.01)  # no GPU work: train is stubbed
    assert seen == [True, True]
    assert torch.backends.cudnn.benchmark is False


# ---- Errors for people: each bad argument, file or diverging run is named ------------------------------------


def tiny_run():
    """A linear classifier and a loader of 8 random digits: what fit, train and test need, in milliseconds."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
    return model, data.TensorLoader(torch.randn(8, 1, 28, 28), torch.arange(8), 4, shuffle=False)


@pytest.mark.parametrize("setting, value, parts", [
    ("weight_decay", -1e-4, ["weight_decay must be a finite number >= 0", "-0.0001"]),
    ("weight_decay", "1e-4", ["weight_decay", "'1e-4'"]),
    ("l1_lambda", -1e-5, ["l1_lambda must be a finite number >= 0", "-1e-05"]),
    ("l1_lambda", "1e-5", ["l1_lambda", "'1e-5'"]),
    ("l1_lambda", float("nan"), ["l1_lambda", "nan"]),
    ("ema_decay", "0.99", ["ema_decay must be None or a number in (0, 1)", "'0.99'"]),
    ("ema_decay", 1.5, ["ema_decay", "1.5"]),
    ("ema_decay", True, ["ema_decay", "True"]),
    ("device", "gpu", ["device must be a torch.device", "'gpu'"]),
    ("device", 0, ["device must be a torch.device", "0"]),
    ("on_epoch", "print", ["on_epoch must be None or a function"]),
    ("model", "Net('B')", ["model must be a torch.nn.Module", "str"]),
])
def test_fit_checks_every_setting_as_check_study_does(setting, value, parts):
    model, loader = tiny_run()
    arguments = dict(model=model, train_loader=loader, test_loader=loader, device=CPU, epochs=1, max_lr=0.01)
    with raises(ValueError, *parts):
        utils.fit(**{**arguments, setting: value})


@pytest.mark.parametrize("setting, value, parts", [
    ("l1_lambda", -1.0, ["l1_lambda must be a finite number >= 0"]), ("epoch", 0, ["epoch must be a whole number"]),
    ("device", "cuda:7", ["device must be a torch.device", "'cuda:7'"]),
])
def test_train_checks_its_settings(setting, value, parts):
    model, loader = tiny_run()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with raises(ValueError, *parts):
        utils.train(**{**dict(model=model, loader=loader, optimizer=optimizer, device=CPU), setting: value})


@pytest.mark.parametrize("function", [utils.test, utils.predict, utils.misclassified])
def test_evaluation_names_a_device_this_machine_lacks(monkeypatch, function):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, loader = tiny_run()
    with raises(ValueError, "device must be a torch.device", "'cuda'"):
        function(model, loader, "cuda")
    function(model, loader, "cpu")  # a name this machine has is as good as a torch.device


def test_weight_ema_names_a_decay_given_as_text():
    with raises(ValueError, "decay must be a number in (0, 1)", "'0.99'"):
        utils.WeightEMA(nn.Linear(1, 1), decay="0.99")


# ---- get_device ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps", "gpu", "", "CPU"])
def test_get_device_rejects_what_this_machine_lacks(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with raises(ValueError, f"device {name!r}", "['cpu']"):
        utils.get_device(name)
    assert utils.get_device("cpu") == CPU and utils.get_device(None) == CPU


def test_get_device_rejects_a_gpu_index_beyond_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with raises(ValueError, "device 'cuda:1'", "['cpu', 'cuda', 'cuda:0']"):
        utils.get_device("cuda:1")
    assert utils.get_device("cuda:0") == torch.device("cuda:0")


# ---- misclassified ------------------------------------------------------------------------------------------

class Oracle(nn.Module):
    """Predicts the label written into each image's first pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x.flatten(1)[:, 0].long(), 10).float().log_softmax(dim=1)


def digits(labels: list[int], written: list[int]) -> data.TensorLoader:
    """A loader of images whose first pixel holds `written` (what Oracle predicts), labelled `labels`."""
    images = torch.zeros(len(written), 1, 28, 28)
    images[:, 0, 0, 0] = torch.tensor(written, dtype=torch.float)
    return data.TensorLoader(images, torch.tensor(labels), batch_size=2, shuffle=False)


@pytest.mark.parametrize("n", BAD_COUNTS)
def test_misclassified_rejects_bad_n(n):
    with raises(ValueError, "n must be", repr(n)):
        utils.misclassified(Oracle(), digits([1], [1]), CPU, n=n)


def test_misclassified_rejects_an_empty_loader():
    with raises(ValueError, "the loader is empty", "no images"):
        utils.misclassified(Oracle(), [], CPU)


def test_misclassified_names_a_label_outside_0_9():
    with raises(ValueError, "labels must be classes 0-9", "the first 12"):
        utils.misclassified(Oracle(), [(torch.zeros(2, 1, 28, 28), torch.tensor([0, 12]))], CPU)


def test_predict_refuses_outputs_without_a_class():
    model, loader = tiny_run()
    model[1].bias.data.fill_(float("nan"))  # every output NaN: argmax would say class 0 for every image
    with raises(FloatingPointError, "predict", "NaN or infinite for 8 of 8 images"):
        utils.predict(model, loader, CPU)


@pytest.mark.parametrize("label", [10, -1])
@pytest.mark.parametrize("step", ["train", "test"])
def test_a_plain_loader_with_a_label_outside_0_9_is_named(step, label):
    model, _ = tiny_run()
    loader = [(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, label, 2]))]  # no TensorLoader: nothing checked it
    with raises(ValueError, "labels must be classes 0-9", f"the first {label}"):
        if step == "train":
            utils.train(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), CPU)
        else:
            utils.test(model, loader, CPU)


def test_misclassified_returns_the_few_it_finds():
    images, predicted, true = utils.misclassified(Oracle(), digits([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), CPU, n=10)
    assert images.shape == (0, 1, 28, 28) and predicted.shape == (0,) and true.shape == (0,)
    images, predicted, true = utils.misclassified(Oracle(), digits([1, 2, 3, 4, 5], [1, 7, 3, 8, 5]), CPU, n=10)
    assert images.shape == (2, 1, 28, 28) and predicted.tolist() == [7, 8] and true.tolist() == [2, 4]


# ---- Divergence is an error, never a saved run -------------------------------------------------------------------

class TurnsNaN(nn.Module):
    """A tiny classifier whose outputs become NaN from its `after`-th training forward pass on."""

    def __init__(self, after: int):
        super().__init__()
        self.fc, self.after, self.calls = nn.Linear(784, 10), after, 0

    def forward(self, x):
        self.calls += self.training
        out = F.log_softmax(self.fc(x.flatten(1)), dim=1)
        return out * float("nan") if self.training and self.calls >= self.after else out


def test_a_non_finite_training_loss_stops_within_check_every_batches():
    x, y = torch.randn(200 * 4, 1, 28, 28), torch.arange(800) % 10
    loader = data.TensorLoader(x, y, 4, shuffle=False)
    model = TurnsNaN(after=20)
    with raises(FloatingPointError, "epoch 3", "batch 20 of 200", "most likely from the learning rate (0.01 "):
        utils.train(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), CPU, epoch=3)
    assert model.calls == utils.CHECK_EVERY  # it stopped at the first check after the NaN, not at the epoch's end


def test_a_divergence_under_a_huge_weight_decay_names_the_weight_decay():
    model, _ = tiny_run()
    loader = data.TensorLoader(torch.randn(200 * 4, 1, 28, 28), torch.arange(800) % 10, 4, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=1e4)  # each step: weights x (1 - 200)
    with raises(FloatingPointError, "epoch 3", "most likely from the weight decay", "1 - 0.02 x 10000 = -199",
                "lower weight_decay (WEIGHT_DECAY)"):
        utils.train(model, loader, optimizer, CPU, epoch=3)


def test_a_non_finite_loss_from_the_inputs_says_so():
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    loader = data.TensorLoader(x, y, 4, shuffle=False, augment_fn=lambda images, g: images / 0 * 0)  # NaN images
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
    with raises(FloatingPointError, "batch 1 of 2", "the inputs hold NaN or infinite values"):
        utils.train(model, loader, torch.optim.SGD(model.parameters(), lr=0.01), CPU)


def test_a_non_finite_loss_at_the_first_batch_blames_the_settings_not_the_learning_rate():
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    model = Net("B")
    with raises(FloatingPointError, "epoch 1, batch 1 of 2", "before any optimiser step, so not the learning rate",
                "l1_lambda=1e+300"):  # the L1 term overflows float32 at once
        utils.train(model, data.TensorLoader(x, y, 4), torch.optim.AdamW(model.parameters(), lr=1e-3), CPU,
                    l1_lambda=1e300)


def test_a_non_finite_test_loss_is_an_error():
    model = TurnsNaN(after=0).train()  # NaN in train mode only: switch the eval path to NaN instead
    model.forward = lambda x: torch.full((len(x), 10), float("nan"))
    with raises(FloatingPointError, "non-finite test loss"):
        utils.test(model, data.TensorLoader(torch.randn(8, 1, 28, 28), torch.arange(8), 4, shuffle=False), CPU)
