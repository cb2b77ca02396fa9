"""python -m experiments NAME [--quick] [--jobs 2] [--scheduler ADDRESS]: one experiment's JSON and figure, from the
runs in the store, training only the runs it does not hold yet; python -m experiments verify [--sample 3]: retrain a
few stored runs here and compare them with their records."""

import argparse
import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one plain line per epoch, not a bar per run
# One CPU thread, set before torch loads OpenMP: two buy this network ~10% on a quiet machine, and spin at 3-9x the
# time beside busy processes (benchmarks/threads.py); the training workers take one thread each in any case.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import store
import training
from experiments import EXPERIMENTS, runner, verify

QUICK_DIR = runner.RUNS / "quick"


def summary(module) -> str:
    """An experiment's line for --help: what it shows, its runs and how many of them the committed store holds."""
    specs = {training.key(r["spec"]): r["spec"] for r in module.runs(runner.settings_for(False, **module.OVERRIDES),
                                                                     module.SEEDS)}
    stored = sum(store.Store().file(key).exists() for key in specs)
    return f"{module.SHOWS}; uses {len(specs)} runs of 20 epochs, {stored} of them stored"


def parser(stored: bool = False) -> argparse.ArgumentParser:
    """The command line; each experiment's line in --help says how many of its runs are stored only where `stored`
    (counting them takes seconds: an argument error must not wait for it)."""
    modules = {name: importlib.import_module(f"experiments.{name}") for name in EXPERIMENTS}
    top = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    names = top.add_subparsers(dest="name", required=True, metavar="NAME",
                               title="experiments (python -m experiments NAME --help describes one)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU thread each (default 2: two cores)")
    common.add_argument("--scheduler", metavar="ADDRESS",
                        help="train on the Dask cluster at ADDRESS (tcp://host:8786) instead of local processes")
    common.add_argument("--store", type=Path,
                        help=f"the run store to read and fill (default: {store.STORE}; {QUICK_DIR / 'store'} with --quick)")
    common.add_argument("--out-dir", type=Path,
                        help=f"writes OUT_DIR/results/NAME.json and OUT_DIR/Images/NAME.png (default: the repository; "
                             f"{QUICK_DIR} with --quick)")
    for name, module in modules.items():
        one = names.add_parser(name, parents=[common], help=summary(module) if stored else module.SHOWS,
                               description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        one.add_argument("--quick", action="store_true", help=f"a smoke run: first seed only, settings {runner.QUICK}; "
                                                              f"writes under {QUICK_DIR}, never results/")
        one.add_argument("--replot", action="store_true",
                         help="only redraw Images/NAME.png and reprint the tables from results/NAME.json")
    check = names.add_parser("verify", parents=[common], help=verify.SHOWS,
                             description=verify.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--sample", type=int, default=verify.SAMPLE,
                       help=f"how many stored runs to retrain (default {verify.SAMPLE}: enough for a verdict)")
    check.add_argument("--keep", type=Path, metavar="DIR", help="also put the retrained runs in the run store DIR")
    check.add_argument("--publish", action="store_true",
                       help=f"write results/verify.json, which the README quotes (default: {verify.OUT_DIR})")
    return top


def main() -> None:
    top = parser(stored=sys.argv[1:2] in (["-h"], ["--help"]))  # the list with stored runs: `python -m experiments --help`
    args = top.parse_args()
    if args.jobs < 1:
        top.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.name == "verify":
        if args.publish and args.out_dir:
            top.error("--publish writes into the repository's results/: it takes no --out-dir")
        out_dir = runner.ROOT if args.publish else args.out_dir or verify.OUT_DIR
        runner.check_places(False, out_dir, keep=args.keep)  # never into the committed store
        verify.main(args.sample, args.store or store.STORE, args.jobs, args.scheduler, out_dir, args.keep)
        return
    if args.replot and (args.quick or args.scheduler or args.store):
        top.error("--replot trains nothing: it takes only --out-dir")
    out_dir = args.out_dir or (QUICK_DIR if args.quick else runner.ROOT)
    store_dir = args.store or (QUICK_DIR / "store" if args.quick else store.STORE)
    experiment = importlib.import_module(f"experiments.{args.name}")
    if args.replot:
        runner.replot(experiment, out_dir)
    else:
        runner.execute(experiment, args.quick, args.jobs, out_dir, store_dir, args.scheduler)


if __name__ == "__main__":
    main()
