"""Errors for people: each bad setting, file, device or diverging run is refused with a message that names it."""

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import records
import utils
from conftest import MNIST_ROOT, ROOT, needs_mnist, raises, write_sums
from experiments import publish
from model import Net

CPU = torch.device("cpu")
TRAIN_FILES = ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"]
TEST_FILES = ["MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]
BAD_COUNTS = [0, -1, True, 2.5, "10"]  # each refused where a whole number >= 1 is needed


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


# ---- load_history -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, parts", [
    ('{"BN": {"history": [', ["not valid JSON", "line 1, column 21"]),
    ("", ["not valid JSON", "line 1, column 1"]),
    ("[1, 2]", ["[1, 2]", "not a JSON object"]),
    ('"BN"', ['"BN"', "not a JSON object"]),
    ("null", ["null", "not a JSON object"]),
])
def test_load_history_rejects_a_bad_file(tmp_path, text, parts):
    path = tmp_path / "history.json"
    path.write_text(text)
    with raises(ValueError, str(path), *parts):
        records.load_history(path)


EPOCH = dict(epoch=1, train_loss=0.5, train_acc=88.0, test_loss=0.1, test_acc=97.5, lr=0.004, seconds=5.0)
ENTRY = dict(norm="B", l1_lambda=1e-5, params=7234, device="cpu", history=[EPOCH])
FOREIGN = {  # what a history file must not be mistaken for; each: (its text, what the error says)
    "an experiment's JSON": (json.dumps({"experiment": "seeds", "settings": {"EPOCHS": 20}, "runs": []}),
                             ["model 'experiment' has no 'history' list"]),
    "an entry without history": (json.dumps({"BN": {"norm": "B"}}), ["model 'BN' has no 'history' list"]),
    "history as text": (json.dumps({"BN": {"history": "20 epochs"}}), ["model 'BN' has no 'history' list"]),
    "no epochs": (json.dumps({"BN": {"history": []}}), ["model 'BN' has no 'history' list"]),
    "a record as a list": (json.dumps({"BN": {"history": [[1, 0.5]]}}), ["epoch record 1", "'epoch'"]),
    "a number as text": (json.dumps({"BN": {"history": [EPOCH, {**EPOCH, "test_acc": "97.5"}]}}),
                         ["model 'BN', epoch record 2: no number for ['test_acc']"]),
    "a missing number": (json.dumps({"BN": {"history": [{k: v for k, v in EPOCH.items() if k != "lr"}]}}), ["['lr']"]),
    "a NaN epoch": (json.dumps({"BN": {"history": [EPOCH, {**EPOCH, "epoch": float("nan")}]}}),
                    ["model 'BN', epoch record 2: NaN or infinite ['epoch']"]),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_load_history_refuses_a_file_that_is_no_history(tmp_path, case):
    text, parts = FOREIGN[case]
    path = tmp_path / "history.json"
    path.write_text(text)
    with raises(ValueError, str(path), "is not a history file", *parts):
        records.load_history(path)
    with raises(ValueError, str(path)):  # nor is anything saved into it
        records.save_history(path, "GN", ENTRY)
    assert path.read_text() == text


@pytest.mark.parametrize("runs, parts", [
    ({}, ["no models"]),
    ({"BN": {k: v for k, v in ENTRY.items() if k != "params"}}, ["model 'BN' lacks ['params']"]),
    ({"BN": {**ENTRY, "params": "7,234"}}, ["['params']"]),
    ({"BN": {**ENTRY, "device": None}}, ["['device']"]),
    ({"BN": {**ENTRY, "history": [{**EPOCH, "test_acc": None}]}}, ["epoch record 1", "['test_acc']"]),
    ({"BN": [ENTRY]}, ["model 'BN' has no 'history' list"]),
])
def test_results_table_says_what_is_wrong_with_its_input(runs, parts):
    with raises(ValueError, "results_table", *parts):
        records.results_table(runs)


def test_a_history_that_must_be_there_is_named_when_it_is_not(tmp_path):
    assert records.load_history(tmp_path / "history.json") == {}  # a history yet to start, for save_history
    with raises(ValueError, str(tmp_path / "history.json"), "does not exist"):
        records.load_history(tmp_path / "history.json", missing_ok=False)


def test_results_table_of_the_committed_history_still_works():
    assert records.results_table(records.load_history(ROOT / "results" / "history.json")).count("\n") == 4


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


def test_a_run_at_chance_warns_and_is_not_published(tmp_path):
    x, y = torch.randn(40, 1, 28, 28), torch.arange(40) % 10
    loader = data.TensorLoader(x, y, 20, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
    nn.init.zeros_(model[1].weight), nn.init.zeros_(model[1].bias)  # all logits equal on blank digits: class 0
    blank = data.TensorLoader(torch.zeros(40, 1, 28, 28), y, 20, shuffle=False)  # balanced labels: 10% for class 0
    with pytest.warns(RuntimeWarning, match="chance level"):
        history = utils.fit(model, loader, blank, CPU, epochs=1, max_lr=1e-9)
    assert history[-1]["test_acc"] == 10.0
    run_dir, histories = make_run(tmp_path, variants=(FIRST,), EPOCHS=1)
    histories[FIRST][-1]["test_acc"] = history[-1]["test_acc"]
    records.write_json(run_dir / "results" / "history.json", {FIRST: {**COMMITTED[FIRST], "history": histories[FIRST],
                                                                    "settings": SETTINGS | {"EPOCHS": 1, "VARIANTS": {FIRST: "B"}}}})
    with raises(RuntimeError, FIRST, "chance level", "not published"):
        publish.publish(run_dir, tmp_path / "out", histories)
    assert not (tmp_path / "out").exists()


def test_nothing_non_finite_goes_into_json(tmp_path):
    path = tmp_path / "history.json"
    records.save_history(path, "BN", {"history": [EPOCH]})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not JSON compliant"):
        records.save_history(path, "LN", {"history": [{**EPOCH, "test_loss": float("nan")}]})
    assert path.read_bytes() == before


# ---- Publishing: the committed results change only on purpose, all files or none, never after an interrupt -------

COMMITTED = json.loads((ROOT / "results" / "history.json").read_text())
FIRST = next(iter(COMMITTED))  # the committed study's first variant (BatchNorm + L1)
SETTINGS = COMMITTED[FIRST]["settings"]  # the committed study's
FIGURES = ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in COMMITTED]


def make_run(tmp_path: Path, variants=tuple(COMMITTED), **changes) -> tuple[Path, dict]:
    """A finished run's folder as the notebook leaves it, with the committed runs' entries under `changes` to the
    committed settings (fewer EPOCHS: the first epochs), each epoch a second slower so that its files differ from the
    committed ones, and a figure of each name; returns the folder and the run's histories."""
    settings = SETTINGS | {"VARIANTS": {name: SETTINGS["VARIANTS"][name] for name in variants}} | changes
    run_dir = tmp_path / "runs" / "study-test"
    runs = {name: {**COMMITTED[name], "settings": settings, "history": [
        {**record, "seconds": record["seconds"] + 1} for record in COMMITTED[name]["history"][: settings["EPOCHS"]]]}
        for name in variants}
    records.write_json(run_dir / "results" / "history.json", runs)
    for figure in ["test_loss", "test_accuracy"] + [f"{kind}_{name}" for kind in ("curves", "misclassified") for name in variants]:
        (run_dir / "Images").mkdir(parents=True, exist_ok=True)
        (run_dir / "Images" / f"{figure}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + f"{figure} of this run".encode())
    return run_dir, {name: entry["history"] for name, entry in runs.items()}


@pytest.fixture
def out_dir(tmp_path):
    """An OUT_DIR holding a copy of the committed results/ and Images/."""
    for folder in ("results", "Images"):
        shutil.copytree(ROOT / folder, tmp_path / "out" / folder)
    return tmp_path / "out"


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def published_from(run_dir: Path, out_dir: Path) -> bool:
    """Whether every file of the run is in out_dir, byte for byte."""
    return all((out_dir / p.relative_to(run_dir)).read_bytes() == content for p, content in snapshot(run_dir).items())


@pytest.mark.parametrize("variants, changes, named", [
    (tuple(COMMITTED), {"EPOCHS": 1}, "EPOCHS 1 (published: 20)"),
    (tuple(COMMITTED), {"TRAIN_LIMIT": 2048}, "TRAIN_LIMIT 2048 (published: None)"),
    (tuple(COMMITTED), {"TEST_LIMIT": 500}, "TEST_LIMIT 500 (published: None)"),
    ((FIRST,), {}, f"VARIANTS {{{FIRST!r}: 'B'}} (published: {SETTINGS['VARIANTS']!r})"),
    (tuple(COMMITTED), {"SEED": 2}, "SEED 2 (published: 1)"),
    (tuple(COMMITTED), {"DEVICE": "cpu"}, "DEVICE 'cpu' (published: None)"),
    (tuple(COMMITTED), {"AUGMENTATION": None}, "AUGMENTATION None (published: {'degrees': 10.0"),
])
def test_a_run_that_is_not_the_committed_study_stays_apart(tmp_path, out_dir, capsys, variants, changes, named):
    run_dir, histories = make_run(tmp_path, variants, **changes)
    before = snapshot(out_dir)
    assert publish.publish(run_dir, out_dir, histories) == []
    assert snapshot(out_dir) == before  # every committed file byte-identical, nothing added
    printed = capsys.readouterr().out
    assert f"not published into {out_dir}" in printed and named in printed and str(run_dir) in printed
    assert "REPLACE_RESULTS = True" in printed


@pytest.mark.parametrize("changes", [{}, {"GITHUB_REPO": "someone/s6", "GITHUB_BRANCH": "dev"}])  # Colab's: no study's
def test_the_full_study_at_the_committed_settings_replaces_its_files_and_only_them(tmp_path, out_dir, changes):
    run_dir, histories = make_run(tmp_path, **changes)
    before = snapshot(out_dir)
    published = publish.publish(run_dir, out_dir, histories)
    assert sorted(published) == sorted(out_dir / p.relative_to(run_dir) for p in snapshot(run_dir))
    assert published_from(run_dir, out_dir)
    assert {p: b for p, b in snapshot(out_dir).items() if p not in published} == \
        {p: b for p, b in before.items() if p not in published}  # the experiments' JSON and figures untouched
    assert not [p for p in out_dir.rglob("*") if ".tmp." in p.name or ".old." in p.name]


@pytest.mark.parametrize("folder", ["results", "Images/x", "link/results", "results/runs"])
def test_out_dir_in_the_committed_results_or_figures_is_refused(tmp_path, folder):
    (tmp_path / "link").symlink_to(ROOT)  # the repository by another name
    out_dir = tmp_path / folder if folder.startswith("link") else ROOT / folder
    place = "results" if "results" in folder else "Images"
    with raises(ValueError, f"OUT_DIR={str(out_dir)!r} is in {place}/", 'Use OUT_DIR = "."'):
        publish.check_out_dir(out_dir)
    for allowed in (ROOT, tmp_path / "link", tmp_path / "mine", "."):  # the repository root, or a folder elsewhere
        assert publish.check_out_dir(allowed) == Path(allowed)


@pytest.mark.parametrize("variants, changes, replace, named", [
    (SETTINGS["VARIANTS"], {"EPOCHS": 1, "TRAIN_LIMIT": 2048, "TEST_LIMIT": 500}, True,
     ["EPOCHS 1 (the study: 20)", "TRAIN_LIMIT 2048 (the study: None)", "TEST_LIMIT 500 (the study: None)",
      "REPLACE_RESULTS = {'EPOCHS', 'TRAIN_LIMIT', 'TEST_LIMIT'} to publish it on purpose"]),
    ({FIRST: "B"}, {}, True, [f"VARIANTS {{{FIRST!r}: 'B'}} (the study: {SETTINGS['VARIANTS']!r}", "cannot be forced"]),
    ({FIRST: "B"}, {}, {"EPOCHS"}, [f"VARIANTS {{{FIRST!r}: 'B'}}", "cannot be forced"]),
    (SETTINGS["VARIANTS"], {"EPOCHS": 1, "TRAIN_LIMIT": 2048}, {"EPOCHS"}, ["TRAIN_LIMIT 2048", "{'EPOCHS', 'TRAIN_LIMIT'}"]),
    (SETTINGS["VARIANTS"], {}, {"VARIANTS"}, ["REPLACE_RESULTS must be True, False or a set", "got {'VARIANTS'}"]),
    (SETTINGS["VARIANTS"], {}, 1, ["REPLACE_RESULTS must be True, False or a set", "got 1"]),
])
def test_replace_results_refuses_a_partial_run_before_training(variants, changes, replace, named):
    with raises(ValueError, *named):
        publish.check_replace(SETTINGS | changes, variants, replace)


@pytest.mark.parametrize("changes, replace", [({}, True), ({"EPOCHS": 1, "TRAIN_LIMIT": 2048}, False),
                                              ({"EPOCHS": 1, "TEST_LIMIT": 500}, {"EPOCHS", "TEST_LIMIT"}),
                                              ({"MAX_LR": 0.04}, True)])  # a new recipe, whole: on purpose
def test_replace_results_passes_the_whole_study_a_forced_one_or_none(changes, replace):
    publish.check_replace(SETTINGS | changes, {FIRST: "batch", "LN": "L", "GN": "G"}, replace)


def test_replace_results_publishes_any_finished_run(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path, EPOCHS=1, TRAIN_LIMIT=2048)
    assert len(publish.publish(run_dir, out_dir, histories, replace=True)) == 1 + len(FIGURES)
    assert published_from(run_dir, out_dir)


def test_a_run_publishes_where_it_replaces_nothing(tmp_path):
    run_dir, histories = make_run(tmp_path, EPOCHS=1)
    assert len(publish.publish(run_dir, tmp_path / "fresh", histories)) == 1 + len(FIGURES)
    assert published_from(run_dir, tmp_path / "fresh")


@pytest.mark.parametrize("history", [None, "foreign"])
def test_files_whose_origin_is_not_recorded_are_not_replaced(tmp_path, out_dir, capsys, history):
    if history is None:
        (out_dir / "results" / "history.json").unlink()
    else:
        (out_dir / "results" / "history.json").write_text('{"experiment": "seeds"}')
    run_dir, histories = make_run(tmp_path)  # the committed settings, but out_dir no longer says what made its figures
    before = snapshot(out_dir)
    assert publish.publish(run_dir, out_dir, histories) == []
    assert snapshot(out_dir) == before
    assert ("no results/history.json" if history is None else "is not a history file") in capsys.readouterr().out


@pytest.mark.parametrize("break_target", ["folder in a file's place", "file in Images/'s place"])
def test_a_target_that_cannot_be_written_leaves_every_file_as_it_was(tmp_path, out_dir, break_target):
    if break_target == "folder in a file's place":  # found after the first files are staged
        (out_dir / "Images" / "misclassified_GN.png").unlink()
        (out_dir / "Images" / "misclassified_GN.png").mkdir()
    else:
        shutil.rmtree(out_dir / "Images")
        (out_dir / "Images").write_text("not a folder")
    run_dir, histories = make_run(tmp_path)
    before = snapshot(out_dir)
    with pytest.raises(OSError):
        publish.publish(run_dir, out_dir, histories)
    assert snapshot(out_dir) == before  # the staged and set-aside files removed too


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failure_among_the_replacements_puts_back_every_file(tmp_path, out_dir, monkeypatch, error):
    run_dir, histories = make_run(tmp_path)
    before = snapshot(out_dir)
    replace, calls = Path.replace, []

    def fail_on_the_fifth(self, target):
        calls.append(self)
        if len(calls) == 5:
            raise error
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", fail_on_the_fifth)
    with pytest.raises(type(error)):
        publish.publish(run_dir, out_dir, histories)
    assert len(calls) > 5  # four files were in, and were put back
    assert snapshot(out_dir) == before


def test_a_staged_file_that_does_not_read_back_is_not_published(tmp_path, out_dir, monkeypatch):
    run_dir, histories = make_run(tmp_path)
    before = snapshot(out_dir)
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: b"" if ".tmp." in self.name else read_bytes(self))
    with raises(OSError, "does not read back as it was written"):
        publish.publish(run_dir, out_dir, histories)
    assert snapshot(out_dir) == before


@pytest.mark.parametrize("damage, named", [
    (lambda run_dir: (run_dir / "Images" / "curves_LN.png").unlink(), "curves_LN.png is missing or not a PNG"),
    (lambda run_dir: (run_dir / "Images" / "test_loss.png").write_bytes(b""), "test_loss.png is missing or not a PNG"),
    (lambda run_dir: records.write_json(run_dir / "results" / "history.json", {
        k: v for k, v in records.load_history(run_dir / "results" / "history.json").items() if k != "GN"}),
     "its history file holds ['BN', 'LN'], the run ['BN', 'GN', 'LN']"),
])
def test_a_run_whose_files_are_not_whole_is_refused(tmp_path, out_dir, damage, named):
    run_dir, histories = make_run(tmp_path)
    damage(run_dir)
    before = snapshot(out_dir)
    with raises(RuntimeError, "not published", named, str(run_dir)):
        publish.publish(run_dir, out_dir, histories, replace=True)
    assert snapshot(out_dir) == before


def test_a_run_without_its_last_save_is_refused(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path)
    runs = records.load_history(run_dir / "results" / "history.json")
    del runs["GN"]["predictions"]  # saved with the last epoch's, as the notebook does once a variant has finished
    records.write_json(run_dir / "results" / "history.json", runs)
    with raises(RuntimeError, "GN has 20 of its 20 epochs on file, or no predictions"):
        publish.publish(run_dir, out_dir, histories, replace=True)


def test_a_variant_missing_from_the_run_is_refused(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path, variants=tuple(COMMITTED)[:2], VARIANTS=SETTINGS["VARIANTS"])  # GN never trained
    with raises(RuntimeError, "VARIANTS names ['BN', 'GN', 'LN']"):
        publish.publish(run_dir, out_dir, histories, replace=True)


def test_a_run_with_fewer_epochs_on_file_than_it_ran_is_refused(tmp_path, out_dir):
    run_dir, histories = make_run(tmp_path)
    histories["LN"] = histories["LN"] + [histories["LN"][-1]]  # the run went on after its last save
    with raises(RuntimeError, "LN's epochs on file (20) are not those it trained (21)"):
        publish.publish(run_dir, out_dir, histories, replace=True)


@pytest.fixture
def restore_signals():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_is_never_published(tmp_path, out_dir, restore_signals, monkeypatch, signum):
    monkeypatch.setattr(publish, "_parent_ignores_sigint", lambda: False)
    interruptions = publish.watch_interrupts()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signum)  # as a Ctrl-C or a kill would, during training
        time.sleep(5)  # the handler runs here
    assert interruptions == [f"{signal.Signals(signum).name} arrived"]
    run_dir, histories = make_run(tmp_path)  # the files are whole: the run went on, as if the interrupt were caught
    before = snapshot(out_dir)
    with raises(RuntimeError, "not published", f"{signal.Signals(signum).name} arrived", str(run_dir)):
        publish.publish(run_dir, out_dir, histories, True, interruptions)
    assert snapshot(out_dir) == before
    assert publish.watch_interrupts() == []  # a new run starts with a clean record


def test_a_parent_that_ignores_sigint_keeps_the_run_from_publication(tmp_path, out_dir, restore_signals, monkeypatch):
    monkeypatch.setattr(publish, "_parent_ignores_sigint", lambda: True)
    with pytest.warns(RuntimeWarning, match="ignores SIGINT"):
        interruptions = publish.watch_interrupts()
    run_dir, histories = make_run(tmp_path)
    with raises(RuntimeError, "not published", "ignores SIGINT", "set -m"):
        publish.publish(run_dir, out_dir, histories, True, interruptions)


@pytest.mark.parametrize("ignored", [True, False])
def test_parent_ignores_sigint_reads_the_parent(ignored):
    # a parent process that ignores SIGINT (or not) starts a child that asks
    parent = ("import signal, subprocess, sys; "
              + ("signal.signal(signal.SIGINT, signal.SIG_IGN); " if ignored else "signal.signal(signal.SIGINT, signal.SIG_DFL); ")
              + "sys.exit(subprocess.run([sys.executable, '-c', 'import sys; from experiments import publish; sys.exit(publish._parent_ignores_sigint())']).returncode)")
    assert subprocess.run([sys.executable, "-c", parent], cwd=ROOT).returncode == int(ignored)
