"""data.py: MNIST read and checked, the loaders, and augmentation measured in physical units."""

import hashlib
import struct
from pathlib import Path

import pytest
import torch

import data
from conftest import BAD_COUNTS, MNIST_ROOT, needs_mnist, raises, write_sums


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


@pytest.mark.parametrize("before", ["an empty folder", "no folder", "MNIST/raw holding one file"])
def test_a_failed_download_leaves_the_folders_as_they_were(tmp_path, monkeypatch, before):
    def offline(root, download):  # as torchvision without a network: it makes MNIST/raw, then fails
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(data.datasets, "MNIST", offline)
    root = tmp_path / "root"
    if before != "no folder":
        root.mkdir()
    if before == "MNIST/raw holding one file":
        (root / "MNIST" / "raw").mkdir(parents=True)
        (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"")
    found = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with raises(FileNotFoundError, "MNIST not found", "the download failed: Error downloading"):
        data.load_mnist(root)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == found


@pytest.mark.parametrize("split", data.SPLITS)
def test_held_out_labels_are_those_the_loaders_hold_out(tiny_mnist, monkeypatch, split):
    monkeypatch.setattr(data, "VALIDATION_DIGITS", 6)  # of the tiny MNIST's 20 training digits
    held = data.mnist_loaders(tiny_mnist, torch.device("cpu"), 4, 3, 0, None, None, 5, split)[1]
    assert torch.equal(data.held_out_labels(tiny_mnist, split, 5), held.labels) and len(held.labels) == 5
    with raises(ValueError, "split must be one of", "'train'"):
        data.held_out_labels(tiny_mnist, "train")


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


# ---- Errors for people: each bad argument, file or diverging run is named ------------------------------------


