"""The new runs PROTOCOL.md declares, trained ahead of the experiments that will publish them:
`python -m experiments.protocol [--jobs 2] [--store DIR] [--list]`.

It trains only the runs the store lacks, whole seeds first, and stores each one as it finishes, so a stopped session
loses only the runs in flight. It writes no results. Once every declared run of an experiment is stored, that
experiment's SEEDS become the declared ones and its table is published as usual. The main comparison at each norm's
own rate (PROTOCOL.md B, experiments/own_rate.py) depends on A's result, so its runs are listed since A was done.
"""

import argparse
import importlib
from pathlib import Path

import records
import store
from experiments import runner

# PROTOCOL.md: the seeds of each experiment whose runs it adds (A: lr; D: norm_batch, gn_groups; B: own_rate, listed
# once A chose each variant's rate)
DECLARED = {"lr": tuple(range(1, 6)), "norm_batch": tuple(range(1, 11)), "gn_groups": tuple(range(1, 11)),
            "own_rate": tuple(range(1, 11))}


def specs() -> list[dict]:
    """Every declared run once, in the order they should train: experiment by experiment as DECLARED lists them,
    lowest seed first."""
    found = {}
    for name, seeds in DECLARED.items():
        module = importlib.import_module(f"experiments.{name}")
        rows = module.runs(runner.settings_for(False, **module.OVERRIDES), seeds)
        for run in sorted(rows, key=lambda run: run["seed"]):
            found.setdefault(store.key(run["spec"]), run["spec"])
    return list(found.values())


def main(jobs: int, store_dir: Path, listing: bool) -> None:
    runs_store = store.Store(store_dir)
    declared = specs()
    missing = [s for s in declared if not runs_store.file(s).exists()]
    print(f"{len(declared)} declared runs, {len(declared) - len(missing)} stored in {runs_store.path}, "
          f"{len(missing)} to train (about {len(missing) * 5.5 / jobs / 60:.1f} hours at {jobs} at a time)", flush=True)
    if listing:
        print("\n".join(store.key(s) for s in missing))
        return
    commit = records.git_commit()
    if runs_store.path.resolve() == store.STORE and (commit is None or commit.endswith("+changes")):
        raise ValueError(f"the code has uncommitted changes (git commit {commit}): the committed store takes only runs "
                         "made at a clean commit. Commit first, or pass --store outside results/")
    runner.ensure(missing, runs_store, jobs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m experiments.protocol", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU thread each (default 2)")
    parser.add_argument("--store", type=Path, default=store.STORE, help=f"the run store (default {store.STORE})")
    parser.add_argument("--list", action="store_true", help="only list the declared runs not yet stored")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    main(args.jobs, args.store, args.list)
