"""One small convolutional network for MNIST, with the normalisation chosen by a string.

    from model import Net
    net = Net(norm="G")          # "B" BatchNorm, "L" LayerNorm, "G" GroupNorm, "I" InstanceNorm, "N" none

Every variant has the same skeleton, so a comparison between them measures the normalisation alone.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from checks import WIDTHS, canonical_norm, check_groups, check_net, whole_number

INPUT_SHAPE = (1, 28, 28)
GROUPS = 2  # GroupNorm's default number of groups: divides every layer's channels


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from groups of `norm_batch` images within the batch (ghost batches).

    Ghost batch normalisation (Hoffer et al. 2017): the optimiser's batch stays what it is, and only the number of
    images that share a mean and a variance changes. (The GroupNorm paper's k images per GPU are not this: there the
    total batch is 8 GPUs x k images, and the learning rate is scaled with it.) A batch that `norm_batch` does not divide ends with one smaller
    group. The running statistics are updated once per batch with the average over its groups of their means and
    of their unbiased variances, so with one group (norm_batch >= the batch) this is nn.BatchNorm2d. Note what that
    average leaves out: the spread of the group means. With small groups the running variance is smaller than the
    variance the layer sees across the data set; whether that is what breaks models trained on groups of one or two
    images is measured in STUDY.md (ghost_stats: statistics that include the spread do not restore them).
    In eval mode: the running statistics, as nn.BatchNorm2d.
    """

    def __init__(self, channels: int, norm_batch: int):
        super().__init__(channels)
        self.norm_batch = whole_number("norm_batch", norm_batch, "a whole number of images >= 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        n, c, h, w = x.shape
        k = min(self.norm_batch, n)
        whole = n - n % k
        if whole < n:
            x = x.contiguous()  # a last group of one channels-last image: wrong gradients otherwise (torch 2.14)
        outputs, mean, var = [], 0.0, 0.0
        for part in (x[:whole], x[whole:]) if whole < n else (x,):
            size = min(k, len(part))
            g = len(part) // size
            # [G*k, C, H, W] -> [k, G*C, H, W]: each (group, channel) becomes a channel of one plain batch norm,
            # PyTorch's own kernel; with momentum 1 its "running" buffers receive each group's mean and unbiased var.
            stacked = part.view(g, size, c, h, w).transpose(0, 1).reshape(size, g * c, h, w)
            group_mean, group_var = x.new_zeros(g * c), x.new_ones(g * c)
            y = F.batch_norm(stacked, group_mean, group_var, self.weight.repeat(g), self.bias.repeat(g), True, 1.0, self.eps)
            outputs.append(y.view(size, g, c, h, w).transpose(0, 1).reshape(part.shape))
            mean = mean + group_mean.view(g, c).sum(0) * size / n  # weighted by images, over all groups
            var = var + group_var.view(g, c).sum(0) * size / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var, momentum)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def make_norm(norm: str, channels: int, groups: int = GROUPS, norm_batch: int | None = None) -> nn.Module:
    """The normalisation layer for `channels` feature maps; the one place a norm string becomes a layer.

    LayerNorm is GroupNorm with one group: it normalises each sample over (C, H, W) and keeps a per-channel
    affine (2*C parameters). nn.LayerNorm([C, H, W]) would learn 2*C*H*W parameters (over four times this whole
    network, counted over its five norms). `norm_batch` (BatchNorm only) makes ghost batches of that many images.
    "N" is no normalisation: the identity.
    """
    norm = canonical_norm(norm)
    if norm == "N":
        return nn.Identity()
    if norm == "B":
        return nn.BatchNorm2d(channels) if norm_batch is None else GhostBatchNorm2d(channels, norm_batch)
    if norm == "G":
        check_groups(groups, (channels,))
    num_groups = {"L": 1, "G": groups, "I": channels}[norm]
    return nn.GroupNorm(num_groups, channels)


