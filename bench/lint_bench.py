"""Benchmark: lint large trees of real code cold (no cache yet), warm (cache), after a core module
changed (a comment appended, then a function's body edited) and a leaf file's function edited, and
one file of the tree alone; report files/s and peak memory beside the cost of only
parsing the same files with libcst in the same number of processes (before and after the cold run,
averaged, as a shared machine's speed drifts; the warm run is the best of three); where installed, run TorchFix and
torch-preflight on the same tree in the same run and print the ratios. torch's own source tree gets
one cold run, for its peak memory. Last, a script linted alone, beside Python's own start-up.

    python bench/lint_bench.py [PATH ...] [--jobs N] [--tools DIR]

PATH defaults to the installed torchvision, transformers and torch packages (a row is skipped where
the package is absent); each tree is copied to a temporary folder so that the cache and the changed
files never touch it. Not a test: numbers go in issue notes.
"""
from __future__ import annotations

import argparse
import ast
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# For each default tree, a module most files import and a leaf file nothing imports.
DEFAULT_TREES = {"torchvision": ("models/_utils.py", "models/alexnet.py"),
                 "transformers": ("modeling_utils.py", "models/bert/modeling_bert.py"),
                 "torch": None}  # cold run only: its peak memory


def default_trees() -> list[Path]:
    import importlib.util

    trees = []
    for package in DEFAULT_TREES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            print(f"{package}: not installed, row skipped")
            continue
        trees.append(Path(spec.origin).parent)
    return trees


def touch(file: Path) -> str:
    """A comment appended: the file changed, none of its parts did."""
    with open(file, "a", encoding="utf-8") as handle:
        handle.write("\n# changed\n")
    return "comment appended"


def edit_body(file: Path) -> str:
    """A statement added at the start of the file's first top-level function."""
    source = file.read_text(encoding="utf-8")
    function = next(s for s in ast.parse(source).body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)))
    first = function.body[0]
    lines = source.splitlines(keepends=True)
    lines.insert(first.lineno - 1, " " * first.col_offset + "_edited = 1\n")
    file.write_text("".join(lines), encoding="utf-8")
    return f"statement added to {function.name}()"


