"""Every number in README.md and STUDY.md, generated from the committed results: `python -m experiments.report`
rewrites the generated blocks of both files, and tests/test_readme.py checks that they are as generated.

A generated block in those files is the text between `<!-- generated: NAME -->` and `<!-- /generated -->`; `blocks()`
makes each NAME's text from the committed JSON (results/) and the code, and records.render puts it in place. Each
experiment's words stand beside its tables, in its own module (experiments/interface.py: Words, and Answer for
Protocol 2's), the study table's in experiments/study.py, verify's in experiments/verify.py and each benchmark's in
benchmarks/; this module collects them, orders the pick table's rows (PICK) and renders the tables that span them
all: the pick table's cost column, the compute table, Protocol 2's list of answers and the model's table. Everything
outside the blocks is written by hand and carries no number that a result could change. Publishing a full notebook
run (publish.py) rewrites the blocks made from its history alone (records.notebook_blocks), so that the README follows
the results it publishes; no other block reads the history.
"""

import functools
import importlib
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import records
import store
import training
from checks import NORM_NAMES
from experiments import EXPERIMENTS, PROTOCOL2, REGISTRY, runner, study, verify
from experiments.interface import Experiment
from model import Net, count_macs, count_parameters

ROOT = records.ROOT


def load(root: Path = ROOT) -> dict:
    """results/history.json under "history", each experiment's and benchmark's JSON under its name."""
    results = {"history": records.load_history(root / "results" / "history.json")}
    for name in EXPERIMENTS + ["speed", "step", "verify", "threads", "cost"]:
        path = root / "results" / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


def experiment_tables(results: dict, module: Experiment) -> str:
    """An experiment's tables; for Protocol 2's, its figure too (shown once it is published)."""
    name = module.NAME
    if name not in results:
        return runner.not_yet(name)
    figure = [f"![{module.SHOWS}](Images/{name}.png)"] if name in PROTOCOL2 else []
    return "\n\n".join(module.tables(results[name]) + figure)


def model_blocks() -> dict[str, str]:
    rows = []
    what = {"B": "each channel over the batch and H, W (running statistics at test time)",
            "L": "each image over C, H, W (`GroupNorm(1, C)`)", "G": "each image over groups of C/2 channels and H, W",
            "I": "each image and channel over H, W (`GroupNorm(C, C)`)"}
    for norm in "BLGI":
        net = Net(norm)
        rows.append([norm, f"{count_parameters(net):,}", f"{count_macs(net):,}",
                     f"{sum(p.numel() for p in net.norms.parameters()):,}", what[norm]])
    net, shapes = Net("L"), []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[1:]))) for m in net.norms]
    net(torch.zeros(1, 1, 28, 28))  # the [C, H, W] that each norm sees
    for hook in hooks:
        hook.remove()
    full = 2 * sum(math.prod(s) for s in shapes)
    return {
        "model_table": records.markdown_table(["norm", "parameters", "multiply-accumulates per image", "norm parameters",
                                             "what is normalised"], rows),
        "full_layernorm": f"The common `nn.LayerNorm([C, H, W])` would learn a scale and shift per activation: "
                          f"{full:,} parameters for this network's five norms ({full / count_parameters(net):.1f} times "
                          "the whole network)",
        "worked_example": records.worked_example_table(),
    }


def link(name: str) -> str:
    """A link to an experiment's section of STUDY.md."""
    return f"[{name}](STUDY.md#{REGISTRY[name].section})"


# The README's pick table, row by row: the main comparison's, Protocol 2's, then the rest of Protocol 1's
PICK = ("main", "no_norm", "real_batch", "drift", "scarce", "norm_batch", "shift", "gn_groups", "l1", "lr", "bn_test")
NEAREST = {"real_batch": "ghost batches", "drift": "drift"}  # Protocol 1's pick rows nearest a Protocol 2 question


def row(name: str, results: dict, found: list[dict]) -> dict | None:
    """An experiment's row of the pick table (interface.Words.pick); a Protocol 2 experiment's (interface.Answer.pick)
    once it is published, its own section the evidence."""
    module = importlib.import_module(f"experiments.{name}")
    if name not in PROTOCOL2:
        return module.pick(results, found)
    return dict(module.pick(results[name]), evidence=[name]) if name in results else None


