"""Everything around the model, in the order a reader needs it:

- set-up: seeds, the device, peak memory, and `environment()`, the record of how a result was made;
- data: MNIST held in memory on the device, batched augmentation, `TensorLoader`, `mnist_loaders`;
- training: the L1 penalty, the weights' moving average, `train`, `test`, `fit`, `predict`, `misclassified`;
- figures: metric curves, per-model curves, the grid of misclassified digits, the torchsummary table;
- records: the history file, Markdown tables, the README's worked example.

The whole of MNIST (about 190 MB as float32) lives as one tensor on the training device, normalised once, and
augmentation runs on whole batches there: no PIL, no worker processes, no per-sample Python.
"""

import copy
import difflib
import hashlib
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets
from tqdm import TqdmWarning

from model import Net, canonical_norm, whole_number

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # a notebook without ipywidgets gets tqdm's text bar, silently
    from tqdm.auto import tqdm

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pixel mean and standard deviation of the training set
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a black pixel after normalisation
ROOT = Path(__file__).resolve().parent  # the repository
# MNIST's four original files (decompressed) and their published SHA-256 sums: every file read is checked against its
# sum, unless a SHA256SUMS beside the data lists that file (another copy, such as the tests' tiny fake MNIST).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


# ---- Set-up: seeds, device, memory, how a result was made ----------------------------------------------------

def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reseed(seed: int, train_loader: "TensorLoader") -> None:
    """Start a model: seed every generator and rewind the loader's own, so that every model trained after this call
    starts from the same initial draw and sees the same batches, in the same order, with the same augmentation."""
    set_seed(seed)
    train_loader.generator.manual_seed(seed)


def _available_devices() -> list[str]:
    """The device names this machine can run on: "cpu", then "cuda" and "cuda:0", ... and "mps" where present."""
    gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu"] + (["cuda"] + gpus if gpus else []) + (["mps"] if torch.backends.mps.is_available() else [])


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
    available = _available_devices()
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


def git_commit() -> str | None:
    """The repository's commit, with "+changes" when tracked code (*.py, the notebook) differs from it; None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "*.py", "*.ipynb")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if changed else "")


def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what the platform says of it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def environment(device: torch.device | str) -> dict:
    """How a result was made: torch, NumPy and Python versions, CPU, device, CPU threads and the code's git commit."""
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cpu": cpu_name(), "device": str(device), "threads": torch.get_num_threads(), "git_commit": git_commit()}


def finite_number(name: str, value, zero_ok: bool = True) -> float:
    """`value` if it is a finite number >= 0 (> 0 without zero_ok; bool is not one), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    return value


def check_flag(name: str, value) -> None:
    """A ValueError naming the setting unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_seed(name: str, seed) -> None:
    """A ValueError naming the setting unless `seed` is a whole number from 0 to 2**32 - 1 (what NumPy accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"{name} must be a whole number from 0 to 2**32 - 1, got {seed!r}")


def check_ema_decay(name: str, decay, none_ok: bool = True) -> None:
    """A ValueError naming the setting unless `decay` is a number in (0, 1), or None (no average) with none_ok."""
    if (decay is not None or not none_ok) and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                                 or not 0 < decay < 1):
        raise ValueError(f"{name} must be {'None or ' if none_ok else ''}a number in (0, 1), got {decay!r}")


# augment's settings: (largest value, whether that value itself is allowed, what it means).
AUGMENT_LIMITS = {
    "degrees": (180, True, "a rotation of up to +-degrees; 180 reaches every angle"),
    "translate": (0.5, False, "a shift of up to translate x the image size; at 0.5 a digit can leave the image"),
    "scale": (1, False, "a zoom of 1 +- scale; at 1 or more a digit is mirrored or shrunk to nothing"),
}


def check_augmentation(name: str, augmentation) -> None:
    """A ValueError naming the setting unless `augmentation` is None or {} (no augmentation) or a dict of exactly
    degrees, translate and scale, each a finite number from 0 to its limit in AUGMENT_LIMITS."""
    if augmentation is None or isinstance(augmentation, dict) and not augmentation:
        return
    if not isinstance(augmentation, dict) or augmentation.keys() != AUGMENT_LIMITS.keys():
        raise ValueError(f"{name} must be None or {{}} (no augmentation), or a dict of exactly the keys "
                         f"{', '.join(AUGMENT_LIMITS)}, got {augmentation!r}")
    for key, value in augmentation.items():
        high, included, meaning = AUGMENT_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high \
                or value == high and not included:
            raise ValueError(f"{name}: {key} must be a number from 0 to {high} ({'included' if included else 'excluded'}:"
                             f" {meaning}), got {value!r}")


def check_device(name: str, device) -> None:
    """A ValueError naming the argument unless `device` is a torch.device or a device name that this machine has."""
    available = _available_devices()
    if not isinstance(device, (str, torch.device)) or str(device) not in available:
        raise ValueError(f"{name} must be a torch.device or the name of one this machine has, {available}; "
                         f"got {device!r}")


def _kind(value) -> str:
    """A value's type and, for an array, its dtype and shape: what an error message says a wrong argument was."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return f"{kind} {value.dtype} of shape {list(value.shape)}" if hasattr(value, "shape") and hasattr(value, "dtype") \
        else kind


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
    outside = labels[(labels < 0) | (labels > 9)]
    if len(outside):
        raise ValueError(f"labels must be classes 0-9, got {len(outside):,} outside that, the first {outside[0].item()}")
    if not torch.isfinite(images.sum()):  # one fast pass; counted only where something is wrong
        non_finite = (~torch.isfinite(images)).sum().item()
        if non_finite:
            raise ValueError(f"images hold {non_finite:,} NaN or infinite values; load and normalise them as load_mnist "
                             "does")


