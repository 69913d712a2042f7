"""A lean walk over libcst trees: the fields that can hold code, in source order, skipping
whitespace, parentheses and punctuation. Several times cheaper than libcst's visitor protocol,
which calls attribute hooks for every field of every node."""
from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterator

import libcst as cst

_NOT_CODE = frozenset({"lpar", "rpar", "leading_lines", "lines_after_decorators", "header", "footer", "newline",
                       "comma", "semicolon", "equal", "dot", "operator", "star", "colon", "default_indent",
                       "default_newline", "encoding", "has_trailing_newline", "indent", "lbracket", "rbracket",
                       "lbrace", "rbrace", "asynchronous", "first_line", "empty_lines",
                       "walrus", "arrow", "star_tok"})
# Fields visited first, so that a walk stays in source order (decorators and bases precede bodies).
_FIRST = {"FunctionDef": ("decorators", "name", "params", "returns"), "ClassDef": ("decorators", "name", "bases", "keywords")}


def all_subclasses(cls: type) -> set[type]:
    found = set()
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


NODE_TYPES = frozenset(all_subclasses(cst.CSTNode))
# Code whose body runs at another time than the code around it. Compared by type: libcst's classes
# are ABCs, and isinstance() on them is slow on the paths that test every node of a tree.
SCOPE_TYPES = frozenset({cst.FunctionDef, cst.Lambda, cst.ClassDef})
STATEMENT_TYPES = frozenset(all_subclasses(cst.BaseSmallStatement) | all_subclasses(cst.BaseCompoundStatement))
_FIELDS: dict[type, tuple[str, ...]] = {}
_GETTERS: dict[type, Callable[[cst.CSTNode], object]] = {}
_ONE_FIELD: set[type] = set()


def _fields(cls: type) -> tuple[str, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        names = [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_CODE and "whitespace" not in f.name]
        first = [n for n in _FIRST.get(cls.__name__, ()) if n in names]
        fields = _FIELDS[cls] = tuple(first + [n for n in names if n not in first])
    return fields


def _getter(cls: type) -> Callable[[cst.CSTNode], object]:
    """Reads a node type's code fields at once: a tuple of their values, or with one field its value."""
    fields = _fields(cls) or ("__class__",)  # no code field: a value that is never a node
    if len(fields) == 1:
        _ONE_FIELD.add(cls)
    getter = _GETTERS[cls] = operator.attrgetter(*fields)
    return getter


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    cls = type(node)
    values = (_GETTERS.get(cls) or _getter(cls))(node)
    if cls in _ONE_FIELD:
        values = (values,)
    out = []
    for value in values:
        kind = type(value)
        if kind in NODE_TYPES:
            out.append(value)
        elif kind is tuple or kind is list:  # a sequence field holds only nodes
            out.extend(value)
    return out


def walk(node: cst.CSTNode, on_visit: Callable[[cst.CSTNode], None], on_leave: Callable[[cst.CSTNode], None]) -> None:
    on_visit(node)
    for child in children(node):
        walk(child, on_visit, on_leave)
    on_leave(node)


def descendants(node: cst.CSTNode, prune: Callable[[cst.CSTNode], bool] | None = None) -> Iterator[cst.CSTNode]:
    """Every node below `node` in source order, not descending into nodes for which `prune` is true."""
    stack = children(node)
    stack.reverse()
    while stack:
        current = stack.pop()
        yield current
        if prune is None or not prune(current):
            below = children(current)
            if below:
                below.reverse()
                stack.extend(below)
