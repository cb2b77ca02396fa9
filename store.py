"""Every trained model once: the one training path (`train`) and the run store (`Store`) that keeps its results.

A run is described by its spec (`run_spec`): the norm and its settings, the L1 lambda, the seed, the data split and
the recipe. Its key adds what else decides its numbers: device, CPU threads, torch version and `code_fingerprint()`,
a hash of the code that trains and tests it. A record is one safetensors file, results/runs/<label>-<key>.safetensors:
the model's weights and buffers, its predictions for every held-out digit, and in the metadata the spec, the
environment and commit it was made in, its per-epoch history and a SHA-256 over all of it. safetensors holds only
tensors and strings, so reading a record executes nothing.

    spec = store.run_spec(settings, "G", seed=3)      # settings: the notebook's parameters, as in its parameters cell
    found = store.Store().get(spec)                    # (record, state dict), or None until it has been trained
    model, record = store.train(spec)                  # train it; store.Store().put(record, model.state_dict()) keeps it
    model = store.Store().model(spec)                  # a stored model, ready to evaluate
"""

import ast
import copy
import hashlib
import json
import os
import time
import warnings
from functools import cache
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

import utils
from model import Net, canonical_norm

ROOT = utils.ROOT
STORE = ROOT / "results" / "runs"  # the committed store
RECIPE = ("EPOCHS", "BATCH_SIZE", "TEST_BATCH_SIZE", "MAX_LR", "WEIGHT_DECAY", "EMA_DECAY", "DROPOUT", "AUGMENTATION",
          "TRAIN_LIMIT", "TEST_LIMIT")  # the notebook's settings that decide a run's numbers
PREDICTIONS = "predictions"  # the tensor of held-out predictions in a record; the model's tensors are "model.<name>"


# ---- The key: spec, environment and code fingerprint ------------------------------------------------------------

TRAINING_VERSION = 1  # the version of the training a cluster must have to train runs for this repository


def run_spec(settings: dict, norm: str, seed: int, l1_lambda: float = 0.0, groups: int | None = None,
             norm_batch: int | None = None, split: str = "test", **recipe) -> dict:
    """Everything a run's numbers depend on that a person chooses: the recipe from `settings` (the notebook's
    upper-case names, RECIPE), with `recipe` overriding any of them by its lower-case name (max_lr=0.04), and the
    run's own norm, seed, L1 lambda, GroupNorm groups, ghost-batch size and data split ("test" or "validation")."""
    spec = {name.lower(): settings[name] for name in RECIPE}
    unknown = set(recipe) - set(spec)
    if unknown:
        raise ValueError(f"unknown recipe setting(s) {sorted(unknown)}; allowed: {sorted(spec)}")
    spec.update(recipe)
    norm = canonical_norm(norm)
    if norm_batch is not None and norm_batch >= spec["batch_size"]:
        raise ValueError(f"norm_batch={norm_batch} is not below the batch of {spec['batch_size']}: that is plain "
                         "BatchNorm over the whole batch, norm_batch=None; a ghost batch must be smaller")
    groups = settings["GROUPS"] if norm == "G" and groups is None else groups  # one spec for the notebook's GN
    spec["augmentation"] = spec["augmentation"] or None  # None and {} are the same run: no augmentation
    spec.update(norm=norm, seed=seed, l1_lambda=float(l1_lambda), groups=groups, norm_batch=norm_batch, split=split)
    return spec


# The training path: the definitions `train` reaches in these modules. Their code, normalised, is the fingerprint.
TRAINING_CODE = {"store": ["fit_model"]}
VALIDATORS = ("whole_number", "finite_number", "warn", "print")  # called as statements only to raise, warn or print
# Finding and reading MNIST's files: their bytes are checked against the files' published SHA-256 sums, so what
# reaches training is fixed by the data, not by this code.
READERS = ("_fetch_mnist", "_sha256sums", "_read_idx")


class _Normalise(ast.NodeTransformer):
    """Strip what cannot change a number a finished run records: docstrings and bare strings, checks that only raise
    (`if ...: raise` without else, `assert`, a statement calling check_* or one of VALIDATORS), warnings, prints and
    the errors that other raise statements name.
    Comments are not in the AST."""

    @staticmethod
    def _kept(node: ast.stmt) -> bool:
        if isinstance(node, ast.Assert) or isinstance(node, ast.If) and not node.orelse \
                and all(isinstance(n, ast.Raise) for n in node.body):
            return False
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return False
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            return not (name.lstrip("_").startswith("check") or name in VALIDATORS)
        return True

    def visit_Raise(self, node: ast.Raise) -> ast.Raise:
        return ast.Raise()  # which error, and its message, changes no number

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                kept = [n for n in statements if self._kept(n)]
                setattr(node, field, kept or ([ast.Pass()] if field == "body" else []))
        return node