def _parse(path: Path) -> int:
    import libcst as cst

    try:
        cst.parse_module(path.read_bytes())
    except Exception:  # noqa: BLE001 - a benchmark of parsing only
        return 0
    return 1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_only(files: list[Path], jobs: int) -> tuple[float, float]:
    """Wall and CPU seconds of parsing every file once with libcst, in `jobs` processes."""
    start, cpu = time.perf_counter(), _children_cpu()
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_parse, files, chunksize=max(1, len(files) // (jobs * 8))))
    return time.perf_counter() - start, _children_cpu() - cpu


def timed(command: list[str], cwd: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds (all its processes), peak RSS (MiB, largest process of the run) and
    exit code of a command. On a shared machine the CPU seconds are the steadier figure."""
    wrapper = [sys.executable, "-c", (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "elapsed = time.perf_counter() - start\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code)\n"), *command]
    out = subprocess.run(wrapper, capture_output=True, text=True, cwd=cwd, check=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]), int(out[3])


def memory_row(source: Path, jobs: int) -> None:
    lint = [sys.executable, "-P", "-m", "torchcheck", "lint", str(source), "--exit-zero", "--no-cache", "--jobs", str(jobs)]
    files = sum(1 for _ in source.rglob("*.py"))
    seconds, cpu, peak, _ = timed(lint, Path(tempfile.gettempdir()))
    print(f"\ntree: {source}\nfiles: {files}, jobs: {jobs}\n"
          f"torchcheck cold          {seconds:7.2f} s  (cpu {cpu:.1f} s, peak {peak:.0f} MiB of the largest process)")


def bench_tree(source: Path, jobs: int, tools_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / source.name
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "*.dll"))
        files = sorted(tree.rglob("*.py"))
        lines = sum(p.read_bytes().count(b"\n") for p in files)
        print(f"\ntree: {source}\nfiles: {len(files)}, lines: {lines}, jobs: {jobs}")
        before, before_cpu = parse_only(files, jobs)
        # -P: the tree must not shadow the standard library (torch has signal/ and multiprocessing/ packages)
        lint = [sys.executable, "-P", "-m", "torchcheck", "lint", ".", "--exit-zero", "--jobs", str(jobs)]
        cold, cold_cpu, peak, _ = timed(lint, tree)  # no cache yet: a first run, which also fills it
        # Parsing again after the cold run: a shared machine's speed drifts within minutes, and the
        # ratios are taken against the mean of both.
        after, after_cpu = parse_only(files, jobs)
        parse_seconds, parse_cpu = (before + after) / 2, (before_cpu + after_cpu) / 2
        print(f"libcst parse only        {parse_seconds:7.2f} s  ({len(files) / parse_seconds:6.1f} files/s, cpu {parse_cpu:.1f} s;"
              f" {before:.2f} s before the cold run, {after:.2f} s after)")
        print(f"torchcheck cold          {cold:7.2f} s  ({len(files) / cold:6.1f} files/s, peak {peak:.0f} MiB,"
              f" {cold / parse_seconds:.2f}x parsing; cpu {cold_cpu:.1f} s, {cold_cpu / parse_cpu:.2f}x parsing)")
        warm, warm_cpu, peak, _ = min(timed(lint, tree) for _ in range(3))
        print(f"torchcheck warm (cache)  {warm:7.2f} s  (best of 3; cpu {warm_cpu:.2f} s, peak {peak:.0f} MiB)")
        core, leaf = DEFAULT_TREES.get(source.name) or (None, None)
        for label, changed, edit in (("core module", core, touch), ("core module", core, edit_body),
                                     ("leaf file", leaf, edit_body)):
            file = tree / changed if changed else files[len(files) // 2]
            what = edit(file)
            seconds, cpu, _, _ = timed(lint, tree)
            print(f"one {label} changed  {seconds:7.2f} s  (cpu {cpu:.2f} s; {file.relative_to(tree)}: {what})")
        one = tree / leaf if leaf else files[0]
        alone, alone_cpu, _, _ = timed([sys.executable, "-P", "-m", "torchcheck", "lint", str(one), "--exit-zero",
                                        "--no-cache"], tree)
        print(f"one file alone, cold     {alone:7.2f} s  (cpu {alone_cpu:.2f} s; {one.relative_to(tree)})")
        tools = {"torchfix": [".", "--select", "ALL"], "torch-preflight": ["check", "."]}
        for tool, tool_args in tools.items():
            executable = shutil.which(tool, path=str(tools_dir) if tools_dir else None)
            if executable is None:
                print(f"{tool:24} not installed")
                continue
            seconds, _, peak, _ = timed([executable, *tool_args], tree)
            print(f"{tool:24} {seconds:7.2f} s  (peak {peak:.0f} MiB; torchcheck cold is {seconds / cold:.1f}x faster)")


def script_row() -> None:
    """A script linted alone, cold (no cache), beside what starting Python and importing libcst cost."""
    import compileall
    import importlib.util

    # pip compiles an installed package's bytecode; a checkout's may be stale, and with
    # PYTHONDONTWRITEBYTECODE set, every run would compile the changed modules again.
    compileall.compile_dir(Path(importlib.util.find_spec("torchcheck").origin).parent, quiet=1)
    script = Path(__file__).resolve().parent.parent / "fixtures" / "static" / "lenet_buggy.py"
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / script.name
        shutil.copy(script, copy)
        lint = [sys.executable, "-P", "-m", "torchcheck", "lint", copy.name, "--exit-zero", "--no-cache"]
        alone = min(timed(lint, copy.parent)[0] for _ in range(3))
        python = min(timed([sys.executable, "-c", "pass"], copy.parent)[0] for _ in range(3))
        libcst = min(timed([sys.executable, "-c", "import libcst"], copy.parent)[0] for _ in range(3))
    print(f"\none script alone, cold   {alone:7.3f} s  (best of 3; {script.name}; starting Python takes {python:.3f} s,"
          f" and importing libcst {libcst - python:.3f} s more)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tools", type=Path, help="a folder holding torchfix / torch-preflight executables")
    args = parser.parse_args()
    for source in [path.resolve() for path in args.paths] or default_trees():  # rows run in other folders
        if source.name in DEFAULT_TREES and DEFAULT_TREES[source.name] is None:
            memory_row(source, args.jobs)
        else:
            bench_tree(source, args.jobs, args.tools)
    script_row()


if __name__ == "__main__":
    main()
