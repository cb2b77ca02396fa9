"""python -m experiments NAME [--quick] [--jobs 2] [--out-dir .]: run one experiment and write its JSON and figure."""

import argparse
import importlib
import os
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one plain line per epoch, not a bar per run

from experiments import runner

EXPERIMENTS = ["seeds", "l1", "norm_batch", "gn_groups", "bn_test"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: first seed only, settings {runner.QUICK}")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one CPU thread each (default 2: two cores)")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw Images/NAME.png and reprint the tables from the committed results/NAME.json")
    parser.add_argument("--out-dir", type=Path, default=runner.ROOT,
                        help="writes OUT_DIR/results/NAME.json and OUT_DIR/Images/NAME.png (default: the repository)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    experiment = importlib.import_module(f"experiments.{args.name}")
    if args.replot:
        runner.replot(experiment, args.out_dir)
    else:
        runner.execute(experiment, args.quick, args.jobs, args.out_dir)


if __name__ == "__main__":
    main()
