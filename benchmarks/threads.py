"""Seconds for the notebook's three variants to train one epoch each, by CPU-thread setting, on a quiet machine and
beside busy processes: which setting the notebook, the experiments and the tests should use.

    python benchmarks/threads.py --out results/threads.json   # the README's numbers (about 15 minutes on 2 cores)
    python benchmarks/threads.py --limit 1280 --repeats 1     # a quick check

Ways (each timed as whole processes, start-up and data included, from launch to the last one's exit):
- "default": one process, torch's default threads (one per core), the variants one after another;
- "1 thread": one process, torch.set_num_threads(1) (OMP_NUM_THREADS=1, set before torch loads);
- "passive": as "default", with OMP_WAIT_POLICY=PASSIVE set before torch loads (idle OpenMP threads sleep, not spin);
- "side by side": one process per variant, one thread each, all started at once.
Load: 0, 2 or 4 busy processes (a Python loop each) beside the timed ones. Within a repeat every way runs at every
load, interleaved, so ratios compare runs made side by side; the table gives medians over repeats. "Epoch" here is
`--limit` training digits in batches of 128 (a full epoch is 60,000: 469 steps), AdamW, the notebook's augmentation.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = "BLG"  # the notebook's BN+L1, LN and GN: their norms
WAYS = ("default", "1 thread", "passive", "side by side")
LOADS = (0, 2, 4)
BATCH_SIZE = 128


def child(norms: str, root: str, limit: int) -> None:
    """Train one epoch of `limit` digits for each norm in `norms`, one after another (the process's threads as set)."""
    import torch

    import data
    import settings
    import utils
    from model import Net

    device = torch.device("cpu")
    train_loader, _ = data.mnist_loaders(root, device, BATCH_SIZE, 2000, 0, settings.SETTINGS["AUGMENTATION"][0],
                                         train_limit=limit, test_limit=1)
    for norm in norms:
        utils.set_seed(0)
        model = Net(norm)
        utils.train(model, train_loader, torch.optim.AdamW(model.parameters(), lr=0.01), device)
    print(json.dumps({"threads": torch.get_num_threads()}))


def environ(way: str) -> dict:
    """The child's environment for `way`, set before its torch (and OpenMP) loads."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["TQDM_DISABLE"] = "1"
    if way in ("1 thread", "side by side"):
        env["OMP_NUM_THREADS"] = "1"
    if way == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def timed(way: str, root: str, limit: int) -> tuple[float, int]:
    """Wall seconds from launch to the last process's exit, and the threads a timed process used."""
    groups = list(VARIANTS) if way == "side by side" else [VARIANTS]
    start = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, __file__, "--child", norms, "--root", root, "--limit", str(limit)],
                                  stdout=subprocess.PIPE, text=True, env=environ(way)) for norms in groups]
    outputs = [p.communicate()[0] for p in processes]
    seconds = time.perf_counter() - start
    if any(p.returncode for p in processes):
        sys.exit(f"{way}: a child failed ({[p.returncode for p in processes]})")
    return seconds, json.loads(outputs[0].strip().splitlines()[-1])["threads"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("MNIST_ROOT", "data"), help="folder holding MNIST/raw")
    parser.add_argument("--limit", type=int, default=6400, help="training digits per epoch (default 6,400: 50 steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also save the summary as JSON (results/threads.json)")
    parser.add_argument("--child", metavar="NORMS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.root, args.limit)
    if args.limit < BATCH_SIZE or args.repeats < 1:
        parser.error(f"--limit must be at least {BATCH_SIZE} and --repeats at least 1, got {args.limit}, {args.repeats}")

    import records

    made_in = {**records.environment("cpu"), "cpu_capability": _capability()}  # at the start: the commit that measures
    seconds = {(way, load): [] for way in WAYS for load in LOADS}
    threads = {}
    for repeat in range(args.repeats):
        for load in LOADS:
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
            try:
                for way in WAYS:
                    took, threads[way] = timed(way, args.root, args.limit)
                    seconds[(way, load)].append(took)
                    print(f"repeat {repeat + 1}, {load} busy: {way:12s} {took:6.1f} s", flush=True)
            finally:
                for process in busy:
                    process.kill()
                    process.wait()
    summary = {"environment": made_in,
               "cores": os.cpu_count(), "train_digits": args.limit, "variants": VARIANTS, "repeats": args.repeats,
               "rows": [{"way": way, "threads": threads[way],
                         "seconds": {str(load): statistics.median(seconds[(way, load)]) for load in LOADS}}
                        for way in WAYS]}
    print("\n" + table(summary))
    if args.out:
        records.write_json(args.out, summary)


def _capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def table(summary: dict) -> str:
    """Markdown table: each way's median seconds at each load, and how much slower it is beside busy processes."""
    import records

    quiet = min(row["seconds"]["0"] for row in summary["rows"])
    rows = [[row["way"], row["threads"]] + [f"{row['seconds'][str(load)]:.1f}" for load in LOADS]
            + [f"{row['seconds']['0'] / quiet:.2f}x", f"{max(row['seconds'].values()) / row['seconds']['0']:.2f}x"]
            for row in summary["rows"]]
    return (f"{summary['environment']['cpu']} ({summary['environment']['cpu_capability']}), {summary['cores']} cores: "
            f"the {len(summary['variants'])} variants, one epoch of {summary['train_digits']:,} digits each, median of "
            f"{summary['repeats']} runs.\n\n"
            + records.markdown_table(["way", "threads per process"] + [f"seconds, {load} busy" for load in LOADS]
                                     + ["quiet, against the fastest", "busiest against quiet"], rows))



def blocks(results: dict) -> dict[str, str]:
    """The README's sentence on this benchmark's finding, and STUDY.md's table, from `results` (every committed result,
    by name: results/threads.json under "threads")."""
    if "threads" not in results:
        return {"threads": "Not measured yet: `python benchmarks/threads.py --out results/threads.json`.", "threads_table": ""}
    found = results["threads"]
    row = {r["way"]: r for r in found["rows"]}
    one, default = row["1 thread"], row["default"]
    return {"threads": f"Every command here trains with one CPU thread per process (`OMP_NUM_THREADS=1`, set before "
                       f"torch loads, unless you set it). On this project's {found['environment']['cpu']} with "
                       f"{found['cores']} cores, the notebook's three variants (an epoch of {found['train_digits']:,} "
                       f"digits each) took {one['seconds']['0']:.1f} s with one thread on a quiet machine and "
                       f"{one['seconds']['2']:.1f} s beside two busy processes; with the default {default['threads']} "
                       f"threads, {default['seconds']['0']:.1f} s and {default['seconds']['2']:.1f} s, since idle "
                       f"OpenMP threads spin (median of {found['repeats']}; benchmarks/threads.py).",
            "threads_table": table(found)}


if __name__ == "__main__":
    main()