def check_study(variants: dict, epochs: int, max_lr: float, weight_decay: float, ema_decay: float | None,
                l1_lambda: float, groups: int, dropout: float, out_dir: str | os.PathLike) -> dict[str, str]:
    """Check the notebook's settings before any training (named as the notebook names them); ValueError on the first
    bad one. Builds every variant's network and writes a test file into OUT_DIR. Returns {variant: "B"|"L"|"G"|"I"}."""
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"VARIANTS must be a non-empty dict of name -> norm, got {variants!r}")
    for name in variants:
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_+" for c in name):
            raise ValueError(f"VARIANTS: a name must be letters, digits, '-', '_' or '+' (it names files), got {name!r}")
    norms = {name: canonical_norm(norm) for name, norm in variants.items()}
    Net("G", groups=groups, dropout=dropout)  # GROUPS and DROPOUT are checked by the network itself
    whole_number("EPOCHS", epochs, "a whole number >= 1")
    finite_number("MAX_LR", max_lr, zero_ok=False)
    finite_number("WEIGHT_DECAY", weight_decay)
    finite_number("L1_LAMBDA", l1_lambda)
    check_ema_decay("EMA_DECAY", ema_decay)
    runs = Path(out_dir) / "runs"
    try:  # a probe of a name of its own, removed on closing: set-ups side by side never remove each other's
        runs.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs, prefix=".write-test.") as probe:
            probe.write(b"ok")
    except OSError as error:
        raise ValueError(f"OUT_DIR={str(out_dir)!r} is not writable ({error}); choose a folder you can write to") from None
    return norms


# The notebook's settings: the names its parameters cell assigns, in order, and those its Colab cell assigns.
SETTINGS = ("EPOCHS", "SEED", "BATCH_SIZE", "TEST_BATCH_SIZE", "MAX_LR", "WEIGHT_DECAY", "EMA_DECAY", "L1_LAMBDA",
            "GROUPS", "DROPOUT", "AUGMENTATION", "VARIANTS", "TRAIN_LIMIT", "TEST_LIMIT", "DATA_ROOT", "DEVICE", "OUT_DIR",
            "REPLACE_RESULTS")
COLAB_SETTINGS = ("GITHUB_REPO", "GITHUB_BRANCH")


def check_notebook(names: dict) -> dict[str, str]:
    """Check every setting of the notebook before any work, from its globals() (papermill's cell of injected settings
    runs just before): a name in capitals that is no setting, or a setting's name in other letters (a typo such as
    `-p MAX_LRR 0.5`, `-p max_lr 0.5`), is a ValueError naming the nearest setting; so is a bad value, with the
    setting, its value and what is allowed. Returns check_study's {variant: norm}."""
    known = SETTINGS + COLAB_SETTINGS
    for name, value in names.items():
        if (name.isupper() or name.upper() in known) and name not in known:
            nearest = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f"did you mean {nearest[0]}?" if nearest else "no setting has a name close to it."
            raise ValueError(f"unknown setting {name}={value!r}: {hint} The settings are {', '.join(SETTINGS)}")
    missing = [name for name in SETTINGS if name not in names]
    if missing:
        raise ValueError(f"settings {missing} are not set: run the parameters cell first")
    check_seed("SEED", names["SEED"])
    whole_number("BATCH_SIZE", names["BATCH_SIZE"], "a whole number of images >= 1")
    whole_number("TEST_BATCH_SIZE", names["TEST_BATCH_SIZE"], "a whole number of images >= 1")
    check_augmentation("AUGMENTATION", names["AUGMENTATION"])
    _check_limit("TRAIN_LIMIT", names["TRAIN_LIMIT"])
    _check_limit("TEST_LIMIT", names["TEST_LIMIT"])
    if names["TRAIN_LIMIT"] is not None and names["TRAIN_LIMIT"] < names["BATCH_SIZE"]:
        raise ValueError(f"TRAIN_LIMIT={names['TRAIN_LIMIT']} is below BATCH_SIZE={names['BATCH_SIZE']}: training needs "
                         "at least one full batch; raise TRAIN_LIMIT (None for every digit) or lower BATCH_SIZE")
    device, available = names["DEVICE"], _available_devices()
    if device is not None and (not isinstance(device, (str, torch.device)) or str(device) not in available):
        raise ValueError(f"DEVICE must be None (cuda, then mps, then cpu) or one of this machine's {available}, "
                         f"got {device!r}")
    for name in ("DATA_ROOT", "OUT_DIR"):
        if not isinstance(names[name], (str, os.PathLike)) or not str(names[name]):
            raise ValueError(f"{name} must be a folder's path, got {names[name]!r}")
    if Path(names["DATA_ROOT"]).exists() and not Path(names["DATA_ROOT"]).is_dir():
        raise ValueError(f"DATA_ROOT={str(names['DATA_ROOT'])!r} is a file: it must be the folder that holds MNIST/raw "
                         "(or one to download MNIST into)")
    check_flag("REPLACE_RESULTS", names["REPLACE_RESULTS"])
    return check_study(names["VARIANTS"], names["EPOCHS"], names["MAX_LR"], names["WEIGHT_DECAY"], names["EMA_DECAY"],
                       names["L1_LAMBDA"], names["GROUPS"], names["DROPOUT"], names["OUT_DIR"])


# ---- Data: MNIST in memory, augmentation, loaders -------------------------------------------------------------

