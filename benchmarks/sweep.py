"""Runs the notebook itself under other settings and tabulates final test accuracy: seeds, or L1 lambdas.

    python benchmarks/sweep.py seeds --seeds 1 2 3                      # every variant, mean and spread
    python benchmarks/sweep.py l1 --lambdas 0 1e-5 1e-4 1e-3            # the BN model, one seed

Each run executes S6_Normalization.ipynb with a cell of overrides after its `parameters` cell, writing into a
folder of its own under --out, so the settings are the notebook's and nothing is copied. --jobs 2 runs two
notebooks at once with one CPU thread each. The summary is printed as a Markdown table and saved as JSON.
"""

import argparse
import ast
import json
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402


def run_notebook(overrides: dict, out_dir: Path) -> dict:
    """Execute the notebook with `overrides` (setting name -> value) into out_dir; return its history file."""
    notebook = nbformat.read(ROOT / "S6_Normalization.ipynb", as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    settings = {**overrides, "OUT_DIR": str(out_dir)}
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in settings.items())))
    NotebookClient(notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return utils.load_history(out_dir / "results" / "history.json")


def final_accuracy(runs: dict) -> dict[str, float]:
    return {name: run["history"][-1]["test_acc"] for name, run in runs.items()}


def table(results: dict[str, dict[str, float]], with_mean: bool) -> str:
    """Markdown table, a row per run and a column per variant; with_mean adds the mean and sample std."""
    variants = list(next(iter(results.values())))
    rows = [[label] + [f"{acc[v]:.2f}" for v in variants] for label, acc in results.items()]
    if with_mean and len(results) > 1:
        columns = [[acc[v] for acc in results.values()] for v in variants]
        rows.append(["mean +- std"] + [f"{statistics.mean(c):.2f} +- {statistics.stdev(c):.2f}" for c in columns])
    return utils.markdown_table(["run"] + variants, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["seeds", "l1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 1e-5, 1e-4, 1e-3])
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at once (one CPU thread each when > 1)")
    parser.add_argument("--out", type=Path, default=None, help="JSON summary (default: results/<kind>.json)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="further notebook settings, e.g. EPOCHS=1 TRAIN_LIMIT=512 (Python literals)")
    args = parser.parse_args()

    extra = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.kind == "seeds":
        runs = {f"seed {s}": {**extra, "SEED": s} for s in args.seeds}
    else:
        runs = {f"lambda {lam:g}": {"VARIANTS": {"BN": "B"}, **extra, "L1_LAMBDA": lam} for lam in args.lambdas}
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the kernels: the jobs share the cores

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = {label: pool.submit(run_notebook, overrides, Path(tmp) / str(i))
                   for i, (label, overrides) in enumerate(runs.items())}
        results = {label: final_accuracy(future.result()) for label, future in futures.items()}

    print(table(results, with_mean=args.kind == "seeds"))
    out = args.out or ROOT / "results" / f"{args.kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"kind": args.kind, "settings": extra, "final_test_acc": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
