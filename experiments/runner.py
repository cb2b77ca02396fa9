"""What every experiment shares: the notebook's recipe, runs read from the store or trained, evaluations, tables.

- recipe: `settings_for(quick, **overrides)`, the study's settings (settings.py) with an experiment's own;
- runs: `ensure(specs, ...)` reads every run already in the store and trains only the others, in local processes
  with one CPU thread each or on a Dask cluster (`--scheduler`), storing each as it finishes, so that an
  interrupted experiment keeps every finished run;
- evaluations on stored models: BatchNorm with the statistics of groups of test digits or recomputed ones;
  test-batch invariance;
- tables: how a comparison prints (p-values, intervals, verdicts) and the tables of several ways of evaluating one
  set of models; the statistics themselves are in experiments/stats.py;
- records: `execute` writes results/NAME.json and Images/NAME.png, both replaced together once complete, or neither.
"""

import io
import json
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

import data
import records
import store
import training
from experiments.interface import Experiment
from model import Net
from settings import check_study, defaults

ROOT = records.ROOT
RUNS = ROOT / "runs"  # not committed: quick runs, and anything made from uncommitted code
# --quick: a smoke run, one epoch on 2,048 digits in batches of 32 (64 steps: enough to leave chance level)
QUICK = dict(EPOCHS=1, TRAIN_LIMIT=2048, TEST_LIMIT=500, BATCH_SIZE=32)


# ---- Recipe ------------------------------------------------------------------------------------------------------

def settings_for(quick: bool, **overrides) -> dict:
    """The study's settings (settings.defaults(), as the notebook's parameters cell sets them) with an experiment's
    overrides, and QUICK's on top with --quick."""
    return {**defaults(), **overrides, **(QUICK if quick else {})}


# ---- Runs --------------------------------------------------------------------------------------------------------