def load_mnist(
    root: str | os.PathLike | None = None,
    train: bool = True,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as normalised float images [N, 1, 28, 28] and int64 labels [N], on `device`.

    root: argument, else the environment variable MNIST_ROOT, else "./data"; the split's two files are read from
    root/MNIST/raw, where torchvision downloads the four when one is missing. limit keeps the first `limit` samples.
    Each file's size and magic number are checked against its IDX header, and its SHA-256 against root/SHA256SUMS
    where that file lists it, else against MNIST's published sum (MNIST_SHA256): a bad file is a ValueError that
    names it.
    """
    _check_limit("limit", limit)
    check_flag("train", train)
    check_flag("download", download)
    check_device("device", device)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be None (MNIST_ROOT, else ./data) or a folder's path, got {root!r}")
    root = mnist_root(root)
    prefix = "train" if train else "t10k"
    image_file, label_file = (root / "MNIST" / "raw" / f"{prefix}-{kind}-ubyte" for kind in ("images-idx3", "labels-idx1"))
    _fetch_mnist(root, [image_file, label_file], download)
    sums = _sha256sums(root)
    images = _read_idx(image_file, 2051, (28, 28), sums.get(f"MNIST/raw/{image_file.name}"))
    labels = _read_idx(label_file, 2049, (), sums.get(f"MNIST/raw/{label_file.name}"))
    if len(images) != len(labels):
        raise ValueError(f"{image_file} holds {len(images):,} digits but {label_file} {len(labels):,} labels: "
                         "they belong to different versions; replace both with the original files")
    images = images[:limit].to(device).unsqueeze(1).float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return images, labels[:limit].long().to(device)


def mnist_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds MNIST/raw: `root`, else the environment variable MNIST_ROOT, else ./data."""
    return Path(root or os.environ.get("MNIST_ROOT") or "data")


def _digest(sums: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{sums[name]}  {name}\n" for name in MNIST_SHA256).encode()).hexdigest()


MNIST_DIGEST = _digest(MNIST_SHA256)  # the digest of MNIST's original files (mnist_digest)
_digests: dict[tuple, str] = {}  # per process: each set of files' digest, by their paths, sizes and times


def mnist_digest(root: str | os.PathLike | None = None) -> str:
    """Which digits a run reads: the SHA-256 over the SHA-256 sums of the four MNIST files under `root` (as load_mnist
    finds them, downloading missing ones), so that MNIST_DIGEST for MNIST's originals and another digest for any other
    copy, a relabelled one included. Each file is hashed once per process while it is unchanged."""
    root = mnist_root(root)
    files = [root / "MNIST" / "raw" / name for name in MNIST_SHA256]
    _fetch_mnist(root, files, download=True)
    stamp = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _digests:
        _digests[stamp] = _digest({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files})
    return _digests[stamp]


def _check_limit(name: str, limit: int | None) -> None:
    """A ValueError naming the setting unless `limit` is None (every digit) or a whole number >= 1."""
    if limit is not None:
        whole_number(name, limit, "None (every digit) or a whole number of digits >= 1")


def _fetch_mnist(root: Path, files: list[Path], download: bool) -> None:
    """Download MNIST with torchvision when one of `files` is missing; FileNotFoundError where that cannot be done."""
    for file in files:
        if file.exists() and not file.is_file():
            raise ValueError(f"{file} is a {'folder' if file.is_dir() else 'special file'}, not a file: put the "
                             f"original MNIST file {file.name} there instead")
    missing = [file.name for file in files if not file.is_file()]
    if not missing:
        return
    reason = "download=False"
    if download:
        try:
            datasets.MNIST(root, download=True)
            return
        except (RuntimeError, OSError) as error:
            reason = f"the download failed: {error}"
    raise FileNotFoundError(
        f"MNIST not found: {', '.join(missing)} missing in {files[0].parent.resolve()} ({reason}). "
        "Put the four original files there, or set MNIST_ROOT (or pass root=) to the folder that holds MNIST/raw."
    )


def _sha256sums(root: Path) -> dict[str, str]:
    """The SHA-256 each MNIST file must have, as {path from root: sha256}: MNIST's published sums (MNIST_SHA256),
    replaced by those root/SHA256SUMS lists (sha256sum's format, "<sha256>  <path from root>" a line), if it exists.

    A SHA256SUMS that cannot be read, has a malformed line or lists none of the four files is a ValueError.
    """
    path = root / "SHA256SUMS"
    published = {f"MNIST/raw/{name}": digest for name, digest in MNIST_SHA256.items()}
    if not path.exists():
        return published
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read as a checksum list ({error}): fix it, or remove it to check the "
                         "files against MNIST's published sums") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(maxsplit=1)
        if len(fields) == 2 and len(fields[0]) == 64:
            sums[Path(fields[1].lstrip("*")).as_posix()] = fields[0].lower()
        elif fields:
            raise ValueError(f"{path}, line {number}: expected '<sha256>  <file>', got {line!r}")
    if not sums.keys() & published.keys():
        raise ValueError(f"{path} lists none of MNIST's files ({', '.join(published)}), so it checks nothing: list "
                         f"them by their path from {root}, as `sha256sum MNIST/raw/*` run there writes them")
    return published | sums


def _read_idx(path: Path, magic: int, shape: tuple[int, ...], sha256: str | None) -> torch.Tensor:
    """The uint8 tensor [n, *shape] of an MNIST IDX file, after checking it against its header and `sha256`, if any.

    The header is the magic number (2051 for images, 2049 for labels), n, and for images 28, 28: 4 bytes each.
    """
    replace = "replace it with the original MNIST file"
    try:
        data = bytearray(path.read_bytes())
    except OSError as error:
        raise ValueError(f"{path} exists but cannot be read ({error.strerror or error}): check its permissions, or "
                         f"{replace}") from None
    header = 8 + 4 * len(shape)
    if len(data) < header:
        raise ValueError(f"{path} is {len(data)} bytes, shorter than its {header}-byte header: it is truncated; {replace}")
    found, n = struct.unpack_from(">II", data)
    if found != magic:
        raise ValueError(f"{path} starts with magic number {found}, expected {magic}: it is not this MNIST file; {replace}")
    expected = header + n * math.prod(shape)
    if len(data) != expected:
        raise ValueError(f"{path} is {len(data):,} bytes, expected {expected:,} ({header} + {n:,} x {math.prod(shape)}) "
                         f"for the {n:,} digits its header announces: it is truncated or corrupt; {replace}")
    if n == 0:
        raise ValueError(f"{path} holds no digits (its header says 0); {replace}")
    if sha256 is not None and (digest := hashlib.sha256(data).hexdigest()) != sha256:
        listed = "MNIST's published SHA-256 is" if sha256 == MNIST_SHA256.get(path.name) else "SHA256SUMS lists"
        raise ValueError(f"{path} has SHA-256 {digest}, but {listed} {sha256}: it is corrupt or another version; "
                         f"{replace}")
    return torch.frombuffer(data, dtype=torch.uint8, offset=header).view(n, *shape)


def augment(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: float = 0.1,
) -> torch.Tensor:
    """Random rotation (+-degrees), zoom (lengths x 1 +- scale) and shift, per sample.

    The shift is +-translate of the image size per axis in the input frame, that is after the rotation and zoom: a
    digit moves by up to (1 + scale) * translate * (|cos| + |sin|) of the image along an axis (3.6 pixels at the
    notebook's 10 degrees, 0.1, 0.1). One affine grid for the whole batch, sampled bilinearly on the batch's device;
    pixels that come from outside the image are filled with the normalised background, not 0 (which is grey after
    normalisation).
    """
    check_augmentation("augment", {"degrees": degrees, "translate": translate, "scale": scale})
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"augment: images must be a float tensor [N, C, H, W], got {_kind(images)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"augment: generator must be None or a torch.Generator, got {_kind(generator)}")
    n = images.shape[0]

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, device=images.device, generator=generator) * 2 - 1) * bound

    angle = uniform(math.radians(degrees))
    zoom = 1 + uniform(scale)
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of t image widths is 2t there.
    shift = torch.stack([uniform(2 * translate), uniform(2 * translate)], dim=1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], dim=1)  # [N, 2, 2]
    theta = torch.cat([theta, shift.unsqueeze(2)], dim=2).to(images.dtype)  # [N, 2, 3]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images - BACKGROUND, grid, align_corners=False) + BACKGROUND


