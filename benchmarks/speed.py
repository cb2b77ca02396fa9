"""Seconds per epoch (one training epoch + one test pass) of the standard pipeline against this project's.

    python benchmarks/speed.py --out results/speed.json   # full MNIST, 3 repeats: the README's table
    python benchmarks/speed.py --limit 2048    # a quick check on a subset

Pipelines: "standard" is torchvision MNIST with per-sample RandomRotation + ToTensor + Normalize and
DataLoader(batch_size=128, shuffle=True, num_workers=2), as most solutions of this exercise have it;
"project" is data.mnist_loaders (all digits in memory, augmentation on whole batches). Networks: this
project's Net("B") and a reference copy of the typical 8,008-parameter network. Both pipelines train with
utils.train, so the difference between them is the data path alone. Every configuration runs in a child
process of its own (for its peak memory), the configurations interleaved within each repeat so that the
ratios compare runs made side by side; the table gives medians over the repeats.
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

import data  # noqa: E402
import records  # noqa: E402
import utils  # noqa: E402

CONFIGS = [("standard", "typical"), ("standard", "project"), ("project", "typical"), ("project", "project")]
BATCH_SIZE = 128  # both pipelines
TEST_BATCH_SIZE = {"standard": 128, "project": 2000}  # the typical solution tests in training-size batches
LR = 0.01  # SGD, momentum 0.9: the schedule does not change the time of an epoch


def typical_net():
    """The typical 8,008-parameter network: 3x3 convolutions without padding, BN + dropout + ReLU after each."""
    import torch.nn as nn

    def block(cin, cout, k=3):
        return [nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.Dropout(0.05), nn.ReLU()]

    return nn.Sequential(
        *block(1, 8), *block(8, 8), *block(8, 8), nn.MaxPool2d(2),  # 28 -> 26 -> 24 -> 22 -> 11
        *block(8, 16), *block(16, 16), *block(16, 8, 1),  # 11 -> 9 -> 7
        *block(8, 32), *block(32, 16, 1),  # 7 -> 5
        nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 10, 1, bias=False), nn.Flatten(), nn.LogSoftmax(dim=1),
    )


def standard_loaders(root, limit):
    import torch
    from torchvision import datasets, transforms

    normalize = transforms.Normalize((data.MNIST_MEAN,), (data.MNIST_STD,))
    train = datasets.MNIST(root, train=True, transform=transforms.Compose(
        [transforms.RandomRotation(10, fill=0), transforms.ToTensor(), normalize]))
    test = datasets.MNIST(root, train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]))
    if limit:
        train, test = torch.utils.data.Subset(train, range(limit)), torch.utils.data.Subset(test, range(min(limit, 10000)))
    kwargs = dict(num_workers=2, pin_memory=torch.cuda.is_available())
    return (torch.utils.data.DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, **kwargs),
            torch.utils.data.DataLoader(test, batch_size=TEST_BATCH_SIZE["standard"], **kwargs))


def child(pipeline: str, network: str, root: str, limit: int | None) -> None:
    """One configuration: build everything, then time one training epoch plus one test pass; print JSON."""
    import torch

    from model import Net

    utils.set_seed(0)
    device = utils.get_device()
    if pipeline == "standard":
        train_loader, test_loader = standard_loaders(root, limit)
    else:
        train_loader, test_loader = data.mnist_loaders(root, device, BATCH_SIZE, TEST_BATCH_SIZE["project"], 0,
                                                        train_limit=limit, test_limit=limit and min(limit, 10000))
    model = (Net("B") if network == "project" else typical_net()).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    start = time.perf_counter()
    utils.train(model, train_loader, optimizer, device)
    utils.test(model, test_loader, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"seconds": time.perf_counter() - start, "device": device.type, "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("MNIST_ROOT", "data"), help="folder holding MNIST/raw")
    parser.add_argument("--limit", type=int, default=None, help="first N training digits (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also save the summary as JSON (results/speed.json)")
    parser.add_argument("--child", nargs=2, metavar=("PIPELINE", "NETWORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.root, args.limit)

    env = {**os.environ, "TQDM_DISABLE": "1"}
    results = {config: [] for config in CONFIGS}
    for repeat in range(args.repeats):
        for pipeline, network in CONFIGS:
            command = [sys.executable, __file__, "--child", pipeline, network, "--root", args.root]
            process = subprocess.Popen(command + (["--limit", str(args.limit)] if args.limit else []),
                                       stdout=subprocess.PIPE, env=env, text=True)
            output = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)
            if status:
                sys.exit(f"{pipeline}/{network} failed with status {status}")
            run = json.loads(output.strip().splitlines()[-1])
            results[(pipeline, network)].append({**run, "peak_mb": usage.ru_maxrss / 1024})
            print(f"repeat {repeat + 1}: {pipeline:8s} pipeline, {network:7s} network: {run['seconds']:6.1f} s", flush=True)

    first = results[CONFIGS[0]][0]
    summary = {"environment": {**records.environment(first["device"]), "threads": first["threads"]},
               "device": first["device"], "threads": first["threads"], "train_digits": args.limit or 60000,
               "repeats": args.repeats, "rows": [
                   {"pipeline": pipeline, "network": network,
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "peak_mb": max(r["peak_mb"] for r in runs)}
                   for (pipeline, network), runs in results.items()]}
    print("\n" + table(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


def table(summary: dict) -> str:
    """Markdown table of the medians, with the speed-up over the first row (standard pipeline, typical network)."""
    baseline = summary["rows"][0]["seconds"]
    rows = [[r["pipeline"], r["network"], f"{r['seconds']:.1f}", f"{baseline / r['seconds']:.2f}x", f"{r['peak_mb']:.0f}"]
            for r in summary["rows"]]
    return (f"Device {summary['device']}, {summary['threads']} threads, {summary['train_digits']:,} training digits, "
            f"median of {summary['repeats']} runs.\n\n"
            + records.markdown_table(["pipeline", "network", "seconds / epoch (train + test)", "speed-up", "peak memory (MB)"], rows))


if __name__ == "__main__":
    main()