def _local_worker() -> None:
    """Each local worker process, as it starts: one CPU thread, SIGTERM's default action (the experiment installs a
    handler that raises, which a fork inherits), and a thread that exits the worker once the experiment that started
    it is gone (it was killed: its own cleanup never ran), checking once a second."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()

    def exit_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()


def _stop(signum: int, frame) -> None:
    raise SystemExit(128 + signum)  # SIGTERM as an exception, so that the local pool's cleanup runs


def check_cluster(client, scheduler: str) -> None:
    """A ValueError naming each process of the cluster (the scheduler, a worker's address) that cannot import this
    repository or trains another version of it than here (training.TRAINING_VERSION), before any run is sent."""
    def training_version() -> int | str:  # nested, so cloudpickle sends its code: the far side need not import this
        try:
            import training
            return training.TRAINING_VERSION
        except (ImportError, AttributeError) as error:
            return f"{type(error).__name__}: {error}"

    found = {"the scheduler": client.run_on_scheduler(training_version)}
    found.update({f"worker {address}": version for address, version in client.run(training_version).items()})
    wrong = [f"{where}: {version if isinstance(version, str) else f'training version {version}'}"
             for where, version in found.items() if version != training.TRAINING_VERSION]
    if wrong:
        raise ValueError(f"--scheduler {scheduler!r}: the cluster cannot train this repository's runs (training version "
                         f"{training.TRAINING_VERSION}): " + "; ".join(wrong) + ". On every machine, `pip install -r "
                         "requirements.txt` from this repository's root, then start the scheduler and workers again "
                         "(STUDY.md: on a cluster)")


@contextmanager
def executor(jobs: int, scheduler: str | None, timeout: str = "20s") -> Iterator[Executor]:
    """Local worker processes, `jobs` of them (each run sets one CPU thread), or the Dask cluster at `scheduler`,
    whose scheduler and workers import this repository, installed (STUDY.md: on a cluster), as `check_cluster` checks.

    On any exception in the caller, KeyboardInterrupt or SIGTERM included, the local workers are killed at once and
    waiting runs cancelled; a worker whose experiment was killed (SIGKILL) exits by itself within a second or so."""
    if scheduler is None:
        pool = ProcessPoolExecutor(jobs, initializer=_local_worker)
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            yield pool
        except BaseException:
            for process in list(pool._processes.values()):  # private: the pool has no public way to stop a running job
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        pool.shutdown()
    else:
        from distributed import Client
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend

        try:  # before Client, which may hang on a malformed address
            protocol, location = parse_address(scheduler)
            get_backend(protocol)
            host, port = parse_host_port(location)
            if not host or not 0 < port < 65536:
                raise ValueError(f"no host in {location!r}" if not host else f"port {port} is not from 1 to 65535")
        except (ValueError, TypeError) as error:
            raise ValueError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({error}); give the address "
                             "`dask scheduler` prints, tcp://HOST:PORT") from None
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise ValueError(f"--scheduler {scheduler!r}: no Dask scheduler answered there ({error}); start one with "
                             "`dask scheduler` and give the address it prints (tcp://HOST:8786)") from None
        with client:
            check_cluster(client, scheduler)
            yield client.get_executor(pure=False)


def ensure(specs: list[dict], runs_store: store.Store, jobs: int = 2, scheduler: str | None = None) -> dict[str, dict]:
    """The record of every spec, by key: read from the store where it is there, trained and stored where it is not.

    Each finished run is stored as it comes in, so an experiment that is stopped keeps every finished run and,
    started again, trains only the missing ones.
    """
    records, missing = {}, {}
    for spec in specs:
        found = runs_store.get(spec)
        if found is not None:
            records[training.key(spec)] = found[0]
        else:
            missing[training.key(spec)] = spec
    print(f"{len(records)} of {len(records) + len(missing)} runs read from {runs_store.path}, {len(missing)} to train",
          flush=True)
    report_elsewhere(list(records.values()))
    failed = {}
    if missing:
        runs_store.check_writable()
        with executor(min(jobs, len(missing)), scheduler) as pool:  # no idle workers
            futures = {pool.submit(store.train_for_store, spec): name for name, spec in missing.items()}
            for done, future in enumerate(as_completed(futures), 1):
                name = futures[future]
                try:
                    record, tensors = future.result()
                except Exception as error:  # a diverged run, say: the others still finish and are stored
                    failed[name] = f"{type(error).__name__}: {error}"
                    print(f"[{done}/{len(missing)}] {name}: FAILED, {failed[name]}", flush=True)
                    continue
                if record["key"] != name:  # a worker whose code (or torch) differs from this repository's
                    failed[name] = f"the worker made {record['key']}: its code or torch differs from this repository's"
                    continue
                runs_store.put(record, tensors)
                records[name] = record
                print(f"[{done}/{len(missing)}] {name}: held-out acc {record['history'][-1]['test_acc']:.2f}%, "
                      f"{record['seconds']:.0f} s", flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(specs)} runs failed, nothing of theirs stored (the other runs are): "
                           + "; ".join(f"{name}: {why}" for name, why in failed.items()))
    return records


def report_elsewhere(records: list[dict]) -> None:
    """Say once how many of `records` were made in another environment than this machine's (store.elsewhere), and
    how: they are used as stored."""
    differences = [store.elsewhere(r) for r in records]
    made = [d for d in differences if d]
    if made:
        how = sorted({f"{field} {theirs} (here {ours})" for d in made for field, (theirs, ours) in d.items()})
        print(f"{len(made)} of these {len(records)} stored runs were made in another environment: {'; '.join(how)}. "
              "They are used as stored; `python -m experiments verify` retrains a few here and compares.", flush=True)


# ---- Evaluation of stored models -------------------------------------------------------------------------------

def progress(items: list, what: str) -> Iterator:
    """The items, one at a time, with a line after each: "what i/n, s seconds", and after the first how long all n
    should take at its pace (evaluations of stored models take minutes; plain lines, as training's epochs, so that a
    log reads as well as a terminal)."""
    start = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        seconds = time.perf_counter() - start
        print(f"{what} {i}/{len(items)}, {seconds:.0f} s", flush=True)
        if i == 1 and len(items) > 1:
            print(f"{what}: {len(items)} in all, about {seconds * len(items) / 60:.1f} minutes at the first's pace",
                  flush=True)


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> tuple[float, torch.Tensor]:
    """Accuracy (%) and predictions of `model` as it is (train or eval mode), fed `batch` images at a time."""
    with torch.no_grad():
        predictions = torch.cat([model(images[i : i + batch]).argmax(dim=1) for i in range(0, len(images), batch)])
    return 100.0 * (predictions == labels).sum().item() / len(labels), predictions


def batch_statistics(model: Net, k: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Test accuracy (%) and predictions of a BatchNorm model normalised with the statistics of each group of k test
    digits in order (the last group smaller where k does not divide them), as in training, instead of its running
    statistics: on a copy in train mode with ghost batches of k (the same state dict), so the model and its running
    statistics are untouched."""
    ghost = Net("B", norm_batch=k)
    ghost.load_state_dict(model.state_dict())
    ghost.train()
    ghost.dropout.p = 0.0
    return accuracy(ghost, images, labels, k * max(1, 1000 // k))  # whole groups of k per forward pass


def recomputed_statistics(model: Net, images: torch.Tensor, batch: int, norm_batch: int | None = None) -> Net:
    """A copy of a BatchNorm model whose running statistics are recomputed as the average over the digits `images`
    (clean, not augmented) in batches of `batch` (torch.optim.swa_utils.update_bn), each batch normalised over ghost
    batches of `norm_batch` images where given (the statistics training averaged) or as a whole (the population's,
    which include the spread of the group means); in eval mode."""
    adapted = Net("B", norm_batch=norm_batch)
    adapted.load_state_dict(model.state_dict())
    torch.optim.swa_utils.update_bn(data.TensorLoader(images, torch.zeros(len(images), dtype=torch.long), batch,
                                                       shuffle=False), adapted)
    return adapted.eval()


def test_labels(settings: dict, split: str = "test") -> str:
    """The held-out labels of the settings' runs, as a string of digits (to compare predictions with)."""
    _, held = data.mnist_loaders(settings.get("DATA_ROOT"), torch.device("cpu"), 1, 1, 0, None, None,
                                  settings["TEST_LIMIT"], split)
    return "".join(map(str, held.labels.tolist()))


test_labels.__test__ = False  # not a pytest test


# ---- Tables: how the comparisons of experiments/stats.py print -------------------------------------------------------

def p_value(p: float | None) -> str:
    """A p-value for a table: three decimals, "< 0.001" below that, "-" where there is none (one seed)."""
    return "-" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def comparison_cells(comparison: dict | None, equivalence: bool = True) -> list[str]:
    """A comparison's cells in a table row: difference [95% interval], paired t p (Holm), the equivalence p (Holm)
    where `equivalence`, and the verdict; "-" in each for the reference row (None)."""
    if comparison is None:
        return ["-"] * (4 if equivalence else 3)
    return ([interval(comparison), p_value(comparison["p_holm"])]
            + ([p_value(comparison["p_equivalence_holm"])] if equivalence else []) + [comparison["verdict"]])


def interval(comparison: dict) -> str:
    """A comparison's difference and 95% interval for a table: "+0.060 [-0.010, +0.130]"."""
    return f"{comparison['difference']:+.3f}" + ("" if comparison["ci"] is None else f" [{comparison['ci'][0]:+.3f}, {comparison['ci'][1]:+.3f}]")


def trend_table(trend: dict, over: str, per: str) -> str:
    """A trend's one-row table: its mean slope per doubling, the 95% interval, and the uncorrected p."""
    return records.markdown_table(
        ["trend", f"accuracy change per {per} (points) [95% interval]", "slope per seed", "one-sample t p (uncorrected)"],
        [[over, f"{trend['slope']:+.3f} [{trend['ci'][0]:+.3f}, {trend['ci'][1]:+.3f}]",
          ", ".join(f"{x:+.3f}" for x in trend["slopes"]), p_value(trend["p"])]])


def ways_table(rows: list[dict], label: str, labels: list[str], said=lambda verdict: verdict) -> str:
    """Markdown table of several ways of evaluating one set of models (rows of stats.compare_ways): the reference
    way's mean, then each other way's mean with its difference from the reference [95% interval], Holm-adjusted
    paired p and verdict, as `said` puts it (stats.without_bootstrap where no equivalence can stand)."""
    ways = list(rows[0]["acc"])
    body = [[name, f"{r['mean'][ways[0]]:.2f}"] + [f"{r['mean'][w]:.2f}: {interval(r['against'][w])}, "
                                                     f"p {p_value(r['against'][w]['p_holm'])}, {said(r['against'][w]['verdict'])}"
                                                     for w in ways[1:]] for name, r in zip(labels, rows)]
    return records.markdown_table([label, f"{ways[0]} (%)"] + [f"{w} (%): against {ways[0]} [95% interval], paired t p "
                                                              "(Holm), verdict" for w in ways[1:]], body)


def ways_figure(rows: list[dict], labels: list[str], title: str):
    """Grouped bars of the mean test error of each way (log scale), with each seed as a dot."""
    import matplotlib.pyplot as plt

    ways = list(rows[0]["acc"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(ways)
    for i, way in enumerate(ways):
        ax.bar([x + i * width for x in range(len(rows))], [100 - row["mean"][way] for row in rows], width, label=way)
        for x, row in enumerate(rows):
            ax.scatter([x + i * width] * len(row["acc"][way]), [100 - a for a in row["acc"][way]], color="black", s=6, zorder=3)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], labels, fontsize=8)
    ax.set_yscale("log")
    ax.set(ylabel="test error (%), log scale", title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


# ---- Records -----------------------------------------------------------------------------------------------------

def png(fig) -> bytes:
    """A figure as the PNG file Images/ holds, rendered in memory (so that it is written with its JSON, in one step)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    return buffer.getvalue()


CORRECTION = ("verdicts above: Holm within their family (this experiment's comparisons of this kind), not study-wide; "
              "the study-wide verdicts are in STUDY.md's table \"Every verdict, in its family and study-wide\"")


def printed(tables: list[str]) -> str:
    """An experiment's tables as the command line prints them, each whose verdicts come from Holm's correction (its
    header or cells say "(Holm)") followed by the line CORRECTION, which says so and where the study-wide ones are."""
    return "\n\n".join(table + ("\n" + CORRECTION if "(Holm)" in table else "") for table in tables)


def not_yet(name: str) -> str:
    """What the documents say in place of an experiment's tables and words until its results are committed."""
    return (f"Not run yet at the protocol's length: `python -m experiments {name}` makes results/{name}.json from the "
            "run store, training the runs it does not hold (see the compute table).")


def load_results(path: Path, name: str) -> dict:
    """An experiment's results JSON, checked: a ValueError names the file and what is wrong with it."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist: run `python -m experiments {name}` first, or give the --out-dir "
                         "that holds results/")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): it is truncated or damaged; run the experiment again") from None
    if not isinstance(results, dict) or results.get("experiment") != name or not {"summary", "settings"} <= set(results):
        found = results.get("experiment") if isinstance(results, dict) else type(results).__name__
        raise ValueError(f"{path} is not the results of experiment {name!r} (it holds {found!r}); run the experiment again")
    return results


def unchanged(path: Path, results: dict) -> bool:
    """Whether the JSON at `path` holds `results` apart from where it was made ("environment"): then it is kept
    byte for byte, and an experiment run again at another commit rewrites nothing."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    strip = lambda r: {k: v for k, v in r.items() if k != "environment"}
    return isinstance(old, dict) and strip(old) == strip(json.loads(json.dumps(results)))


def replot(experiment: Experiment, out_dir: Path) -> None:
    """Redraw an experiment's figure and reprint its tables from its results JSON, without training anything."""
    check_places(False, out_dir)
    path = out_dir / "results" / f"{experiment.NAME}.json"
    results = load_results(path, experiment.NAME)
    try:  # both drawn before anything is written
        figure, tables = experiment.figure(results), experiment.tables(results)
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{path} holds results of experiment {experiment.NAME!r} that this version cannot draw "
                         f"({type(error).__name__}: {error}): it comes from other code or was edited; run the "
                         "experiment again") from None
    records.replace_files({out_dir / "Images" / f"{experiment.NAME}.png": png(figure)})
    print(printed(tables))


def check_places(quick: bool, out_dir: Path, store_dir: Path | None = None, keep: Path | None = None) -> None:
    """A ValueError, before anything is written, where an output place is, or lies in, a committed place
    (records.committed_place, symlinks resolved: the repository root, results/ or Images/) other than its own: a full
    run's --out-dir may be the repository root itself (whose results/ and Images/ are the experiments' published
    places) and its --store the committed store (results/runs) itself; verify's --keep neither, nor any place of a
    quick run (QUICK's settings, the first seed only: not the committed study)."""
    own = {} if quick else {"--out-dir": ROOT, "--store": store.STORE}
    what = {"--out-dir": "a results/ and an Images/", "--store": "run records", "--keep": "retrained runs"}
    for option, path in (("--out-dir", out_dir), ("--store", store_dir), ("--keep", keep)):
        place = None if path is None else records.committed_place(path)
        if place and Path(path).resolve() != own.get(option):
            default = f"{RUNS / 'quick'}, a quick run's" if quick else own.get(option)
            leave = f"leave {option} out (the default: {default}) or " if default else ""
            raise ValueError(f"{'--quick with ' if quick else ''}{option} {path}: that is {place} ({Path(path).resolve()}), "
                             f"where only the committed study's own files go, each in its own place; {option} would put "
                             f"{what[option]} of {'a quick run' if quick else 'its own'} there. Instead {leave}give a "
                             "folder outside the repository root, results/ and Images/")


def execute(experiment: Experiment, quick: bool, jobs: int, out_dir: Path, store_dir: Path,
            scheduler: str | None = None) -> dict:
    """Run an experiment end to end: its runs from the store (training the missing ones), its evaluations, then
    out_dir/results/<NAME>.json and out_dir/Images/<NAME>.png. What the module gives, and how each part is used, is
    experiments/interface.py's Experiment. --quick runs the first seed only.
    """
    check_places(quick, out_dir, store_dir)
    settings = {k: v for k, v in settings_for(quick, **experiment.OVERRIDES).items() if k != "DATA_ROOT"}
    check_study(settings["VARIANTS"], settings["EPOCHS"], settings["MAX_LR"], settings["WEIGHT_DECAY"],
                settings["EMA_DECAY"], settings["L1_LAMBDA"], settings["GROUPS"], settings["DROPOUT"], out_dir)
    made_in = records.environment("cpu")  # at the start: the commit (and checks below) that made these results
    commit = made_in["git_commit"]
    committed = Path(out_dir).resolve() == ROOT or Path(store_dir).resolve() == store.STORE
    if committed and (commit is None or commit.endswith("+changes")):
        raise ValueError(f"the code has uncommitted changes (git commit {commit}): results/ and the committed store take "
                         "only runs made at a clean commit. Commit first, or pass --out-dir and --store outside "
                         "results/ (under runs/, say) to keep this run apart")
    settings["DATA"] = data.mnist_digest()  # which digits: MNIST_ROOT's files, by content, not by where they are
    runs = experiment.runs(settings, experiment.SEEDS[:1] if quick else experiment.SEEDS)
    keys = [training.key(row["spec"]) for row in runs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{experiment.NAME}: two of its rows are the same run; with these settings they would be "
                         "labelled apart but identical")
    runs_store = store.Store(store_dir)
    found = ensure([row["spec"] for row in runs], runs_store, jobs, scheduler)
    for row, name in zip(runs, keys):
        row["record"] = found[name]
    start = time.perf_counter()
    summary = experiment.summarise(runs, settings, runs_store)
    print(f"{experiment.NAME}: summarised in {time.perf_counter() - start:.0f} s", flush=True)
    used = [{**{k: v for k, v in row.items() if k not in ("spec", "record")}, "key": row["record"]["key"],
             "git_commit": row["record"]["environment"]["git_commit"], "seconds": row["record"]["seconds"],
             "test_acc": row["record"]["history"][-1]["test_acc"]} for row in runs]
    results = {"experiment": experiment.NAME, "settings": settings, "environment": made_in,
               "train_seconds": sum(u["seconds"] for u in used), "summary": summary, "runs": used}
    path, figure = out_dir / "results" / f"{experiment.NAME}.json", out_dir / "Images" / f"{experiment.NAME}.png"
    if unchanged(path, results) and figure.exists():
        print(f"{path} and {figure} are left as they are: no number changed")
    else:
        records.replace_files({path: records.json_bytes(results), figure: png(experiment.figure(results))})  # both or neither
    print(printed(experiment.tables(results)))
    print(f"{experiment.NAME}: {len(runs)} runs, {results['train_seconds'] / 60:.1f} minutes of training")
    return results