CPU = torch.device("cpu")
TRAIN_FILES = ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"]
TEST_FILES = ["MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]


# ---- load_mnist: limit, missing, truncated and corrupt files, checksums -----------------------------------------

@pytest.mark.parametrize("limit", BAD_COUNTS)
def test_load_mnist_rejects_bad_limit(tiny_mnist, limit):
    with raises(ValueError, "limit", repr(limit), ">= 1"):
        data.load_mnist(tiny_mnist, limit=limit, download=False)


def test_missing_file_is_named_and_only_the_split_is_needed(tiny_mnist):
    for name in TEST_FILES:
        (tiny_mnist / name).unlink()
    assert len(data.load_mnist(tiny_mnist, train=True, download=False)[0]) == 20  # the test files are not needed
    with raises(FileNotFoundError, "t10k-images-idx3-ubyte", str(tiny_mnist / "MNIST" / "raw"), "MNIST_ROOT"):
        data.load_mnist(tiny_mnist, train=False, download=False)


@pytest.mark.parametrize("how", ["root", "MNIST_ROOT"])
def test_a_root_that_is_a_file_is_named(tmp_path, monkeypatch, how):
    file = tmp_path / "mnist.tar"
    file.write_bytes(b"not a folder")
    monkeypatch.setenv("MNIST_ROOT", str(file) if how == "MNIST_ROOT" else str(tmp_path))
    for load in (lambda: data.load_mnist(file if how == "root" else None, download=False),
                 lambda: data.mnist_digest(file if how == "root" else None)):
        with raises(ValueError, f"{how}={str(file)!r} is a file", "the folder that holds MNIST/raw"):
            load()


def test_compressed_files_alone_are_named_with_how_to_decompress_them(tiny_mnist):
    import gzip
    for name in TRAIN_FILES:
        path = tiny_mnist / name
        Path(f"{path}.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    with raises(FileNotFoundError, "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz are there compressed",
                "gunzip -k"):
        data.load_mnist(tiny_mnist, download=False)


IMAGES, LABELS = TRAIN_FILES
# 20 training digits: images 16 + 20 * 784 = 15,696 bytes, labels 8 + 20 = 28 bytes.
FILE_FAULTS = {
    "images cut short": (IMAGES, lambda b: b[:-100], ["15,596 bytes", "expected 15,696"]),
    "labels cut short": (LABELS, lambda b: b[:-1], ["27 bytes", "expected 28"]),
    "images too long": (IMAGES, lambda b: b + b"\0", ["15,697 bytes", "expected 15,696"]),
    "shorter than header": (IMAGES, lambda b: b[:10], ["10 bytes", "16-byte header"]),
    "empty labels": (LABELS, lambda b: b"", ["0 bytes", "8-byte header"]),
    "labels as images": (IMAGES, lambda b: struct.pack(">I", 2049) + b[4:], ["magic number 2049", "expected 2051"]),
    "zero magic": (LABELS, lambda b: bytes(4) + b[4:], ["magic number 0", "expected 2049"]),
    "no digits": (IMAGES, lambda b: struct.pack(">IIII", 2051, 0, 28, 28), ["no digits"]),
}


@pytest.mark.parametrize("fault", FILE_FAULTS)
def test_corrupt_file_is_named_with_its_size_or_header(tiny_mnist, fault):
    name, corrupt, parts = FILE_FAULTS[fault]
    path = tiny_mnist / name
    path.write_bytes(corrupt(path.read_bytes()))
    with raises(ValueError, str(path), *parts):
        data.load_mnist(tiny_mnist, download=False)


def test_images_and_labels_of_different_counts(tiny_mnist):
    (tiny_mnist / LABELS).write_bytes(struct.pack(">II", 2049, 19) + bytes(19))
    write_sums(tiny_mnist)
    with raises(ValueError, "train-images-idx3-ubyte holds 20 digits", "train-labels-idx1-ubyte 19 labels"):
        data.load_mnist(tiny_mnist, download=False)


def test_checksum_mismatch_names_file_and_both_sums(tiny_mnist):
    path = tiny_mnist / IMAGES
    good = write_sums(tiny_mnist)[IMAGES]
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # one pixel changed: the size is right, only the checksum sees it
    path.write_bytes(raw)
    found = hashlib.sha256(raw).hexdigest()
    with raises(ValueError, str(path), f"SHA-256 {found}", f"SHA256SUMS lists {good}"):
        data.load_mnist(tiny_mnist, download=False)


def test_checksums_only_of_the_requested_split(tiny_mnist):
    write_sums(tiny_mnist, wrong=set(TEST_FILES))
    assert len(data.load_mnist(tiny_mnist, train=True, download=False)[0]) == 20
    with raises(ValueError, "t10k-images-idx3-ubyte", "SHA256SUMS lists " + "0" * 64):
        data.load_mnist(tiny_mnist, train=False, download=False)


def test_malformed_checksum_line(tiny_mnist):
    (tiny_mnist / "SHA256SUMS").write_text("\nnot-a-sum MNIST/raw/train-images-idx3-ubyte\n")
    with raises(ValueError, "SHA256SUMS, line 2", "'not-a-sum MNIST/raw/train-images-idx3-ubyte'"):
        data.load_mnist(tiny_mnist, download=False)


def test_without_a_checksum_list_the_published_sums_catch_one_flipped_byte(tiny_mnist, monkeypatch):
    # the tiny files stand in for MNIST's: their sums become the "published" ones, and no SHA256SUMS lists them
    monkeypatch.setattr(data, "MNIST_SHA256", {Path(k).name: v for k, v in write_sums(tiny_mnist).items()})
    (tiny_mnist / "SHA256SUMS").unlink()
    assert len(data.load_mnist(tiny_mnist, download=False)[0]) == 20
    path = tiny_mnist / IMAGES
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(raw)
    with raises(ValueError, str(path), "MNIST's published SHA-256 is " + data.MNIST_SHA256[path.name]):
        data.load_mnist(tiny_mnist, download=False)


@needs_mnist
def test_a_flipped_byte_in_a_copy_of_real_mnist_is_caught_without_a_checksum_list(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in TEST_FILES:
        (tmp_path / name).write_bytes((Path(MNIST_ROOT) / name).read_bytes())
    assert len(data.load_mnist(tmp_path, train=False, limit=1, download=False)[0]) == 1  # the copy passes
    path = tmp_path / TEST_FILES[0]
    content = bytearray(path.read_bytes())
    content[5000] ^= 1  # one pixel of one digit
    path.write_bytes(content)
    with raises(ValueError, str(path), "MNIST's published SHA-256 is"):
        data.load_mnist(tmp_path, train=False, download=False)


def test_a_checksum_list_that_names_none_of_the_files(tiny_mnist):
    sums = write_sums(tiny_mnist)
    (tiny_mnist / "SHA256SUMS").write_text("".join(f"{d}  raw/{Path(n).name}\n" for n, d in sums.items()))  # wrong root
    with raises(ValueError, "SHA256SUMS lists none of MNIST's files", "MNIST/raw/train-images-idx3-ubyte",
                str(tiny_mnist)):
        data.load_mnist(tiny_mnist, download=False)


def test_a_folder_where_a_data_file_should_be(tiny_mnist):
    path = tiny_mnist / IMAGES
    path.unlink()
    path.mkdir()
    with raises(ValueError, str(path), "is a folder, not a file"):
        data.load_mnist(tiny_mnist)  # download=True: a folder is not a missing file to download


def test_an_unreadable_data_file(tiny_mnist, monkeypatch):
    path = tiny_mnist / LABELS
    read_bytes = Path.read_bytes

    def refuse(self):  # as without read permission (tests run as root, who may read anything)
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with raises(ValueError, str(path), "cannot be read (Permission denied)", "permissions"):
        data.load_mnist(tiny_mnist, download=False)


def test_an_unreadable_checksum_list(tiny_mnist):
    (tiny_mnist / "SHA256SUMS").write_bytes(b"\xff\xfe not text")
    with raises(ValueError, "SHA256SUMS cannot be read"):
        data.load_mnist(tiny_mnist, download=False)


@needs_mnist
def test_real_mnist_passes_its_checksums():
    sums = Path(MNIST_ROOT) / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"no {sums}")
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines())
    assert {Path(name).name: digest for name, digest in listed.items()} == data.MNIST_SHA256  # MNIST's published sums
    assert data._sha256sums(Path(MNIST_ROOT)) == listed
    for train in (True, False):
        images, labels = data.load_mnist(MNIST_ROOT, train=train, limit=1, download=False)
        assert images.shape == (1, 1, 28, 28) and labels.tolist() == [5 if train else 7]


