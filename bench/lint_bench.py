"""Benchmark: lint a large tree of real code and report files/s and peak memory, beside the cost
of only parsing the same files with libcst in the same number of processes.

    python bench/lint_bench.py [PATH] [--jobs N]

PATH defaults to the installed torchvision package. Not a test: numbers go in issue notes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def default_tree() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        sys.exit("torchvision is not installed: pass a PATH to lint")
    return Path(spec.origin).parent


def _parse(path: Path) -> int:
    import libcst as cst

    try:
        cst.parse_module(path.read_bytes())
    except Exception:
        return 0
    return 1


def parse_only(files: list[Path], jobs: int) -> float:
    start = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            list(pool.map(_parse, files, chunksize=max(1, len(files) // (jobs * 8))))
    else:
        for file in files:
            _parse(file)
    return time.perf_counter() - start


def lint_in_subprocess(tree: Path, jobs: int) -> tuple[float, int, float]:
    """Wall seconds, exit code and peak RSS (MiB, largest process) of `torchcheck lint`."""
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from torchcheck.config import load_config\n"
        "from torchcheck.engine import lint_paths\n"
        f"tree = Path({str(tree)!r})\n"
        "start = time.perf_counter()\n"
        f"result = lint_paths([tree], load_config(tree), jobs={jobs})\n"
        "elapsed = time.perf_counter() - start\n"
        "peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(elapsed, len(result.findings), peak / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    tree = args.path or default_tree()
    files = sorted(tree.rglob("*.py"))
    lines = sum(p.read_bytes().count(b"\n") for p in files)
    print(f"tree: {tree}\nfiles: {len(files)}, lines: {lines}, jobs: {args.jobs}")
    parse_seconds = parse_only(files, args.jobs)
    print(f"libcst parse only:  {parse_seconds:7.2f} s  ({len(files) / parse_seconds:7.1f} files/s)")
    seconds, findings, peak = lint_in_subprocess(tree, args.jobs)
    print(f"torchcheck lint:    {seconds:7.2f} s  ({len(files) / seconds:7.1f} files/s, {findings} findings,"
          f" peak RSS {peak:.0f} MiB)")
    print(f"lint / parse ratio: {seconds / parse_seconds:7.2f}")


if __name__ == "__main__":
    main()
