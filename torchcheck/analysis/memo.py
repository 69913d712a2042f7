"""Memoised evaluation that every linted file of a run shares, and that still gives each file the
findings it would get alone.

A module's analysis is built once per run and answers the questions of every file that imports it.
That is only sound if each memoised answer is a pure function of the project, whatever was asked
before it. Two cut-offs make an answer depend on how it was reached:

- the call-depth limit: an answer computed three calls deep stops sooner than the same answer asked
  at the top. It is kept per depth;
- recursion: `f` asked while `f` is being evaluated answers "unknown", so what encloses it depends on
  where the cycle was entered. Such answers are kept only for the evaluation that made them (the
  current linted file, or one `isolated` evaluation such as a module body).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    """An evaluation under way, and the cut-offs it met (see the module docstring)."""

    key: object
    depth_cut: bool = False
    recursion_cut: bool = False


class SharedMemo:
    def __init__(self) -> None:
        self._stack: list[_Entry] = []
        self._active: set = set()
        self._local: dict = {}

    def begin_file(self) -> None:
        """A new linted file: answers that depended on the previous one's questions are dropped."""
        self._stack, self._active, self._local = [], set(), {}

    @contextlib.contextmanager
    def isolated(self):
        """Evaluate as if nothing else were being evaluated, for results kept for the whole run (a
        module's body, a function's standalone evaluation): no enclosing evaluation can cut them."""
        saved = self._stack, self._active, self._local
        self._stack, self._active, self._local = [], set(), {}
        try:
            yield
        finally:
            self._stack, self._active, self._local = saved

    def recursion_cut(self) -> None:
        """The evaluation under way reached something still being evaluated, and saw it unfinished."""
        if self._stack:
            self._stack[-1].recursion_cut = True

    def depth_cut(self) -> None:
        if self._stack:
            self._stack[-1].depth_cut = True

    def get(self, table: dict, key, depth: int, compute: Callable, cut_value):
        """`table[key]`, computed by `compute()` the first time; `cut_value` when `key` is already
        being evaluated."""
        if key in table:
            return table[key]
        if (key, depth) in table:
            self.depth_cut()
            return table[key, depth]
        local = (id(table), key, depth)
        if local in self._local:
            self.recursion_cut()
            return self._local[local]
        active = (id(table), key)
        if active in self._active:
            self.recursion_cut()
            return cut_value
        entry = _Entry(key)
        self._stack.append(entry)
        self._active.add(active)
        try:
            result = compute()
        finally:
            self._stack.pop()
            self._active.discard(active)
        if entry.recursion_cut:
            self._local[local] = result
        elif entry.depth_cut:
            table[key, depth] = result
        else:
            table[key] = result
        if self._stack:
            parent = self._stack[-1]
            parent.depth_cut |= entry.depth_cut
            parent.recursion_cut |= entry.recursion_cut
        return result