# ---- TensorLoader and mnist_loaders --------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", BAD_COUNTS)
def test_loader_rejects_bad_batch_size(batch_size):
    with raises(ValueError, "batch_size", repr(batch_size), ">= 1"):
        data.TensorLoader(torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long), batch_size=batch_size)


def test_loader_rejects_no_images():
    with raises(ValueError, "no images"):
        data.TensorLoader(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), batch_size=2)


@pytest.mark.parametrize("setting, value", [("batch_size", "4"), ("test_batch_size", 2.5), ("train_limit", -1),
                                            ("test_limit", "5"), ("test_limit", False)])
def test_mnist_loaders_name_the_bad_setting(tiny_mnist, setting, value):
    settings = dict(batch_size=4, test_batch_size=10, train_limit=None, test_limit=None) | {setting: value}
    with raises(ValueError, f"{setting} must be", repr(value)):
        data.mnist_loaders(tiny_mnist, CPU, seed=0, **settings)


@pytest.mark.parametrize("train_limit, batch_size", [(5, 8), (None, 32)])
def test_mnist_loaders_need_one_full_training_batch(tiny_mnist, train_limit, batch_size):
    digits = train_limit or 20
    with raises(ValueError, f"{digits} training digits", f"train_limit={train_limit}", f"batch_size={batch_size}",
                "at least one full batch"):
        data.mnist_loaders(tiny_mnist, CPU, batch_size, 10, 0, train_limit=train_limit)
    train_loader, _ = data.mnist_loaders(tiny_mnist, CPU, digits, 10, 0, train_limit=train_limit)  # one batch: fine
    assert len(train_loader) == 1


# ---- One set of rules wherever a value enters: loaders, augment, load_mnist, fit, train, test ---------------------

IMAGES_OK, LABELS_OK = torch.zeros(4, 1, 28, 28), torch.arange(4)
NAN_IMAGES = IMAGES_OK.clone()
NAN_IMAGES[2, 0, 5, 5] = float("nan")


@pytest.mark.parametrize("images, labels, parts", [
    (IMAGES_OK.numpy(), LABELS_OK, ["images must be a torch.Tensor", "numpy.ndarray", "torch.from_numpy"]),
    (IMAGES_OK, LABELS_OK.numpy(), ["labels must be a torch.Tensor", "numpy.ndarray"]),
    (IMAGES_OK.squeeze(1), LABELS_OK, ["images must be a float tensor [N, C, H, W]", "[4, 28, 28]", "unsqueeze(1)"]),
    (IMAGES_OK.to(torch.uint8), LABELS_OK, ["images must be a float tensor", "torch.uint8"]),
    (IMAGES_OK, LABELS_OK.int(), ["labels must be an int64 tensor [N]", "torch.int32"]),
    (IMAGES_OK, LABELS_OK.float(), ["labels must be an int64 tensor [N]", "torch.float32"]),
    (IMAGES_OK, LABELS_OK[:, None], ["labels must be an int64 tensor [N]", "[4, 1]"]),
    (IMAGES_OK, torch.tensor([0, 1, 10, 3]), ["labels must be classes 0-9", "1 outside", "the first 10"]),
    (IMAGES_OK, torch.tensor([-1, 1, 2, 3]), ["labels must be classes 0-9", "the first -1"]),
    (NAN_IMAGES, LABELS_OK, ["images hold 1 NaN or infinite values"]),
    (IMAGES_OK.clone().fill_(float("inf")), LABELS_OK, ["images hold 3,136 NaN or infinite values"]),
])
def test_loader_refuses_data_it_cannot_train_on(images, labels, parts):
    with raises(ValueError, *parts):
        data.TensorLoader(images, labels, batch_size=2)


