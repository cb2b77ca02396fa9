"""The training engine: seeds, the device and peak memory, the checks of tensors, the L1 penalty, the weights' moving
average, `train`, `test`, `fit`, `predict` and `misclassified`.

The checks of settings and arguments are in checks.py, the data (MNIST in memory, augmentation, loaders) in data.py,
the figures in figures.py, the records (the history file, atomic writes, tables, how a result was made) in records.py,
and publishing a finished run in publish.py. Of the project's modules this one imports only checks.py
(data.py imports its checks of tensors).
"""

import copy
import math
import random
import sys
import time
import warnings
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import TqdmWarning

from checks import available_devices, check_device, check_ema_decay, finite_number, whole_number

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # a notebook without ipywidgets gets tqdm's text bar, silently
    from tqdm.auto import tqdm


# ---- Set-up: seeds, device, memory ------------------------------------------------------------------------------

def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reseed(seed: int, train_loader: "SeededLoader") -> None:
    """Start a model: seed every generator and rewind the loader's own, so that every model trained after this call
    starts from the same initial draw and sees the same batches, in the same order, with the same augmentation."""
    set_seed(seed)
    train_loader.generator.manual_seed(seed)


def get_device(name: str | None = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", "mps") if given, else cuda, then mps, then cpu.

    A name this machine has no device for is a ValueError that lists the available ones.
    """
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = available_devices()
    if str(name) not in available:
        raise ValueError(f"device {name!r} is not available on this machine; use one of {available}, or None to choose")
    return torch.device(name)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (NaN where the OS does not say, as on Windows)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _kind(value) -> str:
    """A value's type and, for an array, its dtype and shape: what an error message says a wrong argument was."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return f"{kind} {value.dtype} of shape {list(value.shape)}" if hasattr(value, "shape") and hasattr(value, "dtype") \
        else kind


def check_labels(labels: torch.Tensor) -> None:
    """A ValueError unless every one of `labels` is a class 0-9, saying how many are not and the first of them."""
    outside = labels[(labels < 0) | (labels > 9)]
    if len(outside):
        raise ValueError(f"labels must be classes 0-9, got {len(outside):,} outside that, the first {outside[0].item()}")


def check_data(images, labels) -> None:
    """A ValueError unless `images` is a float tensor [N, C, H, W] of finite values and `labels` an int64 tensor [N] of
    classes 0-9 on the same device, as load_mnist returns them."""
    for name, value in (("images", images), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            hint = ": convert it with torch.from_numpy" if isinstance(value, np.ndarray) else ""
            raise ValueError(f"{name} must be a torch.Tensor, got {_kind(value)}{hint}")
    if images.dim() != 4 or not images.is_floating_point():
        hint = "; add the channel axis with images.unsqueeze(1)" if images.dim() == 3 else ""
        raise ValueError(f"images must be a float tensor [N, C, H, W], got {_kind(images)}{hint}")
    if labels.dim() != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 tensor [N] of classes 0-9, got {_kind(labels)}")
    if images.device != labels.device:
        raise ValueError(f"images are on {images.device} but labels on {labels.device}: put both on one device")
    check_labels(labels)
    if not torch.isfinite(images.sum()):  # one fast pass; counted only where something is wrong
        non_finite = (~torch.isfinite(images)).sum().item()
        if non_finite:
            raise ValueError(f"images hold {non_finite:,} NaN or infinite values; load and normalise them as load_mnist "
                             "does")


# ---- Training: L1, the weights' moving average, train, test, fit ------------------------------------------------

class Loader(Protocol):
    """What `train`, `test` and `fit` need: a sized iterable of (images, labels) batches, like TensorLoader."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class SeededLoader(Loader, Protocol):
    """A loader that draws its batches and augmentation from its own generator (data.TensorLoader): what `reseed`
    rewinds."""

    generator: torch.Generator


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the weights of convolution and linear layers; norm layers' gamma and beta and biases stay out."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    return sum(w.abs().sum() for w in weights)


class WeightEMA:
    """Exponential moving average of a model's weights and float buffers (BatchNorm's running statistics).

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so the average is not anchored to the
    random initial weights: it averages over about n / 10 steps early on (about 50 after one epoch of 469 steps)
    and reaches `decay` (a window of 1 / (1 - decay) steps) only after about 9 / (1 - decay) updates.
    Updates stay on the device, in one fused lerp over all tensors, and never wait for the host.
    """

    def __init__(self, model: nn.Module, decay: float):
        check_ema_decay("decay", decay, none_ok=False)
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs = None  # (model, our float tensors, its float tensors, our other tensors, its others)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._pairs is None or self._pairs[0] is not model:
            ours, theirs = self.module.state_dict(), model.state_dict()
            if list(ours) != list(theirs):
                raise ValueError(f"the model's state differs from the average's: {sorted(set(ours) ^ set(theirs))}")
            floats = [k for k, v in ours.items() if v.is_floating_point()]
            others = [k for k in ours if k not in floats]  # integer buffers (num_batches_tracked) are copied
            self._pairs = (model, [ours[k] for k in floats], [theirs[k] for k in floats],
                           [ours[k] for k in others], [theirs[k] for k in others])
        _, average, current, average_int, current_int = self._pairs
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(average, current, 1 - decay)
        for averaged, live in zip(average_int, current_int):
            averaged.copy_(live)


CHECK_EVERY = 50  # batches between checks for a non-finite training loss: one host read each, not one per batch
CHANCE_ACC = 15.0  # % test accuracy at or below which a model is at chance level (10 classes: 10%)


def _divergence(model: nn.Module, images: torch.Tensor, optimizer: torch.optim.Optimizer, l1_lambda: float, epoch: int,
                batch: int, batches: int) -> str:
    """What a non-finite training loss at `batch` most likely comes from: the inputs (the last batch `images` is not
    finite), the settings (the first batch, before any optimiser step), the weight decay (where AdamW's step would
    multiply the weights by 1 - lr x weight_decay <= 0 at the peak rate) or else the learning rate."""
    where = f"non-finite training loss at epoch {epoch}, batch {batch} of {batches}"
    group = optimizer.param_groups[0]
    if not torch.isfinite(images).all():
        return f"{where}: the inputs hold NaN or infinite values; check the data and its augmentation"
    if epoch == 1 and batch == 1:
        return (f"{where}, before any optimiser step, so not the learning rate: the settings or the model; check "
                f"l1_lambda={l1_lambda:g} (it multiplies sum |w|), weight_decay={group.get('weight_decay', 0):g} and "
                "that the model's outputs are finite")
    peak, decay = group.get("max_lr", group["lr"]), group.get("weight_decay", 0)
    if peak * decay >= 1:
        return (f"{where}: the run diverged, most likely from the weight decay: each step multiplies every weight by "
                f"1 - lr x weight_decay, 1 - {peak:.3g} x {decay:g} = {1 - peak * decay:.3g} at the peak rate, where it "
                f"must stay above 0; lower weight_decay (WEIGHT_DECAY) well below 1 / max_lr = {1 / peak:.3g}")
    return (f"{where}: the run diverged, most likely from the learning rate ({group['lr']:.3g} at the last step); "
            "lower max_lr (MAX_LR)")


def _first_non_finite(losses: torch.Tensor) -> int | None:
    bad = torch.nonzero(~torch.isfinite(losses))
    return bad[0].item() if len(bad) else None


def train(
    model: nn.Module,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    l1_lambda: float = 0.0,
    epoch: int = 1,
    ema: WeightEMA | None = None,
) -> tuple[float, float]:
    """One epoch of training; returns (mean loss, accuracy in %), the loss including the L1 term.

    Loss = NLL + l1_lambda * l1_penalty(model). The scheduler, if any, steps every batch (OneCycle), and so
    does `ema`, an exponential moving average of the weights. Losses and counts stay on the device; every
    CHECK_EVERY batches one read checks them for a non-finite loss, which stops training (FloatingPointError).
    """
    check_device("device", device)
    finite_number("l1_lambda", l1_lambda)
    whole_number("epoch", epoch, "a whole number >= 1")
    if len(loader) == 0:
        raise ValueError("the training loader is empty: it yields no batches")
    return _train(model, loader, optimizer, device, scheduler, l1_lambda, epoch, ema)


def _train(model: nn.Module, loader: Loader, optimizer: torch.optim.Optimizer, device: torch.device,
           scheduler: torch.optim.lr_scheduler.LRScheduler | None, l1_lambda: float, epoch: int,
           ema: WeightEMA | None, bars: bool = True) -> tuple[float, float]:
    """train without its checks: what fit calls every epoch, its arguments checked once; without `bars`, no progress
    bar whatever the environment says."""
    model.train()
    batch_losses = torch.zeros(len(loader), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    # TQDM_DISABLE=1 silences the bar too, but only where it was set before tqdm was imported (tqdm reads it then)
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, **({} if bars else {"disable": True}))
    for batch, (images, labels) in enumerate(bar):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        output = model(images)
        try:
            loss = F.nll_loss(output, labels)
        except IndexError:  # a label outside 0-9 (CPU): say so, as check_data does
            check_labels(labels)
            raise
        if l1_lambda:
            loss = loss + l1_lambda * l1_penalty(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        batch_losses[batch] = loss.detach() * len(labels)
        correct += (output.argmax(dim=1) == labels).sum()
        seen += len(labels)
        if (batch + 1) % CHECK_EVERY == 0 or batch + 1 == len(loader):
            bad = _first_non_finite(batch_losses[: batch + 1])
            if bad is not None:
                bar.close()
                raise FloatingPointError(_divergence(model, images, optimizer, l1_lambda, epoch, bad + 1, len(loader)))
    mean_loss, accuracy = batch_losses.sum().item() / seen, 100.0 * correct.item() / seen
    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{accuracy:.2f}%")
    bar.close()
    return mean_loss, accuracy


def test(model: nn.Module, loader: Loader, device: torch.device) -> tuple[float, float]:
    """Mean NLL loss and accuracy (%) over `loader`, in eval mode; the model's mode is restored afterwards."""
    check_device("device", device)
    return _test(model, loader, device)


def _test(model: nn.Module, loader: Loader, device: torch.device) -> tuple[float, float]:
    """test without its checks: what fit calls every epoch."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    with torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            output = model(images)
            try:
                total_loss += F.nll_loss(output, labels, reduction="sum")
            except IndexError:  # a label outside 0-9 (CPU): say so, as check_data does
                check_labels(labels)
                raise
            correct += (output.argmax(dim=1) == labels).sum()
            seen += len(labels)
    model.train(was_training)
    if seen == 0:
        raise ValueError("the test loader is empty: it yields no images")
    loss = total_loss.item() / seen
    if not math.isfinite(loss):
        raise FloatingPointError(f"non-finite test loss ({loss}): the model's outputs are not finite")
    return loss, 100.0 * correct.item() / seen


test.__test__ = False  # a helper named like a test: pytest must not collect it where it is imported


def fit(
    model: nn.Module,
    train_loader: Loader,
    test_loader: Loader,
    device: torch.device | str,
    epochs: int,
    max_lr: float,
    weight_decay: float = 0.0,
    l1_lambda: float = 0.0,
    ema_decay: float | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    bars: bool = True,
) -> list[dict]:
    """Train `epochs` epochs with a fresh AdamW optimizer and a OneCycle schedule (peak `max_lr`); test after each.

    OneCycle also cycles AdamW's beta1 between 0.95 and 0.85, inversely to the learning rate. With `ema_decay`,
    an exponential moving average of the weights (and of BatchNorm's statistics) is kept every step; it is what
    is tested after each epoch, and its weights are copied into `model` at the end. A test accuracy at chance
    level (CHANCE_ACC) gives a RuntimeWarning; a non-finite loss stops the run with a FloatingPointError.
    Returns one record per epoch (the history.json schema; weights_l1 is the tested model's sum of |w| over the
    weights L1 penalises); `on_epoch(history)` is called after every epoch. `bars`: a progress bar per epoch (tqdm's).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {_kind(model)}")
    check_device("device", device)
    whole_number("epochs", epochs, "a whole number >= 1")
    finite_number("max_lr", max_lr, zero_ok=False)
    finite_number("weight_decay", weight_decay)
    finite_number("l1_lambda", l1_lambda)
    check_ema_decay("ema_decay", ema_decay)
    if len(train_loader) == 0:
        raise ValueError("the training loader is empty: it yields no batches")
    if on_epoch is not None and not callable(on_epoch):
        raise ValueError(f"on_epoch must be None or a function of the history so far, got {on_epoch!r}")
    device = torch.device(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=len(train_loader))
    ema = WeightEMA(model, ema_decay) if ema_decay else None
    history = []
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark or device.type == "cuda"  # fixed shapes: cuDNN picks kernels once
    try:
        for epoch in range(1, epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            train_loss, train_acc = _train(model, train_loader, optimizer, device, scheduler, l1_lambda, epoch, ema,
                                           bars)
            test_loss, test_acc = _test(model if ema is None else ema.module, test_loader, device)
            seconds = time.perf_counter() - start
            weights_l1 = l1_penalty(model if ema is None else ema.module).item()  # what L1 acts on, for the record
            history.append(dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                                test_acc=test_acc, lr=lr, seconds=seconds, weights_l1=weights_l1))
            print(f"epoch {epoch:2d}  lr {lr:.4f}  train {train_loss:.4f} {train_acc:6.2f}%  "
                  f"test {test_loss:.4f} {test_acc:6.2f}%  {seconds:5.1f}s", flush=True)
            if test_acc <= CHANCE_ACC:
                warnings.warn(f"epoch {epoch}: test accuracy {test_acc:.2f}% is at chance level (10 classes): "
                              "the run has not learned or has diverged", RuntimeWarning, stacklevel=2)
            if on_epoch is not None:
                on_epoch(history)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    return history


def predict(model: nn.Module, loader: Loader, device: torch.device) -> torch.Tensor:
    """The predicted class of every image of `loader`, in order, as int64 on the CPU (eval mode). Outputs that are
    not finite, which have no class, are a FloatingPointError."""
    check_device("device", device)
    was_training = model.training
    model.eval()
    predictions, non_finite = [], torch.zeros((), dtype=torch.long, device=device)
    with torch.inference_mode():
        for x, _ in loader:
            output = model(x.to(device))
            non_finite += (~torch.isfinite(output)).any(dim=1).sum()  # read once, at the end
            predictions.append(output.argmax(dim=1).cpu())
    model.train(was_training)
    if not predictions:
        raise ValueError("the loader is empty: it yields no images")
    predicted = torch.cat(predictions)
    if non_finite.item():
        raise FloatingPointError(f"predict: the model's outputs are NaN or infinite for {non_finite.item():,} of "
                                 f"{len(predicted):,} images, which have no predicted class; check the images "
                                 "(data.check_data) and the model's weights")
    return predicted


def misclassified(
    model: nn.Module, data: Iterable, device: torch.device, n: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first `n` wrongly classified images of `data` (a loader of batches), as (images, predicted, true) on the CPU.

    Fewer than `n` where fewer are wrong, possibly none (zero rows); an empty `data` is a ValueError.
    """
    whole_number("n", n, "a whole number of digits >= 1")
    check_device("device", device)
    was_training = model.training
    model.eval()
    images, predicted, true = [], [], []
    found = 0
    with torch.inference_mode():
        for x, y in data:
            x, y = x.to(device), y.to(device)
            pred = model(x).argmax(dim=1)
            wrong = pred != y
            images.append(x[wrong].cpu())
            predicted.append(pred[wrong].cpu())
            true.append(y[wrong].cpu())
            found += int(wrong.sum())
            if found >= n:
                break
    model.train(was_training)
    if not images:
        raise ValueError("the loader is empty: it yields no images")
    check_labels(torch.cat(true))  # a label outside 0-9 is never predicted, so it is among these
    return torch.cat(images)[:n], torch.cat(predicted)[:n], torch.cat(true)[:n]
