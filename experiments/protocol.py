"""The runs PROTOCOL.md and PROTOCOL2.md declare, trained ahead of the experiments that will publish them:
`python -m experiments.protocol [--jobs 2] [--store DIR] [--list]`.

It trains only the runs the store lacks, in the order each experiment lists them (Protocol 2's cheapest arms first),
and stores each one as it finishes, so a stopped session loses only the runs in flight. It writes no results. Once
every declared run of an experiment is stored, its table is published as usual. Runs that wait for a choice made on
validation (no normalisation's rate, and the runs at it) are listed once that choice is committed.
"""

import argparse
import importlib
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: as python -m experiments (its __main__ says why)

import records
import store
import training
from experiments import DECLARED, report, runner


def specs() -> list[dict]:
    """Every declared run once, in the order they should train: experiment by experiment as experiments.DECLARED
    lists them, each in its own order."""
    found = {}
    for name, seeds in DECLARED.items():
        module = importlib.import_module(f"experiments.{name}")
        for run in module.runs(runner.settings_for(False, **module.OVERRIDES), seeds):
            found.setdefault(training.key(run["spec"]), run["spec"])
    return list(found.values())


def main(jobs: int, store_dir: Path, listing: bool) -> None:
    runs_store = store.Store(store_dir)
    declared = specs()
    missing = [s for s in declared if not runs_store.file(s).exists()]
    stored = {training.key(s): s for s in declared if runs_store.file(s).exists()}
    estimate = report.estimator({k: report.trained_seconds(runs_store.file(s)) for k, s in stored.items()}, stored)
    hours = sum(estimate(training.key(s), s) for s in missing) / jobs / 3600
    print(f"{len(declared)} declared runs, {len(stored)} stored in {runs_store.path}, {len(missing)} to train (about "
          f"{hours:.1f} hours at {jobs} at a time, from the stored runs most like each)", flush=True)
    if listing:
        print("\n".join(training.key(s) for s in missing))
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
