"""Milliseconds per training step of Net, by memory layout and precision: the levers behind the model's defaults.

    python benchmarks/step.py --out results/step.json     # the README's table
    python benchmarks/step.py --rounds 2 --steps 5        # a quick check

One process, one batch of random 28x28 images, every (norm, layout, precision) configuration built up front and
timed in interleaved rounds of `--steps` steps (forward, NLL loss, backward, AdamW step), so that the ratios
compare runs made side by side on a shared machine; the table gives the median over rounds. "nchw" is PyTorch's
default layout, "channels_last" is what Net uses; "bf16" runs the forward pass under CPU/CUDA autocast.
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

import utils  # noqa: E402
from model import INPUT_SHAPE, Net  # noqa: E402

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
PRECISIONS = ("fp32", "bf16")


def make_step(norm: str, layout: str, precision: str, x: torch.Tensor, y: torch.Tensor):
    """A closure running one training step of a fresh Net(norm) in the given layout and precision."""
    torch.manual_seed(0)
    model = Net(norm).to(x.device, memory_format=LAYOUTS[layout])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.nll_loss(model(x), y)
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
    parser.add_argument("--out", type=Path, default=None, help="also save the summary as JSON (results/step.json)")
    args = parser.parse_args()

    device = utils.get_device()
    x = torch.randn(args.batch_size, *INPUT_SHAPE, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    configs = [(n, l, p) for n in args.norms for l in LAYOUTS for p in PRECISIONS]
    steps = {config: make_step(*config, x, y) for config in configs}
    times = {config: [] for config in configs}
    for step in steps.values():  # warm-up: kernel selection, allocator
        step()
    for _ in range(args.rounds):
        for config, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[config].append(1000 * (time.perf_counter() - start) / args.steps)
    summary = {"environment": utils.environment(device),
               "device": device.type, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
               "rounds": args.rounds, "steps": args.steps,
               "rows": [{"norm": n, "layout": l, "precision": p, "ms": statistics.median(times[(n, l, p)])}
                        for n, l, p in configs]}
    print(table(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


def table(summary: dict) -> str:
    """Markdown table of the medians, each row's speed-up over its norm's nchw fp32 step."""
    base = {r["norm"]: r["ms"] for r in summary["rows"] if (r["layout"], r["precision"]) == ("nchw", "fp32")}
    rows = [[r["norm"], r["layout"], r["precision"], f"{r['ms']:.1f}", f"{base[r['norm']] / r['ms']:.2f}x"]
            for r in summary["rows"]]
    return (f"Device {summary['device']}, {summary['threads']} threads, batch {summary['batch_size']}, median of "
            f"{summary['rounds']} rounds of {summary['steps']} steps.\n\n"
            + utils.markdown_table(["norm", "layout", "precision", "ms / step", "speed-up"], rows))


if __name__ == "__main__":
    main()
