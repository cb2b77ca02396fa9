"""Publishing a finished study (the notebook's last cell): `watch_interrupts` records what must keep a run from
being published, `publish` copies a whole, uninterrupted run into the output folder, with the blocks of README.md and
STUDY.md that the notebook's history makes (records.notebook_blocks) made from it, all of its files or none. As every
module the notebook imports, it imports neither store.py nor anything under experiments/.
"""

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Iterable

from checks import canonical_norm
from records import DOCUMENTS, ROOT, committed_place, load_history, notebook_blocks, render, replace_files
from settings import COLAB_SETTINGS, SETTINGS, WHERE
from utils import CHANCE_ACC

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


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """OUT_DIR, checked before anything is written there: a ValueError where it is, or lies in, the repository's
    results/ or Images/ (records.committed_place, symlinks resolved), where a run would publish into results/results/
    and keep its own folder in results/runs/. The repository root itself (".") is where a full study publishes."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise ValueError(f"OUT_DIR must be a folder's path, got {out_dir!r}")
    place = committed_place(out_dir)
    if place not in (None, "the repository root"):
        raise ValueError(f"OUT_DIR={str(out_dir)!r} is {place} ({Path(out_dir).resolve()}): a run there would publish "
                         "into a results/ and Images/ of its own inside the committed files, and keep its folder in a "
                         'runs/ there. Use OUT_DIR = "." (the repository, whose results/ and Images/ a full study '
                         "replaces) or a folder outside results/ and Images/")
    return Path(out_dir)


STUDY_VARIANTS = SETTINGS["VARIANTS"][0]  # the default variants: README.md and STUDY.md's numbers compare these three
# What decides the committed study's numbers, and what REPLACE_RESULTS may name to publish a run where it differs: every
# setting the notebook records beside each model (settings.recorded) but VARIANTS, which can never be forced
FORCEABLE = tuple(name for name in SETTINGS if name not in WHERE and name != "VARIANTS")


def _names(names: Iterable[str]) -> str:
    """A set of setting names as Python writes it, in FORCEABLE's order: {'EPOCHS', 'TRAIN_LIMIT'}."""
    return "{" + ", ".join(repr(name) for name in FORCEABLE if name in names) + "}"


def check_replace(settings: dict, variants: dict, replace: bool | set[str] | list[str]) -> None:
    """REPLACE_RESULTS, checked before any training. False: nothing to check (`publish` keeps apart a run that is not
    the study OUT_DIR's history.json records). True: the run must be the whole committed study: every variant of
    STUDY_VARIANTS (`variants`, {name: norm}), every digit (TRAIN_LIMIT and TEST_LIMIT None) and each other setting of
    FORCEABLE as the repository's results/history.json records it (its default where there is none); a ValueError
    names each that differs, with the study's value. A set of names from FORCEABLE (REPLACE_RESULTS = {"EPOCHS"}, or a
    list: papermill passes lists) publishes a run where those differ, on purpose; never one without every variant."""
    if replace is False:
        return
    forced = set() if replace is True else set(replace) if isinstance(replace, (set, frozenset, list, tuple)) else None
    if forced is None or not forced <= set(FORCEABLE):
        raise ValueError(f"REPLACE_RESULTS must be True, False or a set of the settings a replacing run may change, "
                         f"among {_names(FORCEABLE)}, got {replace!r}")
    study = {**{name: SETTINGS[name][0] for name in FORCEABLE}, **_study_settings(load_history(ROOT / "results" / "history.json")),
             "TRAIN_LIMIT": None, "TEST_LIMIT": None}
    ours = {name: canonical_norm(norm) for name, norm in variants.items()}
    differs = [name for name in FORCEABLE if settings.get(name) != study[name] and name not in forced]
    if ours == STUDY_VARIANTS and not differs:
        return
    what = [f"{name} {settings.get(name)!r} (the study: {study[name]!r})" for name in differs]
    if ours != STUDY_VARIANTS:
        what.insert(0, f"VARIANTS {ours!r} (the study: {STUDY_VARIANTS!r}; README.md and STUDY.md's numbers need every "
                       "one, so this cannot be forced)")
    force = f", or REPLACE_RESULTS = {_names(set(differs) | forced)} to publish it on purpose" if ours == STUDY_VARIANTS else ""
    raise ValueError(f"REPLACE_RESULTS={replace!r} would replace the committed results with a run that is not the "
                     f"committed study: {'; '.join(what)}. Set REPLACE_RESULTS = False to keep this run in its own "
                     f"folder (OUT_DIR/runs/study-<time>){force}")


def publish(run_dir: str | os.PathLike, out_dir: str | os.PathLike, histories: dict[str, list[dict]],
            replace: bool | set[str] | list[str] = False, interruptions: Iterable[str] = ()) -> list[Path]:
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
    """README.md and STUDY.md under out_dir with the blocks the notebook's history makes (records.notebook_blocks)
    made from this run's, every other block as it is (none reads the history), where out_dir holds both documents;
    {} elsewhere (a folder of the user's, a Colab session with the files uploaded). So a published run brings its
    README along, in one step."""
    if not all((out_dir / name).is_file() for name in DOCUMENTS):
        return {}
    generated = notebook_blocks(runs)
    return {out_dir / name: render((out_dir / name).read_text(), generated, partial=True).encode()
            for name in DOCUMENTS}
