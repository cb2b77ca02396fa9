"""The records: how a result was made (`environment`), the history file, files replaced in one step (`replace_file`,
`replace_files`, `write_json`, `json_bytes`), Markdown tables, the README's worked example, and the documents'
generated blocks: README.md and STUDY.md's `<!-- generated: NAME -->` blocks put in place (`render`), and those made
from the notebook's history alone (`notebook_blocks`; experiments/report.py makes the others).
"""

import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from checks import NORM_NAMES, norm_name


ROOT = Path(__file__).resolve().parent  # the repository


# ---- How a result was made ----------------------------------------------------------------------------------

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


def committed_place(path: str | os.PathLike) -> str | None:
    """Which committed place of the repository `path` is, or lies in, once resolved (symlinks followed), in words:
    "the repository root", "in results/" or "in Images/"; None elsewhere (runs/, or a folder outside the repository)."""
    resolved = Path(path).resolve()
    if resolved == ROOT:
        return "the repository root"
    return next((f"in {name}/" for name in ("results", "Images") if resolved.is_relative_to(ROOT / name)), None)


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
            non_finite = [k for k in EPOCH_KEYS if not math.isfinite(record[k])]
            if non_finite:
                return f"model {name!r}, epoch record {i}: NaN or infinite {non_finite}, where a finite number belongs"
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


def json_bytes(data: dict) -> bytes:
    """`data` as the records write it: indented JSON and a final newline; a non-finite number is a ValueError."""
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode()


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write `data` as `json_bytes`, replacing `path` in one step (`replace_file`), synced to the disk."""
    return replace_file(path, lambda tmp: _write_synced(tmp, json_bytes(data)))


def save_history(path: str | os.PathLike, name: str, entry: dict) -> None:
    """Write `entry` under `name` in the history file, keeping the other models' entries; atomic."""
    data = load_history(path)
    data[name] = entry
    write_json(path, data)


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


# ---- The documents' generated blocks ----------------------------------------------------------------------

DOCUMENTS = ("README.md", "STUDY.md")
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- /generated -->)", re.S)  # a generated block, by its name


def render(text: str, generated: dict[str, str], partial: bool = False) -> str:
    """`text` with every generated block's body replaced by its text in `generated`; a block it has no text for is a
    ValueError, or, with `partial`, left as it is (a published notebook run rewrites its own blocks alone)."""
    def replace(match: re.Match) -> str:
        if match.group(2) in generated:
            return match.group(1) + generated[match.group(2)] + "\n" + match.group(4)
        if partial:
            return match.group(0)
        raise ValueError(f"no generator for the block {match.group(2)!r}; known: {sorted(generated)}")
    return BLOCK.sub(replace, text)


def notebook_blocks(runs: dict) -> dict[str, str]:
    """The documents' blocks made from the notebook's history file alone (`runs`, results/history.json, which a full run
    publishes with them): the run in words, its minutes and its results table."""
    first = next(iter(runs.values()))
    env = first["environment"]
    final = {name: run["history"][-1]["test_acc"] for name, run in runs.items()}
    minutes = sum(e["seconds"] for run in runs.values() for e in run["history"]) / 60
    said = {name: NORM_NAMES[run["norm"]] + (" + L1" if run["l1_lambda"] else "") for name, run in runs.items()}
    return {
        "notebook_run": f"In the committed notebook run (seed {first['settings']['SEED']}) {said['BN+L1']} ends at {final['BN+L1']:.2f}% test accuracy, "
                        f"{said['LN']} at {final['LN']:.2f}% and {said['GN']} at {final['GN']:.2f}%, each with "
                        f"{first['params']:,} parameters; its {len(runs)} x {len(first['history'])} epochs took "
                        f"{minutes:.1f} minutes on {env['device']} with {env['threads']} threads (torch {env['torch']}, "
                        f"Python {env['python']}, code at commit {env['git_commit'][:7]}).",
        "study_minutes": f"The first command runs the study headless: the committed run's {len(runs)} x "
                         f"{len(first['history'])} epochs took {minutes:.0f} minutes on {env['device']} ({env['cpu']}) "
                         f"with {env['threads']} threads (what else the machine ran then was not recorded; beside "
                         "busy processes, see the thread setting below).",
        "results_table": results_table(runs),
    }


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
        ("B", f"per channel, over {n} images x {pixels}", stats(x, (0, 2, 3))),
        ("L", f"per image, over {c} channels x {pixels}", stats(x, (1, 2, 3))),
        ("G", f"per image and group, over {c // groups} channels x {pixels}", stats(grouped, (2, 3, 4))),
        ("I", f"per image and channel, over {pixels}", stats(x, (2, 3))),
    ]
    numbers = lambda t: ", ".join(f"{v:.3f}" for v in t.tolist())
    return markdown_table(["norm", "statistics", "count", "means", "standard deviations"],
                          [[norm_name(norm, groups), over, len(mean), numbers(mean), numbers(std)]
                           for norm, over, (mean, std) in rows])
