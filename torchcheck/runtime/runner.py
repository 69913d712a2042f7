"""`torchcheck run script.py args...`: run an unmodified script under the harness, as `python
script.py args...` would (sys.argv, __main__, sys.path[0], exit code), and report afterwards, also
when the script raises."""
from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path


def run_script(script: Path, argv: list[str], mode: str = "collect", select=(), ignore=()) -> tuple[int, list]:
    """Run `script` under `watch()`; returns the script's exit code and the findings."""
    from torchcheck.runtime import TorchcheckError, watch

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.resolve().parent))
    exit_code = 0
    run = watch(mode=mode, select=select, ignore=ignore)
    try:
        with run:
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except TorchcheckError:
        traceback.print_exc()
        exit_code = 1
    except BaseException:  # the script's own failure: show it, still report
        traceback.print_exc()
        exit_code = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return exit_code, run.findings
