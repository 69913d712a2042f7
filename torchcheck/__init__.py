"""torchcheck: find the PyTorch training bugs that fail silently.

The static linter needs only libcst; `watch` (the runtime harness) imports torch when used.
"""
from __future__ import annotations

__version__ = "0.3.0"

__all__ = ["IndexCheckError", "Run", "TorchcheckError", "__version__", "lint_paths", "watch"]
_RUNTIME = {"watch", "Run", "TorchcheckError", "IndexCheckError"}


def __getattr__(name: str):
    """`torchcheck.watch` and friends import the runtime harness (and torch) only when used."""
    if name in _RUNTIME:
        from torchcheck import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'torchcheck' has no attribute {name!r}")


def load_ipython_extension(shell) -> None:
    """`%load_ext torchcheck` in Jupyter or IPython: the `%torchcheck on|off` and `%%torchcheck` magics."""
    from torchcheck.runtime.jupyter import load

    load(shell)


def unload_ipython_extension(shell) -> None:
    from torchcheck.runtime.jupyter import unload

    unload(shell)


def lint_paths(paths, config=None, jobs=None):
    """Lint files or folders; returns a `LintResult` with `.findings`."""
    from pathlib import Path

    from torchcheck.config import load_config
    from torchcheck.engine import lint_paths as _lint_paths

    paths = [Path(p) for p in paths]
    config = config or load_config(paths[0] if paths else Path("."))
    return _lint_paths(paths, config, jobs)
