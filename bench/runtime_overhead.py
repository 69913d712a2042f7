"""Benchmark: per-step cost of the runtime harness on the reference models, beside PyTorch's
anomaly mode, in the same run.

    python bench/runtime_overhead.py [--steps 100] [--repeats 21] [--models lenet,mnist_mlp,...] [--device cuda]

Each configuration trains on the same batch; configurations are interleaved round by round and
the best of `repeats` timings of `steps` steps is reported, with one intra-op thread by default. Not a test: numbers go in issue notes."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reference_models import MODELS  # noqa: E402

import torchcheck  # noqa: E402


def measure(name: str, steps: int, repeats: int, device: str = "cpu") -> dict[str, float]:
    """Seconds per step for each configuration: the best of `repeats` rounds, interleaved round by
    round so that machine noise and drift hit every configuration alike (on a shared VM the minimum
    is the stable statistic for a small fixed cost)."""
    build, shape, classes = MODELS[name]
    torch.manual_seed(0)
    model = build().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    inputs = torch.randn(32, *shape, device=device)
    labels = torch.randint(0, classes, (32,), device=device)

    def run(count):
        for _ in range(count):
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            loss.item()

    contexts = {
        "plain": contextlib.nullcontext,
        "harness": lambda: torchcheck.watch(model, optimizer),
        "anomaly": lambda: torch.autograd.detect_anomaly(check_nan=True),
    }
    timings: dict[str, list[float]] = {key: [] for key in contexts}
    for round_ in range(repeats + 1):  # round 0 warms up
        for key, context in contexts.items():
            start = time.perf_counter()
            with context():
                run(steps)
            if device != "cpu":
                torch.cuda.synchronize()
            if round_:
                timings[key].append((time.perf_counter() - start) / steps)
    return {key: min(values) for key, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--models", default=",".join(sorted(MODELS)))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1 keeps timings steady)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device != "cpu" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch 32, {args.steps} steps x {args.repeats}")
    print(f"{'model':16} {'plain ms':>9} {'harness ms':>11} {'overhead':>9} {'anomaly ms':>11} {'anomaly':>8}")
    import warnings

    warnings.filterwarnings("ignore", message=".*Anomaly Detection.*")
    for name in args.models.split(","):
        times = measure(name, args.steps, args.repeats, args.device)
        plain, harness, anomaly = times["plain"], times["harness"], times["anomaly"]
        print(f"{name:16} {plain * 1e3:9.2f} {harness * 1e3:11.2f} {100 * (harness / plain - 1):8.1f}%"
              f" {anomaly * 1e3:11.2f} {100 * (anomaly / plain - 1):7.0f}%")


if __name__ == "__main__":
    main()
