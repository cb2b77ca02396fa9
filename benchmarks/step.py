"""Milliseconds per training step of Net, by memory layout, precision and torch.compile: the levers behind its defaults.

    python benchmarks/step.py --out results/step.json     # the README's table
    python benchmarks/step.py --rounds 2 --steps 5        # a quick check

One process, one batch of random 28x28 images, every (norm, layout, precision) configuration built up front and
timed in interleaved rounds of `--steps` steps (forward, NLL loss, backward, AdamW step), so that the ratios
compare runs made side by side on a shared machine; the table gives the median over rounds. "nchw" is PyTorch's
default layout, "channels_last" is what Net uses; "bf16" runs the forward pass under CPU/CUDA autocast; "compiled"
is channels-last float32 with the model under torch.compile (default mode), whose compilation is timed on its own:
the seconds of its first steps beyond an eager step's. A 20-epoch run is 20 x 469 steps, so the table also gives
what a run's steps cost end to end, compilation included.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import records  # noqa: E402
import utils  # noqa: E402
from model import INPUT_SHAPE, Net  # noqa: E402

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
PRECISIONS = ("fp32", "bf16")
CONFIGS = [(l, p) for l in LAYOUTS for p in PRECISIONS] + [("channels_last", "compiled")]


RUN_STEPS = 20 * 469  # one 20-epoch run of the notebook: 60,000 digits in batches of 128


def make_step(norm: str, layout: str, precision: str, x: torch.Tensor, y: torch.Tensor):
    """A closure running one training step of a fresh Net(norm) in the given layout and precision ("compiled":
    float32 under torch.compile)."""
    torch.manual_seed(0)
    model = Net(norm).to(x.device, memory_format=LAYOUTS[layout])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if precision == "compiled" else model

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.nll_loss(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", default="BLG")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per configuration and round")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's; the runs use 1)")
    parser.add_argument("--out", type=Path, default=None, help="also save the summary as JSON (results/step.json)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = utils.get_device()
    x = torch.randn(args.batch_size, *INPUT_SHAPE, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    configs = [(n, l, p) for n in args.norms for l, p in CONFIGS]
    steps = {config: make_step(*config, x, y) for config in configs}
    times = {config: [] for config in configs}
    first = {}
    for config, step in steps.items():  # warm-up: kernel selection, allocator, and compilation where compiled
        start = time.perf_counter()
        for _ in range(3):
            step()
        first[config] = time.perf_counter() - start
    for _ in range(args.rounds):
        for config, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[config].append(1000 * (time.perf_counter() - start) / args.steps)
    summary = {"environment": records.environment(device),
               "device": device.type, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
               "rounds": args.rounds, "steps": args.steps,
               "rows": [{"norm": n, "layout": l, "precision": p, "ms": statistics.median(times[(n, l, p)]),
                         "first_seconds": first[(n, l, p)]} for n, l, p in configs]}
    print(table(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


def table(summary: dict) -> str:
    """Markdown table of the medians, each row's speed-up over its norm's nchw fp32 step, and a 20-epoch run's steps
    end to end: RUN_STEPS steps plus, for a compiled model, its compilation (first steps beyond three eager ones)."""
    base = {r["norm"]: r["ms"] for r in summary["rows"] if (r["layout"], r["precision"]) == ("nchw", "fp32")}
    eager = {r["norm"]: r for r in summary["rows"] if (r["layout"], r["precision"]) == ("channels_last", "fp32")}

    def run_minutes(r: dict) -> float:
        compile_s = r["first_seconds"] - eager[r["norm"]]["first_seconds"] if r["precision"] == "compiled" else 0.0
        return (compile_s + RUN_STEPS * r["ms"] / 1000) / 60

    rows = [[r["norm"], r["layout"], r["precision"], f"{r['ms']:.1f}", f"{base[r['norm']] / r['ms']:.2f}x",
             f"{run_minutes(r):.2f}"] for r in summary["rows"]]
    return (f"Device {summary['device']}, {summary['threads']} threads, batch {summary['batch_size']}, median of "
            f"{summary['rounds']} rounds of {summary['steps']} steps.\n\n"
            + records.markdown_table(["norm", "layout", "precision", "ms / step", "speed-up",
                                    f"a run's {RUN_STEPS:,} steps, compilation included (minutes)"], rows))


if __name__ == "__main__":
    main()