class TensorLoader:
    """Shuffled (images, labels) batches from tensors already on the device, every sample once per epoch.

    With `augment_fn` each batch is augmented on the fly; `generator` drives the shuffling and augmentation.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        augment_fn: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ):
        check_data(images, labels)
        check_flag("shuffle", shuffle)
        if augment_fn is not None and not callable(augment_fn):
            raise ValueError(f"augment_fn must be None or a function (images, generator) -> images, got {augment_fn!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be None or a torch.Generator, got {_kind(generator)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise ValueError("no images: a loader needs at least one")
        self.images, self.labels = images, labels
        self.batch_size = whole_number("batch_size", batch_size, "a whole number of images >= 1")
        self.shuffle, self.augment_fn = shuffle, augment_fn
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        order = torch.randperm(n, device=self.images.device, generator=self.generator) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                x, y = self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]
            else:
                index = order[start : start + self.batch_size]
                x, y = self.images[index], self.labels[index]
            if self.augment_fn is not None:
                x = self.augment_fn(x, self.generator)
            yield x, y


SPLITS = ("test", "validation")
VALIDATION_DIGITS = 10_000  # the "validation" split holds out the last 10,000 training digits


def mnist_loaders(
    root: str | os.PathLike | None,
    device: torch.device,
    batch_size: int,
    test_batch_size: int,
    seed: int,
    augmentation: dict | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    split: str = "test",
) -> tuple[TensorLoader, TensorLoader]:
    """Training loader (shuffled, augmented with `augment(**augmentation)`) and held-out loader, both on `device`.

    split "test": train on the 60,000 training digits, hold out the 10,000 test digits. split "validation": train on
    the first 50,000 training digits and hold out the last VALIDATION_DIGITS, never the test set; every choice of
    recipe is made there. The limits keep the first train_limit / test_limit digits of each side. An augmentation of
    None or {} means none. Reseed `train_loader.generator` to replay the same shuffling and augmentation.
    Training needs at least one full batch: fewer than `batch_size` training digits is a ValueError.
    """
    whole_number("batch_size", batch_size, "a whole number of images >= 1")
    whole_number("test_batch_size", test_batch_size, "a whole number of images >= 1")
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_device("device", device)
    check_seed("seed", seed)
    check_augmentation("augmentation", augmentation)
    generator = torch.Generator(device=device).manual_seed(seed)
    train_images, train_labels = load_mnist(root, True, device)
    if split == "validation":
        held_images, held_labels = train_images[-VALIDATION_DIGITS:], train_labels[-VALIDATION_DIGITS:]
        train_images, train_labels = train_images[:-VALIDATION_DIGITS], train_labels[:-VALIDATION_DIGITS]
    else:
        held_images, held_labels = load_mnist(root, False, device)
    if train_limit is not None and train_limit > len(train_images):
        raise ValueError(f"train_limit={train_limit} but split {split!r} has {len(train_images):,} training digits: "
                         "use None for all of them, or fewer")
    if test_limit is not None and test_limit > len(held_images):
        raise ValueError(f"test_limit={test_limit} but split {split!r} holds out {len(held_images):,} digits: use None "
                         "for all of them, or fewer")
    train_images, train_labels = train_images[:train_limit], train_labels[:train_limit]
    if len(train_images) < batch_size:
        raise ValueError(f"{len(train_images)} training digits (train_limit={train_limit}) but batch_size={batch_size}: "
                         "training needs at least one full batch; raise train_limit or lower batch_size")
    augment_fn = (lambda x, g: augment(x, g, **augmentation)) if augmentation else None
    train_loader = TensorLoader(train_images, train_labels, batch_size, True, augment_fn, generator)
    return train_loader, TensorLoader(held_images[:test_limit], held_labels[:test_limit], test_batch_size, shuffle=False)


# ---- Training: L1, the weights' moving average, train, test, fit ------------------------------------------------

class Loader(Protocol):
    """What `train`, `test` and `fit` need: a sized iterable of (images, labels) batches, like TensorLoader."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


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
        for a, c in zip(average_int, current_int):
            a.copy_(c)


CHECK_EVERY = 50  # batches between checks for a non-finite training loss: one host read each, not one per batch
CHANCE_ACC = 15.0  # % test accuracy at or below which a model is at chance level (10 classes: 10%)


def _divergence(model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer, l1_lambda: float, epoch: int,
                batch: int, batches: int) -> str:
    """What a non-finite training loss at `batch` most likely comes from: the inputs (the last batch `x` is not
    finite), the settings (the first batch, before any optimiser step) or else the learning rate."""
    where = f"non-finite training loss at epoch {epoch}, batch {batch} of {batches}"
    group = optimizer.param_groups[0]
    if not torch.isfinite(x).all():
        return f"{where}: the inputs hold NaN or infinite values; check the data and its augmentation"
    if epoch == 1 and batch == 1:
        return (f"{where}, before any optimiser step, so not the learning rate: the settings or the model; check "
                f"l1_lambda={l1_lambda:g} (it multiplies sum |w|), weight_decay={group.get('weight_decay', 0):g} and "
                "that the model's outputs are finite")
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
    model.train()
    batch_losses = torch.zeros(len(loader), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False)  # TQDM_DISABLE=1 silences it
    for batch, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        output = model(x)
        loss = F.nll_loss(output, y)
        if l1_lambda:
            loss = loss + l1_lambda * l1_penalty(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        batch_losses[batch] = loss.detach() * len(y)
        correct += (output.argmax(dim=1) == y).sum()
        seen += len(y)
        if (batch + 1) % CHECK_EVERY == 0 or batch + 1 == len(loader):
            bad = _first_non_finite(batch_losses[: batch + 1])
            if bad is not None:
                bar.close()
                raise FloatingPointError(_divergence(model, x, optimizer, l1_lambda, epoch, bad + 1, len(loader)))
    mean_loss, accuracy = batch_losses.sum().item() / seen, 100.0 * correct.item() / seen
    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{accuracy:.2f}%")
    bar.close()
    return mean_loss, accuracy


def test(model: nn.Module, loader: Loader, device: torch.device) -> tuple[float, float]:
    """Mean NLL loss and accuracy (%) over `loader`, in eval mode; the model's mode is restored afterwards."""
    check_device("device", device)
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            output = model(x)
            total_loss += F.nll_loss(output, y, reduction="sum")
            correct += (output.argmax(dim=1) == y).sum()
            seen += len(y)
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
) -> list[dict]:
    """Train `epochs` epochs with a fresh AdamW optimizer and a OneCycle schedule (peak `max_lr`); test after each.

    OneCycle also cycles AdamW's beta1 between 0.95 and 0.85, inversely to the learning rate. With `ema_decay`,
    an exponential moving average of the weights (and of BatchNorm's statistics) is kept every step; it is what
    is tested after each epoch, and its weights are copied into `model` at the end. A test accuracy at chance
    level (CHANCE_ACC) gives a RuntimeWarning; a non-finite loss stops the run with a FloatingPointError.
    Returns one record per epoch (the history.json schema; weights_l1 is the tested model's sum of |w| over the
    weights L1 penalises); `on_epoch(history)` is called after every epoch.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {_kind(model)}")
    check_device("device", device)
    whole_number("epochs", epochs, "a whole number >= 1")
    finite_number("max_lr", max_lr, zero_ok=False)
    finite_number("weight_decay", weight_decay)
    finite_number("l1_lambda", l1_lambda)
    check_ema_decay("ema_decay", ema_decay)
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
            train_loss, train_acc = train(model, train_loader, optimizer, device, scheduler, l1_lambda, epoch, ema)
            test_loss, test_acc = test(model if ema is None else ema.module, test_loader, device)
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
    """The predicted class of every image of `loader`, in order, as int64 on the CPU (eval mode)."""
    check_device("device", device)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        predictions = [model(x.to(device)).argmax(dim=1).cpu() for x, _ in loader]
    model.train(was_training)
    if not predictions:
        raise ValueError("the loader is empty: it yields no images")
    return torch.cat(predictions)


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
    return torch.cat(images)[:n], torch.cat(predicted)[:n], torch.cat(true)[:n]


# ---- Figures ----------------------------------------------------------------------------------------------

def _save(fig: plt.Figure, path: str | os.PathLike | None) -> plt.Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def plot_metric(histories: dict[str, list[dict]], key: str, path: str | os.PathLike | None = None) -> plt.Figure:
    """One curve per model of `key` ("test_loss", "test_acc", ...) against the epoch, on a log axis.

    An accuracy is drawn as its error, 100 - accuracy: on a log axis every epoch stays in view and the last ones, a
    few tenths of a point apart, still separate.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    error = key.endswith("acc")
    for name, history in histories.items():
        ax.plot([r["epoch"] for r in history], [100 - r[key] if error else r[key] for r in history], marker="o",
                markersize=3, label=name)
    label = key.replace("_", " ").replace("acc", "error (%)")
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=f"{label}, log scale", title=label[0].upper() + label[1:] + ", one run")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def plot_curves(name: str, history: list[dict], path: str | os.PathLike | None = None) -> plt.Figure:
    """Loss (left) and accuracy (right) of one model: as trained, and as tested.

    The training numbers are averages over the epoch of the live weights on augmented digits (with the L1 term in
    the loss, if any); the test numbers are those of the model `fit` tests (the weights' moving average, if kept)
    on clean test digits at the end of the epoch. The gap between them is not a generalisation gap alone.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in history]
    labels = {"train": "training: live weights, augmented digits", "test": "test: the tested model, clean digits"}
    for ax, metric, label in zip(axes, ("loss", "acc"), ("loss", "accuracy (%)")):
        for split, legend in labels.items():
            ax.plot(epochs, [r[f"{split}_{metric}"] for r in history], marker="o", markersize=3, label=legend)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: training and test curves")
    return _save(fig, path)


def plot_misclassified(
    images: torch.Tensor, predicted: torch.Tensor, true: torch.Tensor, title: str, path: str | os.PathLike | None = None
) -> plt.Figure:
    """Up to 10 digits in 5 rows by 2 columns, each titled with its predicted and true label."""
    fig, axes = plt.subplots(5, 2, figsize=(4, 9))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow((images[i].squeeze(0).cpu() * MNIST_STD + MNIST_MEAN).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"predicted {int(predicted[i])}, true {int(true[i])}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def print_summary(model: nn.Module, input_size: tuple[int, ...] = (1, 28, 28)) -> None:
    """torchsummary's table for `model`, computed on a CPU copy in eval mode so the model itself is untouched.

    torchsummary runs a forward pass (in train mode it would update BatchNorm's running statistics) and defaults
    to device="cuda", which fails on a CPU-only machine.
    """
    from torchsummary import summary

    summary(copy.deepcopy(model).cpu().eval(), input_size, device="cpu")


# ---- Records: the history file, tables, the worked example -------------------------------------------------

EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")  # numbers in every record


def _history_problem(runs: dict, keys: dict[str, type | tuple[type, ...]] | None = None) -> str | None:
    """What makes `runs` no history ({model name: entry whose "history" is a non-empty list of epoch records with
    every EPOCH_KEYS number, and `keys` of the given types}), in words; None if it is one."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    for name, entry in runs.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("history"), list) or not entry["history"]:
            return f"model {name!r} has no 'history' list of epochs"
        wrong = [k for k, kind in (keys or {}).items() if not isinstance(entry.get(k), kind) or isinstance(entry.get(k), bool)]
        if wrong:
            return f"model {name!r} lacks {wrong} or holds the wrong type there"
        for i, record in enumerate(entry["history"], 1):
            missing = [k for k in EPOCH_KEYS if not number(record.get(k))] if isinstance(record, dict) else EPOCH_KEYS
            if missing:
                return f"model {name!r}, epoch record {i}: no number for {list(missing)}"
    return None


def load_history(path: str | os.PathLike, missing_ok: bool = True) -> dict:
    """The history file as a dict; where it does not exist, {} (a history yet to start) or, without missing_ok, a
    ValueError naming it. So is a file that is not valid JSON or not a history (`_history_problem`: a truncated,
    foreign or hand-edited file)."""
    path = Path(path)
    if not path.exists() and missing_ok:
        return {}
    if not path.exists():
        raise ValueError(f"{path} does not exist: no model has finished an epoch there yet")
    fix = "fix it, or delete it to start a new history"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error}); {fix}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}): "
                         f"{fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds {json.dumps(data)[:40]}, not a JSON object of {{model name: entry}}: {fix}")
    problem = _history_problem(data)
    if problem:
        raise ValueError(f"{path} is not a history file: {problem}; {fix}")
    return data


# What a plain open() would give a new file: mkstemp makes its files 0600, and a replaced file keeps its temporary's.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _sibling(path: Path, tag: str) -> Path:
    """A new empty file beside path, named uniquely .name.<tag>.XXXXXXXX.suffix (hidden; the suffix kept last, since
    savefig reads the format from it), with a plain new file's permissions. So two writers never share one."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{tag}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


def _write_synced(path: Path, data: bytes) -> None:
    """Write `data` into path and onto the disk (flushed and fsync'ed) before returning."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def replace_file(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a temporary sibling of `path` of its own (`_sibling`), then replace `path` with it in one step:
    never half-written, and concurrent writers never share a temporary file (the last replacement wins). On any
    failure, an interrupt too, the temporary file is removed and `path` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def replace_files(files: dict[Path, bytes]) -> list[Path]:
    """Replace every file of `files` ({path: content}) or none of them; returns the paths.

    Each content is first written into a temporary sibling of its own (`_sibling`), synced to the disk and read back;
    only then do they replace the old files, one after another, each old one copied aside until all are in. An error
    or an interrupt at any point puts back every file already replaced and removes every file written here. Unique
    names keep concurrent calls from sharing these files, but not from interleaving: each file ends as one call's
    content. (A SIGKILL or a power cut during the replacements themselves, a few milliseconds, would leave some files
    new and the copies aside, .name.old.XXXXXXXX.suffix.)
    """
    staged, kept, done = {}, {}, []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            staged[path] = _sibling(path, "tmp")
            _write_synced(staged[path], data)
            if staged[path].read_bytes() != data:
                raise OSError(f"{staged[path]} does not read back as it was written: not published")
            if path.exists():
                kept[path] = _sibling(path, "old")
                shutil.copy2(path, kept[path])
        for path, tmp in staged.items():
            tmp.replace(path)
            done.append(path)
    except BaseException:
        for path in reversed(done):
            if path in kept:
                kept[path].replace(path)
            else:
                path.unlink()
        raise
    finally:
        for leftover in [*staged.values(), *kept.values()]:
            leftover.unlink(missing_ok=True)
    return list(files)


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write `data` as indented JSON, replacing `path` in one step (`replace_file`), synced to the disk; a non-finite
    number is a ValueError."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    return replace_file(path, lambda tmp: _write_synced(tmp, text.encode()))


def save_history(path: str | os.PathLike, name: str, entry: dict) -> None:
    """Write `entry` under `name` in the history file, keeping the other models' entries; atomic."""
    data = load_history(path)
    data[name] = entry
    write_json(path, data)


_interruptions: list[str] = []  # what interrupted the watched run, or could have done so unseen (watch_interrupts)


def _interrupt(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    _interruptions.append(f"{name} arrived")
    raise KeyboardInterrupt(f"{name}: the run stops here and is not published")


def _watch_sigint(info) -> None:
    """IPython's pre_run_cell event: ipykernel sets its own SIGINT handler before each cell; this one also records."""
    signal.signal(signal.SIGINT, _interrupt)


def _parent_ignores_sigint() -> bool:
    """Whether this process's parent ignores SIGINT (read from /proc on Linux; False where that cannot be read)."""
    try:
        status = Path(f"/proc/{os.getppid()}/status").read_text()
    except OSError:
        return False
    ignored = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigIgn:")), 0)
    return bool(ignored >> (signal.SIGINT - 1) & 1)


def watch_interrupts() -> list[str]:
    """Watch the run from now on for what must keep it from being published; returns that list, emptied, for
    `publish`.

    SIGINT and SIGTERM are recorded, and raise KeyboardInterrupt, even where the parent started this process with
    SIGINT ignored; in IPython the SIGINT handler is installed again before every cell (ipykernel installs its own for
    each cell, and ignores SIGINT between cells). A parent that ignores SIGINT, such as papermill started in the
    background by a shell, would swallow an interrupt meant for the run: that is recorded at once, with a warning.
    """
    _interruptions.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None:
        shell.events.register("pre_run_cell", _watch_sigint)
    if _parent_ignores_sigint():
        _interruptions.append(f"the process that runs this one (pid {os.getppid()}) ignores SIGINT, so an interrupt sent "
                              "to it would not have stopped this run; start it in the foreground, or with job control "
                              "(`set -m` in a script), to publish")
        warnings.warn(f"{_interruptions[-1]}: this run will not be published", RuntimeWarning, stacklevel=2)
    return _interruptions


def _study_settings(runs: dict) -> dict:
    """The settings a history's runs were made with (the Colab cell's aside), {} unless every entry records the same."""
    found = [{k: v for k, v in (entry.get("settings") or {}).items() if k not in COLAB_SETTINGS} for entry in runs.values()]
    return found[0] if found and all(f == found[0] for f in found) else {}


def _incomplete(run_dir: Path, runs: dict, histories: dict[str, list[dict]]) -> str | None:
    """What is missing from a run's files for it to be the whole run `histories` says it was; None if nothing."""
    settings = _study_settings(runs)
    variants = list(settings.get("VARIANTS") or {})
    if sorted(runs) != sorted(histories) or sorted(runs) != sorted(variants):
        return f"its history file holds {sorted(runs)}, the run {sorted(histories)}, and VARIANTS names {sorted(variants)}"
    for name, entry in runs.items():
        if entry["history"] != histories[name]:
            return f"{name}'s epochs on file ({len(entry['history'])}) are not those it trained ({len(histories[name])})"
        if len(entry["history"]) != settings.get("EPOCHS") or "predictions" not in entry:
            return f"{name} has {len(entry['history'])} of its {settings.get('EPOCHS')} epochs on file, or no predictions"
    figures = ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in runs]
    for figure in figures:
        path = run_dir / "Images" / f"{figure}.png"
        if not path.is_file() or not path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"):
            return f"{path} is missing or not a PNG"
    return None


def _differs(out_dir: Path, targets: list[Path], runs: dict) -> str | None:
    """Why out_dir's files must not be replaced by this run's without REPLACE_RESULTS: the run is not the study their
    history.json records (other settings, or none recorded); None where it is, or where none of `targets` exist."""
    present = [path for path in targets if path.exists()]
    if not present:
        return None
    published = out_dir / "results" / "history.json"
    if not published.is_file():
        return f"{out_dir} holds {present[0]} and more, but no results/history.json that says what made them"
    try:
        theirs = _study_settings(load_history(published))
    except ValueError as error:
        return str(error)
    ours = _study_settings(runs)
    changed = [f"{k} {ours.get(k)!r} (published: {theirs.get(k)!r})" for k in dict.fromkeys([*theirs, *ours])
               if ours.get(k) != theirs.get(k)]
    return f"its settings differ from those {published} records: {', '.join(changed)}" if changed else None


def publish(run_dir: str | os.PathLike, out_dir: str | os.PathLike, histories: dict[str, list[dict]],
            replace: bool = False, interruptions: Iterable[str] = ()) -> list[Path]:
    """Copy a finished run's results/ and Images/ files from run_dir into out_dir, with README.md and STUDY.md's
    generated numbers made from it (`_documents`), all of them or none (`replace_files`); returns the files published,
    [] where the run is kept apart.

    Refused, with a RuntimeError: a run that something interrupted (`interruptions`, from `watch_interrupts`); one
    whose files are not the whole run (`histories`: every variant of VARIANTS, its EPOCHS epochs, its predictions and
    figures); a variant at chance level (a diverged run). Kept apart in run_dir, with the reason printed, unless
    `replace` (the notebook's REPLACE_RESULTS): a run whose settings are not those out_dir's results/history.json
    records (fewer epochs, a TRAIN_LIMIT or TEST_LIMIT, a subset of VARIANTS, any other setting), and any run where
    out_dir holds files it would replace but no such record. Out_dir's files change only by a full study at their
    settings, or on purpose.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    where = f"the run's files are in {run_dir}"
    interruptions = list(interruptions)
    if interruptions:
        raise RuntimeError(f"not published: {'; '.join(interruptions)}; {where} (a new run starts at cell 3)")
    runs = load_history(run_dir / "results" / "history.json")
    problem = _incomplete(run_dir, runs, histories)
    if problem:
        raise RuntimeError(f"not published: {problem}; {where}")
    for name, history in histories.items():
        if history[-1]["test_acc"] <= CHANCE_ACC:
            raise RuntimeError(f"{name} ended at {history[-1]['test_acc']:.2f}% test accuracy, chance level: not "
                               f"published; {where}")
    sources = [p for p in sorted(run_dir.glob("results/*")) + sorted(run_dir.glob("Images/*")) if p.is_file()]
    files = {out_dir / source.relative_to(run_dir): source.read_bytes() for source in sources}
    reason = None if replace else _differs(out_dir, list(files), runs)
    if reason:
        print(f"not published into {out_dir}: {reason}. This run's results and figures stay in {run_dir}; "
              "REPLACE_RESULTS = True replaces the published ones with such a run")
        return []
    return replace_files({**files, **_documents(out_dir, runs)})


def _documents(out_dir: Path, runs: dict) -> dict[Path, bytes]:
    """README.md and STUDY.md under out_dir with their generated numbers made from this run's history
    (experiments/report.py), where out_dir is a copy of the repository that holds them; {} elsewhere (a folder of
    the user's, a Colab session with the files uploaded). So a published run brings its README along, in one step."""
    if not all((out_dir / name).is_file() for name in ("README.md", "STUDY.md", "experiments/report.py")):
        return {}
    from experiments import report

    generated = report.blocks({**report.load(out_dir), "history": runs})
    return {out_dir / name: report.render((out_dir / name).read_text(), generated).encode() for name in report.DOCUMENTS}


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table: the header row, a separator, then each row's cells as str() prints them."""
    line = lambda cells: "| " + " | ".join(str(cell) for cell in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(row) for row in rows])


def results_table(runs: dict) -> str:
    """Markdown table of each model's final test accuracy and loss from the history file's dict.

    "lowest test acc" is the lowest test accuracy over the second half of the epochs (epochs 11-20 of 20): how far
    the curve dips once it has settled. Nothing is selected by its test score: every number is either the last
    epoch's or a property of the whole second half. "seconds / epoch" is the median epoch, training plus testing.
    A dict that is not such a history (`_history_problem`) is a ValueError that says what is wrong.
    """
    problem = "no models" if not runs else _history_problem(runs, {"params": int, "l1_lambda": (int, float), "device": str})
    if problem:
        raise ValueError(f"results_table needs the history file's {{model name: entry}}: {problem}")
    rows = []
    for name, run in runs.items():
        history = run["history"]
        half = history[len(history) // 2 :]
        rows.append([name, f"{run['params']:,}", f"{run['l1_lambda']:g}", f"{history[-1]['test_acc']:.2f}",
                     f"{history[-1]['test_loss']:.4f}", f"{min(r['test_acc'] for r in half):.2f}",
                     f"{statistics.median(r['seconds'] for r in history):.1f}", run["device"]])
    return markdown_table(["model", "parameters", "L1 lambda", "final test acc (%)", "final test loss",
                           f"lowest test acc, epochs {half[0]['epoch']}-{history[-1]['epoch']} (%)", "seconds / epoch", "device"], rows)


# The README's worked example: 3 images of 4 channels of 1x2 pixels, [N=3, C=4, H=1, W=2].
WORKED_EXAMPLE = torch.tensor(
    [
        [[[2.0, 3]], [[5, 7]], [[11, 13]], [[17, 19]]],
        [[[0.0, 1]], [[1, 2]], [[3, 5]], [[8, 13]]],
        [[[1.0, 2]], [[3, 4]], [[5, 6]], [[7, 8]]],
    ]
)


def worked_example_table(x: torch.Tensor = WORKED_EXAMPLE, groups: int = 2) -> str:
    """Markdown table of the means and population standard deviations each normalisation computes on x [N, C, H, W].

    BN: one pair per channel, over the batch and pixels; LN: one per image, over channels and pixels;
    GN: one per image and group of C/groups channels; IN: one per image and channel, over its pixels.
    """
    n, c, h, w = x.shape
    pixels = f"{h * w} pixels"

    def stats(values: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return values.mean(dim=dims).flatten(), values.std(dim=dims, unbiased=False).flatten()

    grouped = x.reshape(n, groups, c // groups, h, w)
    rows = [
        ("BatchNorm", f"per channel, over {n} images x {pixels}", stats(x, (0, 2, 3))),
        ("LayerNorm", f"per image, over {c} channels x {pixels}", stats(x, (1, 2, 3))),
        (f"GroupNorm ({groups} groups)", f"per image and group, over {c // groups} channels x {pixels}",
         stats(grouped, (2, 3, 4))),
        ("InstanceNorm", f"per image and channel, over {pixels}", stats(x, (2, 3))),
    ]
    numbers = lambda t: ", ".join(f"{v:.3f}" for v in t.tolist())
    return markdown_table(["norm", "statistics", "count", "means", "standard deviations"],
                          [[name, over, len(mean), numbers(mean), numbers(std)] for name, over, (mean, std) in rows])
