"""Every trained model once: the run store (`Store`), which keeps the records training.py's `train` makes.

A run's key is its spec and the training version (training.py: `run_spec`, `key`, TRAINING_VERSION): what a run
computes, not where it ran. Where it ran (torch and its build, NumPy, Python, CPU, device, threads, git commit) is
recorded in the record, not keyed, so a record made with another torch or on another machine is read, and said to be
(`elsewhere`); `python -m experiments verify` retrains a few here to show whether they still agree bit for bit.

A record is one safetensors file, results/runs/<label>-<key>.safetensors: the model's weights and buffers, its
predictions for every held-out digit, and in the metadata the spec, the environment and commit it was made in, its
per-epoch history and a SHA-256 over all of it. safetensors holds only tensors and strings, so reading a record
executes nothing. The checksum catches damage, not a record edited and signed again: so a record is read only where
its numbers agree, every one of its history finite and its last test_acc the accuracy of its predictions on the
digits its spec holds out (where those digits are here).

    net = store.load("G", seed=3)                     # a stored model of the study's recipe, in eval mode
    accuracy = store.score("G", seed=3)               # its test accuracy in %, scored again on the test digits
    spec = training.run_spec(settings.RECIPE, "G", seed=3)
    found = store.Store().get(spec)                    # (record, state dict), or None until it has been trained
    model, record = training.train(spec)               # store.Store().put(record, model.state_dict()) keeps it
"""

import hashlib
import json
import math
import os
import re
import stat
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl  # POSIX: the store's lock; on Windows, writes are atomic but unlocked
except ImportError:
    fcntl = None

import torch
from safetensors.torch import load as load_tensors, save

import data
import records
import settings
import training
import utils
from checks import check_limit
from model import Net

ROOT = records.ROOT
STORE = ROOT / "results" / "runs"  # the committed store
PREDICTIONS = "predictions"  # the tensor of held-out predictions in a record; the model's tensors are "model.<name>"


