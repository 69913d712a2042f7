"""A lean walk over libcst trees: the fields that can hold code, in source order, skipping
whitespace, parentheses and punctuation. Several times cheaper than libcst's visitor protocol,
which calls attribute hooks for every field of every node."""
from __future__ import annotations

import dataclasses
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
STATEMENT_TYPES = frozenset(all_subclasses(cst.BaseSmallStatement) | all_subclasses(cst.BaseCompoundStatement))
_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        names = [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_CODE and "whitespace" not in f.name]
        first = [n for n in _FIRST.get(cls.__name__, ()) if n in names]
        fields = _FIELDS[cls] = tuple(first + [n for n in names if n not in first])
    return fields


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    out = []
    for name in _fields(type(node)):
        value = getattr(node, name)
        if type(value) in NODE_TYPES:
            out.append(value)
        elif type(value) in (tuple, list):
            out.extend(v for v in value if type(v) in NODE_TYPES)
    return out


def walk(node: cst.CSTNode, on_visit: Callable[[cst.CSTNode], None], on_leave: Callable[[cst.CSTNode], None]) -> None:
    on_visit(node)
    for child in children(node):
        walk(child, on_visit, on_leave)
    on_leave(node)


def descendants(node: cst.CSTNode, prune: Callable[[cst.CSTNode], bool] = lambda n: False) -> Iterator[cst.CSTNode]:
    """Every node below `node` in source order, not descending into nodes for which `prune` is true."""
    stack = list(reversed(children(node)))
    while stack:
        current = stack.pop()
        yield current
        if not prune(current):
            stack.extend(reversed(children(current)))
