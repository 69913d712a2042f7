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

Before the first tree, a run loads the linter: libcst's ~250 node classes, rich, the rules, some
300,000 objects and no garbage. The collector stays paused until then, and the first tree's freeze
takes them too. A run that parses nothing here (answered from the cache, or the parent of a
parallel run, whose workers parse) stays paused: it holds what it builds until it ends. When the
process exits right after the run (the command line), what the run froze stays frozen, out of
the reach of the final collection at exit. Without these two, the collector's scans of the loaded
modules are a tenth of a one-file lint.

Trees are also built without libcst's per-node validation (`CSTNode.__post_init__`), a quarter of
the parse: the parser only builds valid nodes, and the check exists for nodes built by hand.
"""
from __future__ import annotations

import contextlib
import gc

# Outside the frozen trees, a run allocates many short-lived objects and few cycles: collect less often.
THRESHOLD = (20_000, 20, 20)

_freezing = False
_collecting = True  # between parses; off in a run whose host process turned the collector off


@contextlib.contextmanager
def lint_run(process_exits: bool = False):
    """The collector's settings for one lint run in this process, which may exit right after it."""
    global _freezing, _collecting
    if _freezing:  # nested: the outer run owns the settings
        yield
        return
    saved, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(*THRESHOLD)
    _freezing, _collecting = gc.get_freeze_count() == 0, enabled
    if _freezing:
        gc.disable()
    try:
        yield
    finally:
        if _freezing and not process_exits:
            gc.unfreeze()
        _freezing = False
        gc.set_threshold(*saved)
        if enabled:
            gc.enable()


def start_worker() -> None:
    """A worker process of a parallel run: its whole life is one run."""
    global _freezing, _collecting
    gc.set_threshold(*THRESHOLD)
    _freezing, _collecting = gc.get_freeze_count() == 0, True
    if _freezing:
        gc.disable()  # loading the rules: the first tree enables it


def _skip_validation(node) -> None:
    pass


@contextlib.contextmanager
def _unvalidated():
    from libcst._nodes.base import CSTNode

    validate = CSTNode.__post_init__
    CSTNode.__post_init__ = _skip_validation
    try:
        yield
    finally:
        CSTNode.__post_init__ = validate


def parse_module(source: bytes):
    """The libcst tree of `source`, a `libcst.Module`."""
    import libcst as cst  # here, so that a run can pause the collector before libcst loads

    if not _freezing:
        with _unvalidated():
            return cst.parse_module(source)
    gc.disable()
    try:
        with _unvalidated():
            return cst.parse_module(source)
    finally:
        gc.freeze()
        if _collecting:
            gc.enable()