def _definitions(tree: ast.Module) -> dict[str, ast.AST]:
    """Top-level functions, classes and assignments of a module, by name."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found[name.id] = node
    return found


def _imports(tree: ast.Module, modules: set[str]) -> dict[str, tuple[str, str | None]]:
    """Names a module binds to the project's modules: {"utils": ("utils", None), "Net": ("model", "Net")}."""
    bound = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            bound.update({a.asname or a.name: (a.name, None) for a in node.names if a.name in modules})
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            bound.update({a.asname or a.name: (node.module, a.name) for a in node.names})
    return bound


def code_fingerprint(sources: dict[str, str] | None = None, roots: dict[str, list[str]] = TRAINING_CODE) -> str:
    """SHA-256 of the normalised code of every definition the training path reaches, from `roots` through the names
    each one uses, across the project's modules (model, utils, store): a comment, a docstring, a check that only
    raises, a figure or any code outside that path leaves it as it is; a change to what trains or tests changes it.
    `sources` ({module: source}) replaces the files, for tests."""
    sources = sources or {m: (ROOT / f"{m}.py").read_text() for m in ("model", "utils", "store")}
    trees = {m: ast.parse(text) for m, text in sources.items()}
    defs = {m: _definitions(t) for m, t in trees.items()}
    imports = {m: _imports(t, set(trees)) for m, t in trees.items()}
    seen, todo, parts = set(), [(m, n) for m, names in roots.items() for n in names], []
    while todo:
        module, name = todo.pop()
        if (module, name) in seen or name not in defs[module] or name in READERS:
            continue
        seen.add((module, name))
        node = _Normalise().visit(copy.deepcopy(defs[module][name]))
        parts.append(f"{module}.{name}: {ast.dump(node)}")
        for used in ast.walk(node):
            if isinstance(used, ast.Name):
                target = imports[module].get(used.id)
                todo.append((target[0], target[1]) if target and target[1] else (module, used.id))
            elif isinstance(used, ast.Attribute) and isinstance(used.value, ast.Name):
                target = imports[module].get(used.value.id)
                if target and target[1] is None:
                    todo.append((target[0], used.attr))
    return hashlib.sha256("\n".join(sorted(set(parts))).encode()).hexdigest()


@cache
def _fingerprint() -> str:
    return code_fingerprint()


def identity(spec: dict, device: str = "cpu", threads: int = 1) -> dict:
    """The run's key fields: its spec, and the device, CPU threads, torch version and code it is trained with."""
    return {"spec": spec, "device": str(device), "threads": threads, "torch": torch.__version__, "code": _fingerprint()}


def key(spec: dict, device: str = "cpu", threads: int = 1) -> str:
    """The run's file name in the store: a readable label, then the first 16 hex digits of the identity's SHA-256."""
    digest = hashlib.sha256(json.dumps(identity(spec, device, threads), sort_keys=True).encode()).hexdigest()[:16]
    label = spec["norm"] + (f"-g{spec['groups']}" if spec["groups"] else "") \
        + (f"-k{spec['norm_batch']}" if spec["norm_batch"] else "") + (f"-l1-{spec['l1_lambda']:g}" if spec["l1_lambda"] else "")
    return f"{label}-seed{spec['seed']}-{spec['split']}-{digest}"


# ---- The one training path -------------------------------------------------------------------------------------

_cache: dict = {}  # per process: the loaders of each data setting, built once


def loaders(spec: dict, device: torch.device, root: str | os.PathLike | None = None) -> tuple:
    """The spec's training and held-out loaders on `device`, built once per process and data setting."""
    data = tuple(json.dumps(spec[k]) for k in ("batch_size", "test_batch_size", "augmentation", "train_limit",
                                                "test_limit", "split")) + (str(device), str(root))
    if data not in _cache:
        _cache[data] = utils.mnist_loaders(root, device, spec["batch_size"], spec["test_batch_size"], spec["seed"],
                                           spec["augmentation"], spec["train_limit"], spec["test_limit"], spec["split"])
    return _cache[data]


def fit_model(spec: dict, device: torch.device, root: str | os.PathLike | None = None,
              on_epoch=None) -> tuple[Net, list[dict], torch.Tensor]:
    """The computation a run is: from the spec's seed (weights, batches and augmentation), `utils.fit`, then the
    predictions for every held-out digit. Returns the trained model, its history and those predictions."""
    train_loader, held_loader = loaders(spec, device, root)
    utils.reseed(spec["seed"], train_loader)
    model = Net(spec["norm"], groups=spec["groups"], dropout=spec["dropout"], norm_batch=spec["norm_batch"]).to(device)
    history = utils.fit(model, train_loader, held_loader, device, spec["epochs"], spec["max_lr"], spec["weight_decay"],
                        spec["l1_lambda"], spec["ema_decay"], on_epoch)
    return model, history, utils.predict(model, held_loader, device)


