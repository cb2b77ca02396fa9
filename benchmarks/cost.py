"""What each norm costs to train on this CPU (PROTOCOL2.md 5): milliseconds per training step and peak memory, per
norm, at batches of 8, 32 and 128, one thread, as the study's runs train.

    python benchmarks/cost.py --out results/cost.json     # the README's pick table's cost column
    python benchmarks/cost.py --rounds 1 --steps 2        # a quick check

Each (norm, batch) runs in a child process of its own (one thread): a warm-up of 5 steps, then `--rounds` rounds of
`--steps` steps (forward, NLL loss, backward, AdamW step on random images; the step's time does not depend on the
digits), the configurations interleaved round by round so that ratios compare runs made side by side. Peak memory is
the child's peak resident set minus that of a child which builds the same network and takes no step: what the steps
add. A 20-epoch run at batch B takes 20 x ceil(60,000 / B) steps; the table gives that run's minutes.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NORMS = "BLGN"
BATCHES = (8, 32, 128)


def child(norm: str, batch: int, steps: int) -> None:
    """`steps` timed steps of Net(norm) at `batch` after a warm-up (none with steps 0); print ms per step and peak RSS."""
    import torch

    from step import make_step
    from model import INPUT_SHAPE

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(batch, *INPUT_SHAPE), torch.randint(0, 10, (batch,))
    step = make_step(norm, "channels_last", "fp32", x, y)
    if steps:
        for _ in range(5):
            step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = 1000 * (time.perf_counter() - start) / max(steps, 1)
    print(json.dumps({"ms": ms, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(norm: str, batch: int, steps: int) -> dict:
    command = [sys.executable, __file__, "--child", norm, str(batch), str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per configuration and round")
    parser.add_argument("--out", type=Path, default=None, help="also save the summary as JSON (results/cost.json)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), int(args.child[2]))
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be at least 1, got {args.rounds}, {args.steps}")

    import records

    made_in = {**records.environment("cpu"), "threads": 1}  # at the start: the commit that measures
    configs = [(norm, batch) for batch in BATCHES for norm in NORMS]
    ms = {config: [] for config in configs}
    peak = {config: [] for config in configs}
    for round_ in range(args.rounds):
        for norm, batch in configs:
            run, idle = measure(norm, batch, args.steps), measure(norm, batch, 0)
            ms[(norm, batch)].append(run["ms"])
            peak[(norm, batch)].append(run["peak_mb"] - idle["peak_mb"])
            print(f"round {round_ + 1}: {norm} at batch {batch}: {run['ms']:.2f} ms / step", flush=True)
    summary = {"environment": made_in, "rounds": args.rounds, "steps": args.steps,
               "rows": [{"norm": norm, "batch": batch, "ms": statistics.median(ms[(norm, batch)]),
                         "step_mb": statistics.median(peak[(norm, batch)])} for norm, batch in configs]}
    print("\n" + table(summary))
    if args.out:
        records.write_json(args.out, summary)


def run_minutes(row: dict) -> float:
    """Minutes of a 20-epoch run's steps at the row's batch."""
    return 20 * math.ceil(60_000 / row["batch"]) * row["ms"] / 1000 / 60


def table(summary: dict) -> str:
    import records

    rows = [[r["norm"], r["batch"], f"{r['ms']:.2f}", f"{run_minutes(r):.1f}", f"{r['step_mb']:.0f}"]
            for r in summary["rows"]]
    return (f"{summary['environment']['cpu']}, one thread: median of {summary['rounds']} rounds of {summary['steps']} "
            "steps.\n\n" + records.markdown_table(
                ["norm", "batch", "ms / step", "a 20-epoch run's steps (minutes)", "memory the steps add (MB)"], rows))


if __name__ == "__main__":
    main()
