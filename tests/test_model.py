import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import Net, count_macs, count_parameters, make_norm
from conftest import norm_input_shapes
from records import WORKED_EXAMPLE

NORMS = ["B", "L", "G", "I", "N"]
# Pinned so that any change to the network is a deliberate one: 6,440 conv + 490 linear + 2 * 152 norm affine; without
# a norm ("N"), a bias per convolution output channel (152) instead of the norms' 304.
EXPECTED_PARAMETERS = {"B": 7234, "L": 7234, "G": 7234, "I": 7234, "N": 7082}

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


def test_no_norm_is_the_same_skeleton_with_identities_and_biased_convolutions():
    bare, normed = Net("N"), Net("B")
    assert all(isinstance(m, torch.nn.Identity) for m in bare.norms) and len(bare.norms) == len(normed.norms)
    convs = [m for m in bare.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.bias is not None for m in convs] == [True, True, False, True, False, True, False, True]  # not depthwise
    assert [m.weight.shape for m in convs] == [m.weight.shape for m in normed.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("alias,expected", [("b", "B"), ("Batch", "B"), ("layer", "L"), ("GROUP", "G"), ("instance", "I"),
                                            ("none", "N"), ("n", "N")])
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


def test_a_numpy_array_is_named_with_how_to_convert_it():
    with pytest.raises(ValueError, match=r"expected a torch\.Tensor .* got numpy\.ndarray: convert it with torch\.as_tensor"):
        Net("B")(np.zeros((8, 1, 28, 28), dtype=np.float32))


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


# Ghost batches: Net(norm="B", norm_batch=k) normalises over groups of k images of the batch.

def ghost_and_plain(channels=4, k=8):
    ghost, plain = make_norm("B", channels, norm_batch=k), torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5), plain.bias.uniform_(-0.5, 0.5)
    ghost.load_state_dict(plain.state_dict())
    return ghost, plain


@pytest.mark.parametrize("n, k", [(16, 16), (16, 64)])
def test_ghost_batchnorm_is_batchnorm_when_one_group_holds_the_batch(n, k):
    torch.manual_seed(0)
    ghost, plain = ghost_and_plain(k=k)
    x = torch.randn(n, 4, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(n, 4, 5, 5)
    (grad_ghost,) = torch.autograd.grad((ghost(x) * weights).sum(), x)
    (grad_plain,) = torch.autograd.grad((plain(x) * weights).sum(), x)
    torch.testing.assert_close(ghost(x), plain(x))
    torch.testing.assert_close(grad_ghost, grad_plain)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(plain, name))


@pytest.mark.parametrize("n, k, layout", [(16, 4, torch.contiguous_format), (19, 4, torch.contiguous_format),
                                          (19, 4, torch.channels_last), (16, 1, torch.channels_last),
                                          (17, 4, torch.channels_last)])  # a last group of one channels-last image
def test_ghost_batchnorm_matches_a_loop_over_groups(n, k, layout):
    # the reference: plain F.batch_norm on each group of k images (the last group smaller when k does not divide n)
    torch.manual_seed(0)
    ghost, plain = ghost_and_plain(k=k)
    x = torch.randn(n, 4, 5, 5).to(memory_format=layout).requires_grad_()
    weights = torch.randn(n, 4, 5, 5)
    out = ghost(x)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    means, variances = [], []
    groups = []
    for i in range(0, n, k):
        mean, var = torch.zeros(4), torch.ones(4)  # momentum 1: they receive the group's mean and unbiased variance
        groups.append(F.batch_norm(x[i : i + k], mean, var, plain.weight, plain.bias, True, 1.0, plain.eps))
        means.append(mean * len(x[i : i + k]) / n)
        variances.append(var * len(x[i : i + k]) / n)
    expected = torch.cat(groups)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ghost.running_mean, 0.1 * sum(means))  # from zeros, momentum 0.1
    torch.testing.assert_close(ghost.running_var, 0.9 + 0.1 * sum(variances))  # from ones


def test_ghost_batchnorm_mixes_only_the_images_of_a_group():
    torch.manual_seed(0)
    net = Net("B", norm_batch=4).train()
    x = batch(8)
    changed = torch.cat([x[:4], batch(4, seed=1)])  # the second group replaced
    torch.testing.assert_close(net(x)[:4], net(changed)[:4])
    assert not torch.allclose(net(x)[4:], net(changed)[4:], atol=1e-4)
    assert count_parameters(net) == EXPECTED_PARAMETERS["B"]
    net.eval()  # eval mode: the running statistics, as nn.BatchNorm2d
    plain = Net("B").eval()
    plain.load_state_dict(net.state_dict())
    torch.testing.assert_close(net(x), plain(x))


@pytest.mark.parametrize("kwargs, message", [(dict(norm="L", norm_batch=4), "BatchNorm's setting"),
                                             (dict(norm="B", norm_batch=0), "norm_batch"),
                                             (dict(norm="B", norm_batch=2.5), "norm_batch"),
                                             (dict(norm="B", norm_batch=True), "norm_batch")])
def test_bad_norm_batch_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Net(**kwargs)