def train(spec: dict, device: torch.device | str = "cpu", root: str | os.PathLike | None = None,
          on_epoch=None) -> tuple[Net, dict]:
    """Train and test the run `spec` describes: the notebook's training cell and every experiment come through here.

    Returns the trained model and its record: key, identity, environment, seconds, the per-epoch history (its
    "test_*" numbers are on the held-out digits: the test set, or the validation digits with split "validation")
    and the predicted class of every held-out digit, as a string of digits.
    """
    device = torch.device(device)
    start = time.perf_counter()
    model, history, predictions = fit_model(spec, device, root, on_epoch)
    threads = torch.get_num_threads()
    record = {"key": key(spec, device.type, threads), "identity": identity(spec, device.type, threads),
              "environment": utils.environment(device), "seconds": time.perf_counter() - start,
              "history": history, "predictions": "".join(map(str, predictions.tolist()))}
    return model, record


def train_for_store(spec: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """A worker's job, locally or on a Dask worker: train `spec` on the CPU with one thread (MNIST from the worker's
    MNIST_ROOT); the record and the model's tensors, which the caller stores."""
    torch.set_num_threads(1)
    model, record = train(spec, "cpu")
    return record, {name: t.detach().cpu() for name, t in model.state_dict().items()}


# ---- The store -------------------------------------------------------------------------------------------------

class CorruptRecord(ValueError):
    """A record file that cannot be read whole: truncated, altered, or not a record."""


def _checksum(record: dict, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


class Store:
    """A folder of records, one safetensors file each, named by `key`; written in one step, checked when read."""

    def __init__(self, path: str | os.PathLike = STORE):
        self.path = Path(path)

    def file(self, spec: dict) -> Path:
        return self.path / f"{key(spec)}.safetensors"

    def put(self, record: dict, tensors: dict[str, torch.Tensor]) -> Path:
        """Write a record with the model's tensors (a state dict) atomically; non-finite numbers are refused."""
        predictions = torch.tensor([int(c) for c in record["predictions"]], dtype=torch.uint8)
        body = {k: v for k, v in record.items() if k != "predictions"}
        stored = {f"model.{name}": t.contiguous() for name, t in tensors.items()} | {PREDICTIONS: predictions}
        text = json.dumps(body, sort_keys=True, allow_nan=False)
        metadata = {"record": text, "sha256": _checksum(body, stored)}
        data = save(stored, metadata)
        return utils.replace_file(self.path / f"{record['key']}.safetensors", lambda tmp: tmp.write_bytes(data))

    def read(self, path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
        """The record and the model's state dict in the file `path`; CorruptRecord if it is not whole."""
        data = path.read_bytes()
        try:
            with_metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
            tensors = load(data)
            body = json.loads(with_metadata["record"])
        except (SafetensorError, ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError) as error:
            raise CorruptRecord(f"{path} is not a whole record ({type(error).__name__}: {error})") from None
        if _checksum(body, tensors) != with_metadata.get("sha256"):
            raise CorruptRecord(f"{path} does not match its SHA-256: it was altered or damaged")
        predictions = tensors.pop(PREDICTIONS)
        record = {**body, "predictions": "".join(map(str, predictions.tolist()))}
        return record, {name.removeprefix("model."): t for name, t in tensors.items()}

    def get(self, spec: dict) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """The stored record and state dict of `spec`, or None if there is none. A corrupt file is reported (a
        warning naming it), moved aside to <name>.corrupt, and treated as missing, so that it is trained again."""
        path = self.file(spec)
        if not path.exists():
            return None
        try:
            return self.read(path)
        except CorruptRecord as error:
            warnings.warn(f"{error}; moved to {path.name}.corrupt and trained again", RuntimeWarning, stacklevel=2)
            path.replace(path.with_name(path.name + ".corrupt"))
            return None

    def model(self, spec: dict) -> Net:
        """The stored model of `spec`, on the CPU in eval mode."""
        found = self.get(spec)
        if found is None:
            raise KeyError(f"no stored run for {key(spec)} in {self.path}")
        net = Net(spec["norm"], groups=spec["groups"], dropout=spec["dropout"], norm_batch=spec["norm_batch"])
        net.load_state_dict(found[1])
        return net.eval()