def pick(results: dict, found: list[dict]) -> str:
    """The README's advice: one row per situation, a recommendation in plain words, why (Protocol 1's study-wide
    verdicts, Protocol 2's primary ones), the STUDY.md section with the evidence, and what the norms it names cost."""
    rows = [picked for picked in (row(name, results, found) for name in PICK) if picked]
    return records.markdown_table(["situation", "pick", "why (the verdicts: Protocol 1's study-wide, Protocol 2's within "
                                   "its family)", "evidence",
                                   "its cost: ms per training step at batch 8 / 32 / 128, one CPU thread"],
                                  [[r["situation"], r["pick"], r["why"], ", ".join(link(name) for name in r["evidence"]),
                                    cost(results, r["norms"])] for r in rows])


def cost(results: dict, norms: str) -> str:
    """What each of `norms` (the letters a row's pick is between) costs per training step (benchmarks/cost.py); "-"
    where the pick is no norm."""
    if "cost" not in results:
        return "not measured yet"
    ms = {(r["norm"], r["batch"]): r["ms"] for r in results["cost"]["rows"]}
    return "; ".join(f"{NORM_NAMES[norm]} {' / '.join(f'{ms[(norm, b)]:.1f}' for b in (8, 32, 128))}"
                     for norm in norms) or "-"


def committed_runs() -> set[str] | None:
    """The names of the run files git holds (committed or staged): the committed store, so that runs training into
    it do not change the documents until they are committed; None outside a git checkout (every stored run counts)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", "results/runs"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {Path(line).name for line in listed.splitlines()}


@functools.cache
def full_runs(name: str) -> dict[str, dict]:
    """The runs an experiment lists at its full settings and seeds, by key (computed once per process)."""
    module = importlib.import_module(f"experiments.{name}")
    runs = module.runs(runner.settings_for(False, **module.OVERRIDES), module.SEEDS)
    return {training.key(run["spec"]): run["spec"] for run in runs}


def is_committed(runs_store: store.Store, held: set[str] | None, spec: dict) -> bool:
    """Whether the committed store holds the run: stored, and among git's files (`held`, committed_runs) in a checkout."""
    path = runs_store.file(spec)
    return path.exists() and (held is None or path.name in held)


def committed(name: str) -> int:
    """How many of an experiment's runs the committed store holds."""
    runs_store, held = store.Store(), committed_runs()
    return sum(is_committed(runs_store, held, spec) for spec in full_runs(name).values())


@functools.cache
def trained_seconds(path: Path) -> float:
    """A stored run's training time (its record's seconds), read once per process: a record never changes."""
    return store.Store(path.parent).read(path)[0]["seconds"]


def estimator(seconds: dict[str, float], specs: dict[str, dict]) -> Callable[[str, dict], float]:
    """A run's training seconds, by key and spec: its own where `seconds` holds it (`specs` gives those runs' specs);
    else the mean of the held runs of its kind (split, batch and training digits: the validation split trains on
    50,000 digits, the test split on 60,000, scarce data on 5,000, and a batch of 8 costs about 2.5 times a batch of
    128); else of its split; else of all (nan where none is held)."""
    kind = lambda spec: (spec["split"], spec["batch_size"], spec["train_limit"])
    groups: dict = {}
    for k, s in seconds.items():
        for group in (kind(specs[k]), specs[k]["split"]):
            groups.setdefault(group, []).append(s)
    mean = {group: statistics.mean(v) for group, v in groups.items()}
    overall = statistics.mean(seconds.values()) if seconds else float("nan")
    return lambda k, spec: seconds.get(k, mean.get(kind(spec), mean.get(spec["split"], overall)))