def train_for_store(spec: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """A worker's job, locally or on a Dask worker: train `spec` on the CPU with one thread (MNIST from the worker's
    MNIST_ROOT), without progress bars whatever the worker's environment (a Dask worker's log would fill with them);
    the record and the model's tensors, which the caller stores."""
    torch.set_num_threads(1)
    model, record = training.train(spec, "cpu", bars=False)
    return record, {name: t.detach().cpu() for name, t in model.state_dict().items()}


# Where a record was made, as far as it can change a number: a record that differs from this machine in one of these
# was made elsewhere (`elsewhere`). Local and cluster runs train on the CPU with one thread.
COMPARED = ("torch", "cpu", "device", "threads")


def elsewhere(record: dict, here: dict | None = None) -> dict[str, tuple]:
    """How the environment `record` was made in differs from `here` (this machine, training as the store's workers
    do: CPU, one thread): {field: (theirs, ours)}, over COMPARED; a field the record does not name is "unknown", and
    differs (the first records name no CPU, and this machine does not retrain them bit for bit)."""
    here = here or {**records.environment("cpu"), "threads": 1}
    made = record["environment"]
    return {f: (made.get(f, "unknown"), here.get(f)) for f in COMPARED if made.get(f, "unknown") != here.get(f)}


# ---- The store -------------------------------------------------------------------------------------------------

class CorruptRecord(ValueError):
    """A record file that cannot be read whole: truncated, altered, foreign, or not a record."""


class NotStored(LookupError):
    """No stored run for a spec."""


MAX_RECORD_BYTES = 16 * 2**20  # a record is about 50 KB; a larger file is not one (nor is a FIFO or a device)
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")  # what a key may be: a file name in the store's folder, no path
# A file name has at most 255 bytes. The longest the store makes of a key is a write's temporary file,
# .<key>.safetensors.tmp.XXXXXXXX.safetensors (records.replace_file): 38 more than the key.
MAX_KEY = 255 - 38
FIELDS = {"key": str, "identity": dict, "environment": dict, "seconds": float, "history": list}
TENSOR_DTYPES = (torch.float32, torch.int64)  # the model's parameters and buffers (num_batches_tracked)


def _checksum(record: dict, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _parse(data: bytes) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """A record file's body, tensors and metadata, as stored; any exception where it is not one."""
    metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    return json.loads(metadata["record"]), load_tensors(data), metadata


def _problem(body, tensors: dict[str, torch.Tensor]) -> str | None:
    """What keeps a parsed record from being one (its fields and their types, its tensors' dtypes and shapes)."""
    if not isinstance(body, dict) or any(not isinstance(body.get(f), t) for f, t in FIELDS.items()):
        return f"its record is not a dict of {', '.join(f'{f} ({t.__name__})' for f, t in FIELDS.items())}"
    if not isinstance(body["identity"].get("spec"), dict):
        return "its identity has no spec"
    predictions = tensors.get(PREDICTIONS)
    if predictions is None or predictions.dtype != torch.uint8 or predictions.dim() != 1 \
            or (len(predictions) and predictions.max() > 9):
        return "it has no predictions tensor of classes 0-9 (uint8, one dimension)"
    model = [t for name, t in tensors.items() if name.startswith("model.")]
    if not model or any(t.dtype not in TENSOR_DTYPES for t in model) or len(model) + 1 != len(tensors):
        return "its tensors are not a model's (float32 weights, int64 counters) and its predictions"
    return None


_labels: dict[tuple, torch.Tensor] = {}  # per process: the held-out labels of each data setting, read once


def _held_out_labels(spec: dict) -> torch.Tensor | None:
    """The labels of the digits `spec` holds out (data.held_out_labels), read once per data setting; None where the
    four MNIST files under MNIST_ROOT (else ./data) are not all there or are not the digits the spec names."""
    root = data.mnist_root()
    if not all((root / "MNIST" / "raw" / name).is_file() for name in data.MNIST_SHA256) \
            or data.mnist_digest(root) != spec.get("data"):
        return None
    setting = (spec["data"], spec["split"], spec["test_limit"])
    if setting not in _labels:
        _labels[setting] = data.held_out_labels(root, spec["split"], spec["test_limit"])
    return _labels[setting]


def _inconsistency(history: list, spec: dict, predictions: torch.Tensor) -> str | None:
    """What makes a record's numbers disagree with themselves or its run: a history that is not a list of epochs of
    finite numbers, or a last test_acc that is not the accuracy of its predictions on the digits its spec holds out
    (checked where those digits are here, `_held_out_labels`)."""
    if not history or any(not isinstance(epoch, dict) for epoch in history):
        return "its history is not a non-empty list of epochs"
    for number, epoch in enumerate(history, 1):
        bad = [f"{name}={value!r}" for name, value in epoch.items() if isinstance(value, bool)
               or not isinstance(value, (int, float)) or not math.isfinite(value)]
        if bad:
            return f"its history, epoch {number}, holds {', '.join(bad)} where a finite number belongs"
    if "test_acc" not in history[-1]:
        return "its last epoch has no test_acc"
    try:
        check_limit("test_limit", spec.get("test_limit"))
    except ValueError as error:
        return f"its spec's {error}"
    if spec.get("split") not in data.SPLITS:
        return f"its spec's split is {spec.get('split')!r}, not one of {data.SPLITS}"
    labels = _held_out_labels(spec)
    if labels is None:
        return None
    if len(predictions) != len(labels):
        return f"it has {len(predictions):,} predictions for the {len(labels):,} digits its spec holds out"
    correct = int((predictions.long() == labels).sum())
    if abs(history[-1]["test_acc"] - 100 * correct / len(labels)) > 1e-6:
        return (f"its last test_acc, {history[-1]['test_acc']!r}, is not the accuracy of its predictions on the "
                f"{len(labels):,} digits its spec holds out ({100 * correct / len(labels)!r}): it was edited")
    return None


class Store:
    """A folder of records, one safetensors file each, named by `key`; written in one step, checked when read."""

    def __init__(self, path: str | os.PathLike = STORE):
        self.path = Path(path)

    def file(self, spec_or_key: dict | str) -> Path:
        """The record file of a spec, or of a key; a key that is not a plain file name, or one too long for the store's
        file names (MAX_KEY), is a ValueError."""
        name = training.key(spec_or_key) if isinstance(spec_or_key, dict) else spec_or_key
        if not isinstance(name, str) or not KEY.fullmatch(name):
            raise ValueError(f"a run's key must be letters, digits, '.', '+' and '-' (a file name in the store, no path); "
                             f"got {name!r}")
        if len(name) > MAX_KEY:
            raise ValueError(f"a run's key must be at most {MAX_KEY} characters (a file name has at most 255 bytes, and "
                             f"the store adds up to 38 to it); got one of {len(name)}: {name[:40]}...")
        return self.path / f"{name}.safetensors"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Held while a record is replaced or set aside, so that a reader never sets aside one a writer is putting in
        place. Where the store cannot hold a lock file (read-only), nothing can be written or set aside either."""
        try:
            handle = open(self.path / ".lock", "a")
        except OSError:
            handle = None
        if handle is None or fcntl is None:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def check_writable(self) -> None:
        """A ValueError, before any run trains, unless the store's folder exists or can be made, is a folder and takes
        a file of a record's size."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path) as probe:
                probe.write(bytes(2**17))
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as error:
            raise ValueError(f"the run store {self.path} cannot take records ({error.strerror or error}): give a folder "
                             "you can write to, with space (--store)") from None

    def put(self, record: dict, tensors: dict[str, torch.Tensor]) -> Path:
        """Write a record with the model's tensors (a state dict) atomically. A record that `read` would refuse is a
        ValueError that says why: predictions that are not a string of digits 0-9, one per held-out digit, a
        non-finite number, a last test_acc that is not the accuracy of its predictions (`_inconsistency`)."""
        if not isinstance(record.get("predictions"), str) or not re.fullmatch(r"[0-9]+", record["predictions"]):
            raise ValueError(f"put: the record's predictions must be a string of digits 0-9, the predicted class of each "
                             f"held-out digit in order; got {str(record.get('predictions'))[:40]!r} "
                             f"({type(record.get('predictions')).__name__})")
        predictions = torch.tensor([int(c) for c in record["predictions"]], dtype=torch.uint8)
        body = {k: v for k, v in record.items() if k != "predictions"}
        stored = {f"model.{name}": t.contiguous() for name, t in tensors.items()} | {PREDICTIONS: predictions}
        problem = _problem(body, stored) or _inconsistency(body["history"], body["identity"]["spec"], predictions)
        if problem:
            raise ValueError(f"put: the record {str(record.get('key'))[:80]!r} is refused: {problem}")
        text = json.dumps(body, sort_keys=True, allow_nan=False)
        data = save(stored, {"record": text, "sha256": _checksum(body, stored)})
        path = self.file(record["key"])
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock():
            return records.replace_file(path, lambda tmp: tmp.write_bytes(data))

    def read(self, path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
        """The record and the model's state dict in the file `path`; CorruptRecord if it is not one, whole, or if its
        numbers disagree (`_inconsistency`: the checksum catches damage, not a record edited and signed again)."""
        try:
            info = path.lstat()
        except OSError as error:
            raise CorruptRecord(f"{path} cannot be read ({error.strerror or error})") from None
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
            raise CorruptRecord(f"{path} is not a record: {'larger than a record can be' if stat.S_ISREG(info.st_mode) else 'not a regular file'}")
        try:
            body, tensors, metadata = _parse(path.read_bytes())
        except Exception as error:  # noqa: BLE001  whatever a damaged file makes the parsers raise
            raise CorruptRecord(f"{path} is not a whole record ({type(error).__name__}: {str(error)[:200]})") from None
        problem = _problem(body, tensors)
        if problem:
            raise CorruptRecord(f"{path} is not a record: {problem}")
        if _checksum(body, tensors) != metadata.get("sha256"):
            raise CorruptRecord(f"{path} does not match its SHA-256: it was altered or damaged")
        problem = _inconsistency(body["history"], body["identity"]["spec"], tensors[PREDICTIONS])
        if problem:
            raise CorruptRecord(f"{path} is not a record of a run: {problem}")
        predictions = tensors.pop(PREDICTIONS)
        digits = (predictions.to(torch.uint8) + ord("0")).numpy().tobytes().decode("ascii")  # "0".."9" each
        record = {**body, "predictions": digits}
        return record, {name.removeprefix("model."): t for name, t in tensors.items()}

    def _read_as(self, path: Path, spec: dict) -> tuple[dict, dict[str, torch.Tensor]]:
        """`read`, and CorruptRecord unless the record is the run of `spec`: its key and identity (spec and training
        version) are those asked for."""
        record, tensors = self.read(path)
        if record["key"] != training.key(spec) or record["identity"] != training.identity(spec):
            raise CorruptRecord(f"{path} holds another run ({record['key']}), not {training.key(spec)}: it was copied or "
                                "renamed by hand")
        return record, tensors

    def get(self, spec: dict) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """The stored record and state dict of `spec`, or None if there is none. A corrupt or foreign file is reported
        (a warning naming it), moved aside to <name>.corrupt, and treated as missing, so that it is trained again; in
        a store that cannot be written to, it is a CorruptRecord that says so. A store folder that cannot be read (not
        a folder, no permission) is a ValueError that says so, not a missing run."""
        path = self.file(spec)
        try:
            path.lstat()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ValueError(f"the run store {self.path} cannot be read ({error.strerror or error}): give the folder of a "
                             "run store you can read (path=, --store)") from None
        try:
            return self._read_as(path, spec)
        except CorruptRecord as error:
            with self._lock():  # a writer may have put a whole record in place since: read it again before moving
                try:
                    return self._read_as(path, spec)
                except CorruptRecord:
                    pass
                try:
                    path.replace(path.with_name(path.name + ".corrupt"))
                except OSError as move:
                    raise CorruptRecord(f"{error}; it cannot be moved aside ({move.strerror or move}): remove it, or "
                                        "use a store you can write to") from None
            warnings.warn(f"{error}; moved to {path.name}.corrupt, and the run is trained again", RuntimeWarning,
                          stacklevel=2)
            return None

    def model(self, spec: dict) -> Net:
        """The stored model of `spec`, on the CPU in eval mode; NotStored where there is none."""
        found = self.get(spec)
        if found is None:
            raise NotStored(f"no stored run {training.key(spec)} in {self.path}. Train and keep it with "
                            "`model, record = training.train(spec); store.Store().put(record, model.state_dict())`, "
                            f"spec being training.run_spec(settings.RECIPE, {spec['norm']!r}, seed={spec['seed']}, ...) "
                            "with this run's settings (about 8 minutes on one CPU core for 20 epochs), or run the experiment "
                            "that lists it (`python -m experiments --help`)")
        model = training.net(spec)
        try:
            model.load_state_dict(found[1])
        except RuntimeError as error:
            raise CorruptRecord(f"{self.file(spec)} does not hold this network's weights: {str(error)[:300]}") from None
        return model.eval()


def load(norm: str, seed: int = 1, *, l1_lambda: float = 0.0, groups: int | None = None, norm_batch: int | None = None,
         split: str = "test", path: str | os.PathLike = STORE, **recipe) -> Net:
    """A stored model of the study's recipe (settings.RECIPE, with `recipe` overriding any setting by its lower-case
    name), in eval mode on the CPU: `store.load("G", seed=3)`. NotStored, saying how to train it, where there is none."""
    spec = training.run_spec(settings.RECIPE, norm, seed, l1_lambda, groups, norm_batch, split, **recipe)
    return Store(path).model(spec)


def score(norm: str, seed: int = 1, *, path: str | os.PathLike = STORE, **options) -> float:
    """The test accuracy (%) of the stored model `load(norm, seed, path=path, **options)` gives (options: load's
    keywords), scored again with `utils.test` on the digits its run holds out (`loaders`: the test digits, or the
    validation digits with split="validation"), on the CPU: `store.score("G", seed=3)`. The MNIST files under
    MNIST_ROOT (else ./data) must be the run's digits."""
    spec = training.run_spec(settings.RECIPE, norm, seed, **options)
    return utils.test(Store(path).model(spec), training.loaders(spec, "cpu")[1], torch.device("cpu"))[1]
