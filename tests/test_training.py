"""What the training loop promises: test() changes nothing, the weights' average, identical batches for every variant,
the OneCycle schedule. Small synthetic data only: every test here runs in well under a second."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import utils
from model import Net
from utils import test  # noqa: F401  imported under its own name on purpose: pytest must not collect it

CPU = torch.device("cpu")
no_chance_warning = pytest.mark.filterwarnings("ignore:.*chance level:RuntimeWarning")  # random labels: never learned


def random_digits(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_the_evaluation_helper_named_test_is_not_collected(request):
    names = [item.name for item in request.node.parent.collect()]  # this module's tests, whatever -k selects
    assert request.node.name in names and "test" not in names


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
    monkeypatch.setattr(utils, "_available_devices", lambda: ["cpu", "cuda", "cuda:0"])  # as on a GPU machine
    loader = data.TensorLoader(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 2)
    utils.fit(Net("L"), loader, loader, torch.device("cuda"), epochs=2, max_lr=0.01)  # no GPU work: train is stubbed
    assert seen == [True, True]
    assert torch.backends.cudnn.benchmark is False