def compute_table() -> str:
    """What every experiment needs of the run store, at its full settings: the runs it lists, how many the committed
    store holds, and its training time: the stored runs' own seconds, plus an estimate for each missing run (estimator).
    Runs shared between experiments count once in the total. Minutes on 2 cores (two runs at a time, one thread each)
    and on 16 (a cluster, one run per core), from those seconds."""
    runs_store = store.Store()
    needed, rows = {}, []
    for name in EXPERIMENTS:
        specs = full_runs(name)
        needed.update({k: (name, spec) for k, spec in specs.items() if k not in needed})
        rows.append([name, specs])
    held = committed_runs()
    seconds = {k: trained_seconds(runs_store.file(spec)) for k, (_, spec) in needed.items()
               if is_committed(runs_store, held, spec)}
    estimate = estimator(seconds, {k: spec for k, (_, spec) in needed.items()})
    minutes = lambda total: "-" if math.isnan(total) else f"{total / 60:.0f}"
    body = []
    for name, specs in rows:
        total = sum(estimate(k, spec) for k, spec in specs.items())
        body.append([f"`python -m experiments {name}`", len(specs), sum(k in seconds for k in specs),
                     minutes(total / 2), minutes(total / 16)])
    total = sum(estimate(k, spec) for k, (_, spec) in needed.items())
    body.append(["all, each run once", len(needed), len(seconds), minutes(total / 2), minutes(total / 16)])
    return records.markdown_table(["experiment", f"runs ({runner.settings_for(False)['EPOCHS']} epochs each)", "in the committed store",
                                 "minutes on 2 cores", "minutes on 16 cores"], body)


def protocol2_headline(results: dict) -> dict[str, str]:
    """README's first screen on Protocol 2, a list: each experiment's answer once it is published, what is still
    training, and what a step of each norm costs."""
    said = [importlib.import_module(f"experiments.{name}").headline(results[name]) for name in PROTOCOL2 if name in results]
    waiting = [name for name in PROTOCOL2 if name not in results]
    if waiting:
        near = [NEAREST[name] for name in waiting if name in NEAREST]
        said.append("**Still training:** " + "; ".join(
            f"{importlib.import_module(f'experiments.{name}').SHOWS} ({committed(name)} of {len(full_runs(name))} runs "
            "committed)" for name in waiting) + "." + (
            f" Until {'they are' if len(waiting) > 1 else 'it is'} in, Protocol 1's "
            f"{'rows' if len(near) > 1 else 'row'} on {' and '.join(near)}, in the table below, "
            f"{'say' if len(near) > 1 else 'says'} what was seen." if near else ""))
    if "cost" in results:
        said.append(f"**What a norm costs.** Milliseconds per training step at batches of 8 / 32 / 128 images on this "
                    f"CPU, one thread: {cost(results, 'BLGN')} (benchmarks/cost.py, median of {results['cost']['rounds']} "
                    "rounds; measured, not tested).")
    return {"protocol2_headline": "\n".join(f"- {line}" for line in said)}


def protocol2_blocks() -> dict[str, str]:
    """PROTOCOL2.md's feasibility table."""
    from experiments import feasibility

    return {"feasibility": feasibility.table()}


def blocks(results: dict | None = None) -> dict[str, str]:
    """Every generated block, by name: each experiment's tables and the words it gives beside them (interface.Words),
    the notebook's run, the model, the study table, the pick and compute tables, verify's and the benchmarks'."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed
    import step
    import threads

    results = results or load()
    found = study.rows(results)
    out = {**records.notebook_blocks(results["history"]), **model_blocks(), **study.blocks(found),
           "pick": pick(results, found), **protocol2_blocks(), **protocol2_headline(results), "durations": compute_table(),
           **verify.blocks(results), "speed": speed.table(results["speed"]), "step": step.table(results["step"]),
           **threads.blocks(results)}
    for name in EXPERIMENTS:
        module = importlib.import_module(f"experiments.{name}")
        out[f"{name}_tables"] = experiment_tables(results, module)
        if hasattr(module, "blocks"):
            out.update(module.blocks(results, found))
    return out


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite the generated blocks of README.md and STUDY.md under `root` from its results; the changed files."""
    generated = blocks(load(root))
    changed = []
    for name in records.DOCUMENTS:
        path = root / name
        text = path.read_text()
        new = records.render(text, generated)
        if new != text:
            records.replace_file(path, lambda tmp: tmp.write_text(new))
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write():
        print(f"rewrote {path.relative_to(ROOT)}")