@pytest.mark.parametrize("setting, value, parts", [
    ("augment_fn", {"degrees": 10}, ["augment_fn must be None or a function"]),
    ("generator", 0, ["generator must be None or a torch.Generator", "int"]),
    ("shuffle", "yes", ["shuffle must be True or False", "'yes'"]),
])
def test_loader_refuses_bad_options(setting, value, parts):
    with raises(ValueError, *parts):
        data.TensorLoader(IMAGES_OK, LABELS_OK, 2, **{setting: value})


@pytest.mark.parametrize("setting, value, allowed", [
    ("degrees", 200, "from 0 to 180 (included"), ("degrees", -1, "from 0 to 180"), ("degrees", float("nan"), "180"),
    ("degrees", "10", "180"), ("translate", 0.5, "from 0 to 0.5 (excluded"), ("translate", True, "0.5"),
    ("scale", 1.0, "from 0 to 1 (excluded"), ("scale", 1.5, "mirrored or shrunk"), ("scale", float("inf"), "to 1"),
])
def test_augment_refuses_settings_outside_their_range(setting, value, allowed):
    with raises(ValueError, f"augment: {setting} must be a number", allowed, repr(value)):
        data.augment(IMAGES_OK, **{setting: value})


def test_augment_refuses_an_empty_batch():
    with raises(ValueError, "augment: images is an empty batch", "[0, 1, 28, 28]", "at least one image"):
        data.augment(IMAGES_OK[:0])


def test_augment_refuses_images_without_a_channel_axis():
    with raises(ValueError, "augment: images must be a float tensor [N, C, H, W]", "[4, 28, 28]"):
        data.augment(IMAGES_OK.squeeze(1))


@pytest.mark.parametrize("augmentation, parts", [
    ({"degrees": 10.0}, ["augmentation must be None or {} (no augmentation)", "degrees, translate, scale", "{'degrees': 10.0}"]),
    ({"degree": 10.0, "translate": 0.1, "scale": 0.1}, ["exactly the keys", "'degree'"]),
    ("yes", ["augmentation must be None or {}", "'yes'"]),
    ({"degrees": 10.0, "translate": 0.1, "scale": 1.5}, ["augmentation: scale must be a number from 0 to 1", "1.5"]),
])
def test_mnist_loaders_check_the_augmentation_as_the_notebook_does(tiny_mnist, augmentation, parts):
    with raises(ValueError, *parts):
        data.mnist_loaders(tiny_mnist, CPU, 4, 10, 0, augmentation)


@pytest.mark.parametrize("augmentation", [None, {}, {"degrees": 0, "translate": 0, "scale": 0},
                                          {"degrees": 180, "translate": 0.49, "scale": 0.99}])
def test_mnist_loaders_take_every_allowed_augmentation(tiny_mnist, augmentation):
    train_loader, _ = data.mnist_loaders(tiny_mnist, CPU, 4, 10, 0, augmentation)
    assert (train_loader.augment_fn is None) == (not augmentation)  # None and {} both mean no augmentation
    x, _ = next(iter(train_loader))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "1"])
def test_mnist_loaders_refuse_a_bad_seed(tiny_mnist, seed):
    with raises(ValueError, "seed must be a whole number from 0 to 2**32 - 1", repr(seed)):
        data.mnist_loaders(tiny_mnist, CPU, 4, 10, seed)


@pytest.mark.parametrize("setting, value, parts", [
    ("train_limit", 21, ["train_limit=21", "has 20 training digits", "None"]),
    ("test_limit", 11, ["test_limit=11", "holds out 10 digits"]),
])
def test_mnist_loaders_refuse_a_limit_beyond_the_data(tiny_mnist, setting, value, parts):
    with raises(ValueError, *parts):  # slicing would silently give fewer digits than the record says
        data.mnist_loaders(tiny_mnist, CPU, 4, 10, 0, **{setting: value})


@pytest.mark.parametrize("setting, value, parts", [
    ("train", "no", ["train must be True or False", "'no'"]),
    ("download", 1, ["download must be True or False", "1"]),
    ("root", 5, ["root must be None", "5"]),
    ("device", "gpu", ["device must be a torch.device", "['cpu'", "'gpu'"]),
])
def test_load_mnist_names_a_bad_argument(tiny_mnist, setting, value, parts):
    with raises(ValueError, *parts):
        data.load_mnist(**{"root": tiny_mnist, "download": False, setting: value})
