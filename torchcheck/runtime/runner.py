"""`torchcheck run script.py args...` and `torchcheck run -m pkg.train args...`: run unmodified
code under the harness, as `python script.py args...` or `python -m pkg.train args...` would
(sys.argv, __main__, sys.path[0], exit code), and report afterwards, also when the code raises."""
from __future__ import annotations

import importlib.util
import os
import runpy
import sys
import traceback
from pathlib import Path


class TargetNotFound(Exception):
    """The script or module to run does not exist."""


def find_module(name: str) -> None:
    """Raise TargetNotFound unless `python -m name` would find something to run."""
    sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:  # a package runs its __main__
            spec = importlib.util.find_spec(f"{name}.__main__")
    except (ImportError, ValueError) as exc:
        raise TargetNotFound(f"cannot find module `{name}`: {exc}") from None
    finally:
        sys.path.pop(0)
    if spec is None:
        raise TargetNotFound(f"no module named `{name}`")


def run_target(target: str, argv: list[str], mode: str = "collect", select=(), ignore=(), module: bool = False):
    """Run a script (or with `module`, a module as `python -m` does) under `watch()`; returns the
    exit code and the Run with its findings."""
    from torchcheck.runtime import watch

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [target, *argv]  # for a module, runpy puts its file in argv[0]
    sys.path.insert(0, os.getcwd() if module else str(Path(target).resolve().parent))
    exit_code = 0
    run = watch(mode=mode, select=select, ignore=ignore)
    try:
        with run:
            if module:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # the code's own failure (or mode="raise"): show it, still report
        traceback.print_exc()
        exit_code = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return exit_code, run


def run_script(script: Path, argv: list[str], mode: str = "collect", select=(), ignore=()) -> tuple[int, list]:
    """Run `script` under `watch()`; returns the script's exit code and the findings."""
    exit_code, run = run_target(str(script), argv, mode, select, ignore)
    return exit_code, run.findings
