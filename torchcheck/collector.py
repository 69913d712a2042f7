"""Python's cycle collector during a lint run.

A run builds millions of libcst nodes and keeps many of them for a while (the held analyses, see
`analysis/project.py`). At the collector's pace, every node is scanned again each time it moves to
an older generation, and again by every full collection while it is alive: a fifth of the lint
time, for trees that hold no reference cycles at all. So during a run each tree is built with the
collector paused and then frozen (`gc.freeze()`), out of the collector's reach.

`freeze` also moves whatever else is alive at that moment, including the analyses built over the
trees, which do hold cycles. Those cycles are broken when the project drops an analysis
(`FileAnalysis.dispose`), so reference counting frees its tree at once: a full collection at each
drop scanned every analysis still held, a tenth of the time of a run over transformers. Everything
frozen is handed back to the collector when the run ends. A host process that freezes objects
itself (a pre-fork server) is left alone: its run collects as usual.

Trees are also built without libcst's per-node validation (`CSTNode.__post_init__`), a quarter of
the parse: the parser only builds valid nodes, and the check exists for nodes built by hand.
"""
from __future__ import annotations

import contextlib
import gc

import libcst as cst
from libcst._nodes.base import CSTNode

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


def _skip_validation(node: CSTNode) -> None:
    pass


@contextlib.contextmanager
def _unvalidated():
    validate = CSTNode.__post_init__
    CSTNode.__post_init__ = _skip_validation
    try:
        yield
    finally:
        CSTNode.__post_init__ = validate


def parse_module(source: bytes) -> cst.Module:
    if not _freezing:
        with _unvalidated():
            return cst.parse_module(source)
    enabled = gc.isenabled()
    gc.disable()
    try:
        with _unvalidated():
            return cst.parse_module(source)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
