"""Python's cycle collector during a lint run.

A run builds millions of libcst nodes and keeps many of them for a while (the held analyses, see
`analysis/project.py`). At the collector's pace, every node is scanned again each time it moves to
an older generation, and again by every full collection while it is alive: a fifth of the lint
time, for trees that hold no reference cycles at all. So during a run each tree is built with the
collector paused and then frozen (`gc.freeze()`), out of the collector's reach.

`freeze` also moves whatever else is alive at that moment, including the analyses built over the
trees, which do hold cycles. All of it is handed back to the collector when the held analyses are
dropped (`release`) and when the run ends, so the memory of a run stays bounded as before. A host
process that freezes objects itself (a pre-fork server) is left alone: its run collects as usual.
"""
from __future__ import annotations

import contextlib
import gc

import libcst as cst

# Outside the frozen trees, a run allocates many short-lived objects and few cycles: collect less often.
THRESHOLD = (20_000, 20, 20)

_freezing = False


@contextlib.contextmanager
def lint_run():
    """The collector's settings for one lint run in this process."""
    global _freezing
    if _freezing:  # nested: the outer run owns the settings
        yield
        return
    saved = gc.get_threshold()
    gc.set_threshold(*THRESHOLD)
    _freezing = gc.get_freeze_count() == 0
    try:
        yield
    finally:
        if _freezing:
            gc.unfreeze()
        _freezing = False
        gc.set_threshold(*saved)


def start_worker() -> None:
    """A worker process of a parallel run: its whole life is one run."""
    global _freezing
    gc.set_threshold(*THRESHOLD)
    _freezing = gc.get_freeze_count() == 0


def parse_module(source: bytes) -> cst.Module:
    if not _freezing:
        return cst.parse_module(source)
    enabled = gc.isenabled()
    gc.disable()
    try:
        return cst.parse_module(source)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def release() -> None:
    """The held analyses were dropped: let the collector reclaim them and what was frozen with them."""
    if _freezing:
        gc.unfreeze()
        gc.collect()
