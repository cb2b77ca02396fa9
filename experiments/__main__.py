"""python -m experiments NAME [--quick] [--jobs 2] [--scheduler ADDRESS]: one experiment's JSON and figure, from the
runs in the store, training only the runs it does not hold yet."""

import argparse
import importlib
import os
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one plain line per epoch, not a bar per run

import store
from experiments import runner

EXPERIMENTS = ["main", "l1", "lr", "norm_batch", "gn_groups", "bn_test", "shift", "ghost_stats"]
QUICK_DIR = runner.RUNS / "quick"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: first seed only, settings {runner.QUICK}; writes under {QUICK_DIR}, never results/")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU thread each (default 2: two cores)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="train on the Dask cluster at ADDRESS (tcp://host:8786) instead of local processes")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw Images/NAME.png and reprint the tables from results/NAME.json")
    parser.add_argument("--out-dir", type=Path,
                        help=f"writes OUT_DIR/results/NAME.json and OUT_DIR/Images/NAME.png (default: the repository; "
                             f"{QUICK_DIR} with --quick)")
    parser.add_argument("--store", type=Path,
                        help=f"the run store to read and fill (default: {store.STORE}; {QUICK_DIR / 'store'} with --quick)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.replot and (args.quick or args.scheduler or args.store):
        parser.error("--replot trains nothing: it takes only --out-dir")
    out_dir = args.out_dir or (QUICK_DIR if args.quick else runner.ROOT)
    store_dir = args.store or (QUICK_DIR / "store" if args.quick else store.STORE)
    experiment = importlib.import_module(f"experiments.{args.name}")
    if args.replot:
        runner.replot(experiment, out_dir)
    else:
        runner.execute(experiment, args.quick, args.jobs, out_dir, store_dir, args.scheduler)


if __name__ == "__main__":
    main()
