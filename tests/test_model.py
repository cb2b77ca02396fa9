import copy

import pytest
import torch
import torch.nn.functional as F

from model import Net, count_macs, count_parameters, make_norm
from conftest import norm_input_shapes
from utils import WORKED_EXAMPLE

NORMS = ["B", "L", "G", "I"]
# Pinned so that any change to the network is a deliberate one: 6,440 conv + 490 linear + 2 * 152 norm affine.
EXPECTED_PARAMETERS = {"B": 7234, "L": 7234, "G": 7234, "I": 7234}

EXAMPLE = WORKED_EXAMPLE  # the README's worked example: 3 images, 4 channels, 1x2 pixels


def batch(n=8, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", NORMS)
def test_output_is_log_probabilities(norm):
    out = Net(norm).eval()(batch())
    assert out.shape == (8, 10)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(8))


@pytest.mark.parametrize("norm", NORMS)
def test_parameter_count_is_pinned_and_under_budget(norm):
    net = Net(norm)
    assert count_parameters(net) == EXPECTED_PARAMETERS[norm]
    assert count_parameters(net) < 8000


def test_macs_by_hand():
    # conv: weights x output positions: 26x26, 24x24, then depthwise + pointwise at 10x10, 8x8, 6x6; linear 48x10.
    expected = 72 * 676 + 1152 * 576 + (144 + 512) * 100 + (288 + 1536) * 64 + (432 + 2304) * 36 + 480
    assert count_macs(Net("G")) == expected


def test_each_norm_sees_the_shape_in_the_docstring():
    # conv2's output is max-pooled before its norm: the norms run at 26x26, then 12x12, 10x10, 8x8, 6x6
    assert norm_input_shapes(Net("B")) == [(8, 26, 26), (16, 12, 12), (32, 10, 10), (48, 8, 8), (48, 6, 6)]


@pytest.mark.parametrize("norm", NORMS)
def test_every_parameter_gets_a_gradient(norm):
    torch.manual_seed(0)
    net = Net(norm, dropout=0.1)
    F.nll_loss(net(batch(16)), torch.arange(16) % 10).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm", NORMS)
def test_batch_independence(norm):
    # In train mode, only BatchNorm mixes the samples of a batch.
    torch.manual_seed(0)
    net = Net(norm, dropout=0.0).train()
    x = batch(8)
    alone = net(x[:1])
    together = net(torch.cat([x[:1], batch(7, seed=1)]))[:1]
    if norm == "B":
        assert not torch.allclose(alone, together, atol=1e-4)
    else:
        torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def normalise(x, dims):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)  # population variance, as the layers use
    return (x - mean) / torch.sqrt(var + 1e-5)


def test_batchnorm_normalises_each_channel_over_batch_and_pixels():
    layer = make_norm("B", 4).train()
    torch.testing.assert_close(layer(EXAMPLE), normalise(EXAMPLE, (0, 2, 3)))


def test_layernorm_normalises_each_sample_over_all_channels_and_pixels():
    layer = make_norm("L", 4)
    torch.testing.assert_close(layer(EXAMPLE), normalise(EXAMPLE, (1, 2, 3)))


def test_groupnorm_normalises_each_group_of_channels_per_sample():
    layer = make_norm("G", 4, groups=2)
    grouped = EXAMPLE.reshape(3, 2, 2, 1, 2)  # [N, groups, channels per group, H, W]
    expected = normalise(grouped, (2, 3, 4)).reshape(EXAMPLE.shape)
    torch.testing.assert_close(layer(EXAMPLE), expected)


def test_instancenorm_normalises_each_channel_per_sample():
    layer = make_norm("I", 4)
    torch.testing.assert_close(layer(EXAMPLE), normalise(EXAMPLE, (2, 3)))


def test_layernorm_runs_on_any_image_size_with_2c_parameters_normalising_each_image():
    layer = make_norm("L", 16)
    assert sum(p.numel() for p in layer.parameters()) == 2 * 16  # one gamma and beta per channel, any H x W
    g = torch.Generator().manual_seed(0)
    for shape in [(3, 16, 6, 6), (2, 16, 13, 9)]:
        # each channel with its own offset and scale: per-channel (instance) or per-group statistics would differ
        x = torch.randn(shape, generator=g) * torch.arange(1.0, 17).view(1, 16, 1, 1) + torch.arange(16.0).view(1, 16, 1, 1)
        torch.testing.assert_close(layer(x), normalise(x, (1, 2, 3)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("alias,expected", [("b", "B"), ("Batch", "B"), ("layer", "L"), ("GROUP", "G"), ("instance", "I")])
def test_norm_names(alias, expected):
    assert Net(alias).norm == expected


@pytest.mark.parametrize("bad", ["X", "", "batchnorm", None, 3])
def test_unknown_norm_is_rejected(bad):
    with pytest.raises(ValueError, match="norm must be one of"):
        Net(bad)


def test_groups_that_do_not_divide_a_layer_are_rejected():
    with pytest.raises(ValueError, match="8 channels"):
        Net("G", groups=3)
    with pytest.raises(ValueError, match="8 channels"):
        Net("G", groups=16)
    assert count_parameters(Net("G", groups=8)) == EXPECTED_PARAMETERS["G"]


def test_bad_dropout_is_rejected():
    with pytest.raises(ValueError, match="dropout"):
        Net("B", dropout=1.5)


@pytest.mark.parametrize("shape", [(8, 28, 28), (8, 3, 28, 28), (8, 1, 32, 32)])
def test_bad_input_shape_is_rejected(shape):
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        Net("B")(torch.zeros(shape))


@pytest.mark.parametrize("norm", NORMS)
def test_channels_last_and_eval_determinism(norm):
    torch.manual_seed(0)
    net = Net(norm, dropout=0.1).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    x = batch()
    out = net(x)
    torch.testing.assert_close(net(x), out, rtol=0, atol=0)
    nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    assert not convs[1].weight.is_contiguous() and nchw.convs[1].weight.is_contiguous()
    torch.testing.assert_close(nchw(x), out, atol=1e-5, rtol=1e-5)