def separable(cin: int, cout: int, bias: bool = False) -> nn.Sequential:
    """Depthwise 3x3 (one filter per input channel) then pointwise 1x1: 9*cin + cin*cout weights, not 9*cin*cout;
    `bias` on the pointwise one."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=bias))


class Net(nn.Module):
    """Five convolutions, each followed by norm, ReLU and dropout; global average pooling; a linear layer.

    Shapes for an [N, 1, 28, 28] input (RF = receptive field in input pixels):
        conv1       1 -> 8   [N, 8, 26, 26]   RF 3
        conv2       8 -> 16  [N, 16, 24, 24]  RF 5
        max-pool             [N, 16, 12, 12]  RF 6    before conv2's norm and ReLU
        separable  16 -> 32  [N, 32, 10, 10]  RF 10
        separable  32 -> 48  [N, 48, 8, 8]    RF 14
        separable  48 -> 48  [N, 48, 6, 6]    RF 18
        GAP, linear          [N, 10]          log-probabilities, for F.nll_loss
    Only two convolutions run above 12x12, where most of a small net's multiply-accumulates are spent; the
    layers below are wide but cheap. Pooling conv2's output before its norm and ReLU makes those run on a quarter
    of the largest activation. No padding: a zero border would be grey in normalised pixels. The parameters are
    stored channels-last (NHWC), the layout in which this CPU's convolutions, norms and pooling run fastest.

    Args:
        norm: "B" (BatchNorm), "L" (LayerNorm), "G" (GroupNorm), "I" (InstanceNorm) or "N" (none: the same
            skeleton without normalisation, its convolutions with a bias); case-insensitive, or "batch", "layer",
            "group", "instance", "none".
        groups: GroupNorm only: its number of groups, which must divide every layer's channels (8, 16, 32, 48);
            None for GROUPS (2). The other norms have no groups to set: passing one is a ValueError.
        dropout: dropout probability after every block.
        norm_batch: BatchNorm only: in training, normalise over groups of this many images of the batch
            (ghost batches, GhostBatchNorm2d); None for the whole batch (nn.BatchNorm2d).
    """

    def __init__(self, norm: str = "B", groups: int | None = None, dropout: float = 0.0, norm_batch: int | None = None):
        super().__init__()
        self.norm = check_net(norm, groups, dropout, norm_batch)
        widths = WIDTHS
        # Convolutions carry no bias: the norm's shift that follows would cancel it. Without a norm ("N") they do.
        bias = self.norm == "N"
        self.convs = nn.ModuleList(
            [nn.Conv2d(1, widths[0], 3, bias=bias), nn.Conv2d(widths[0], widths[1], 3, bias=bias)]
            + [separable(cin, cout, bias) for cin, cout in zip(widths[1:-1], widths[2:])]
        )
        groups = GROUPS if groups is None else groups
        self.norms = nn.ModuleList(make_norm(self.norm, c, groups, norm_batch) for c in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], 10)
        self.to(memory_format=torch.channels_last)  # outputs equal to NCHW's, steps faster: benchmarks/step.py

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor of images [N, 1, 28, 28], got {type(x).__module__}."
                             f"{type(x).__qualname__}: convert it with torch.as_tensor(x, dtype=torch.float32)")
        if x.dim() != 4 or tuple(x.shape[1:]) != INPUT_SHAPE:
            raise ValueError(f"expected input of shape [N, 1, 28, 28], got {list(x.shape)}")
        if x.dtype != self.fc.weight.dtype:
            raise ValueError(f"expected {self.fc.weight.dtype} images (the model's dtype), got {x.dtype}: "
                             "convert with x.float() and normalise as data.load_mnist does")
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            if i == 1:
                x = F.max_pool2d(x, 2)  # [N, 16, 24, 24] -> [N, 16, 12, 12]
            x = self.dropout(F.relu(norm(x), inplace=True))  # the norms' backward needs their input, not output
        x = x.mean(dim=(2, 3))  # global average pooling: [N, 48]
        return F.log_softmax(self.fc(x), dim=1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one 1x28x28 image."""
    macs = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        # each weight is used once per output position: H*W times for a convolution, once for a linear layer
        macs += module.weight.numel() * (output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1)

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, *INPUT_SHAPE, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs
