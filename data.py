"""The data: MNIST read from its IDX files and checked (sizes, headers, SHA-256), held in memory on the training
device, batched augmentation, `TensorLoader` and `mnist_loaders`.

The whole of MNIST (about 190 MB as float32) lives as one tensor on the training device, normalised once, and
augmentation runs on whole batches there: no PIL, no worker processes, no per-sample Python.
"""

import contextlib
import hashlib
import math
import os
import struct
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torchvision import datasets

from checks import check_augmentation, check_device, check_flag, check_limit, check_seed, whole_number
from utils import _kind, check_data

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pixel mean and standard deviation of the training set
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD  # a black pixel after normalisation
# MNIST's four original files (decompressed) and their published SHA-256 sums: every file read is checked against its
# sum, unless a SHA256SUMS beside the data lists that file (another copy, such as the tests' tiny fake MNIST).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


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
    check_limit("limit", limit)
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
    """The folder that holds MNIST/raw: `root`, else the environment variable MNIST_ROOT, else ./data; a ValueError
    naming which of them it came from where that path is a file."""
    name = "root" if root else "MNIST_ROOT" if os.environ.get("MNIST_ROOT") else "the default root"
    path = Path(root or os.environ.get("MNIST_ROOT") or "data")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a file: it must be the folder that holds MNIST/raw (or one to "
                         "download MNIST into)")
    return path


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


def _fetch_mnist(root: Path, files: list[Path], download: bool) -> None:
    """Download MNIST with torchvision when one of `files` is missing; FileNotFoundError where that cannot be done,
    with the folders the download made removed where it left them empty."""
    for file in files:
        if file.exists() and not file.is_file():
            raise ValueError(f"{file} is a {'folder' if file.is_dir() else 'special file'}, not a file: put the "
                             f"original MNIST file {file.name} there instead")
    missing = [file.name for file in files if not file.is_file()]
    if not missing:
        return
    reason = "download=False"
    if download:
        raw = files[0].parent
        made = [folder for folder in (raw, raw.parent, root) if not folder.exists()]  # the deepest first
        try:
            datasets.MNIST(root, download=True)
            return
        except (RuntimeError, OSError) as error:
            reason = f"the download failed: {error}"
        for folder in made:  # what the download made and left empty: the folders are as they were
            with contextlib.suppress(OSError):
                folder.rmdir()
    packed = [f"{name}.gz" for name in missing if (files[0].parent / f"{name}.gz").is_file()]
    unpack = f"{', '.join(packed)} are there compressed: decompress them in place (gunzip -k *.gz there). " if packed else ""
    raise FileNotFoundError(
        f"MNIST not found: {', '.join(missing)} missing in {files[0].parent.resolve()} ({reason}). {unpack}"
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
    if len(images) == 0:
        raise ValueError(f"augment: images is an empty batch, {_kind(images)}: it needs at least one image")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"augment: generator must be None or a torch.Generator, got {_kind(generator)}")
    return _augment(images, generator, degrees, translate, scale)


def _augment(images: torch.Tensor, generator: torch.Generator | None, degrees: float, translate: float,
             scale: float) -> torch.Tensor:
    """augment without its checks: what the training loader calls on every batch, its settings checked once."""
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
                images, labels = self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]
            else:
                index = order[start : start + self.batch_size]
                images, labels = self.images[index], self.labels[index]
            if self.augment_fn is not None:
                images = self.augment_fn(images, self.generator)
            yield images, labels


SPLITS = ("test", "validation")
VALIDATION_DIGITS = 10_000  # the "validation" split holds out the last 10,000 training digits


def held_out_labels(root: str | os.PathLike | None, split: str = "test", limit: int | None = None) -> torch.Tensor:
    """The labels of the digits `mnist_loaders` holds out for `split`, the first `limit` of them, as int64 on the CPU:
    what a run's predictions are scored against. Only the label file is read, checked as `load_mnist` checks it; a
    missing one is a FileNotFoundError (nothing is downloaded)."""
    check_limit("limit", limit)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = mnist_root(root)
    file = root / "MNIST" / "raw" / f"{'train' if split == 'validation' else 't10k'}-labels-idx1-ubyte"
    _fetch_mnist(root, [file], download=False)
    labels = _read_idx(file, 2049, (), _sha256sums(root).get(f"MNIST/raw/{file.name}")).long()
    return (labels[-VALIDATION_DIGITS:] if split == "validation" else labels)[:limit]


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
    check_limit("train_limit", train_limit)
    check_limit("test_limit", test_limit)
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
    augment_fn = (lambda x, g: _augment(x, g, **augmentation)) if augmentation else None  # checked above
    train_loader = TensorLoader(train_images, train_labels, batch_size, True, augment_fn, generator)
    return train_loader, TensorLoader(held_images[:test_limit], held_labels[:test_limit], test_batch_size, shuffle=False)
