"""A module that other files ask about, parsed in pieces: its own level at once, each top-level
function and class the first time a question reads it, and each method of a class when a question
reads that method.

A linted file asks few things of each module it imports: whether a name is a model class, what
a helper returns, what a base class's `__init__` sets. Those answers read a small part of a
neighbour (in transformers, BERT's model file reaches 25 modules, and of `PreTrainedModel`, 4,000
lines and 96 methods, it reads 29), so parsing only what is read is most of the cost of re-linting
one edited file.

`cut` replaces each top-level function and class by a stub of the same name and kind that keeps
the imports inside it (an import anywhere names things for the whole module); a class's piece
has its methods cut out in turn. Each tree keeps a `LineMap` to the file's lines. The skeleton
answers every module-level question as the whole module would. A piece is parsed alone behind a
two-line `if` block indented like the module (a method inside a `class _:` line as well), so that
libcst records its indentation as it would in the whole file; `whole` and `whole_class` put the
pieces back in place of the stubs, node for node the tree of the whole file.

Only what can be cut exactly is cut: a name defined once in its block and not its first statement,
with nothing but empty lines and comments at its own indentation between it and its neighbours,
in a UTF-8 file with `\\n` line ends.
"""
from __future__ import annotations

import ast
import re
import sys
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

import libcst as cst

from torchcheck import collector
from torchcheck.analysis.units import block_end, nested_imports

_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]", re.MULTILINE)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_LAST = sys.maxsize


# Where a tree's lines are in the file: (its first line of a run, what to add to it) for each run of
# lines that keep their distance, in order.
LineMap = tuple[tuple[int, int], ...]


@dataclass
class Piece:
    """A top-level function or class (or a method) cut out of its module, to be parsed alone."""

    text: bytes  # the padding `if` block, then the statement with the comments above it
    lines: LineMap
    methods: dict[str, Piece] = field(default_factory=dict)  # a class's, cut out of `text` in turn
    code: str = ""  # a class's whole text, without the padding


@dataclass
class Cut:
    """A module cut into its skeleton (its own level) and the pieces its stubs stand for."""

    skeleton: bytes
    lines: LineMap  # of the skeleton
    indent: bytes  # the module's, which its skeleton must keep
    pieces: dict[str, Piece]  # by the top-level name the statement defines


def plan(source: bytes) -> dict:
    """Where a module is cut, as JSON-ready data: its indentation, and for each piece its name, first
    line, first line with the comments above it, last line and stub, and for a class the margin of its
    body and the same for each method piece. Empty if nothing can be cut exactly. Finding the places
    takes Python's parser; a cache keeps them (`cut` from a plan needs none)."""
    if b"\r" in source or source.startswith(b"\xef\xbb\xbf") or _COOKIE.search(b"\n".join(source.split(b"\n", 2)[:2])):
        return {}
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    lines = source.splitlines(keepends=True)
    indent = _first_indent(tree, lines)
    if indent is None:
        return {}
    cuts = []
    for stmt, before, end in _cuttable(tree.body, lines, b""):
        stub = b"".join(_stub(stmt, lines, indent)).decode()
        if isinstance(stmt, ast.ClassDef):
            margin = _margin(lines[stmt.body[0].lineno - 1])
            methods = [[method.name, _first_line(method), method_before, method_end]
                       for method, method_before, method_end in _cuttable(stmt.body, lines, margin)
                       if not isinstance(method, ast.ClassDef)]
            cuts.append([stmt.name, _first_line(stmt), before, end, stub, margin.decode(), methods])
        else:
            cuts.append([stmt.name, _first_line(stmt), before, end, stub, None, None])
    return {"indent": indent.decode(), "cuts": cuts} if cuts else {}


def cut(source: bytes, where: dict | None = None) -> Cut | None:
    """The skeleton and pieces of a module, cut as `plan` (given, or found now) says; None if nothing
    can be cut exactly."""
    where = plan(source) if where is None else where
    if not where:
        return None
    lines = source.splitlines(keepends=True)
    indent = where["indent"].encode()
    padding = [b"if 1:\n", indent + b"pass\n"]
    stubs: list[tuple[int, int, list[bytes]]] = []
    pieces: dict[str, Piece] = {}
    for name, first, before, end, stub, margin, methods in where["cuts"]:
        if margin is not None:
            pieces[name] = _class_piece(lines, before, end, padding, margin.encode(), methods)
        else:
            pieces[name] = Piece(*_joined([(before - 2, padding), (before, lines[before - 1:end])]))
        stubs.append((first, end, stub.encode().splitlines(keepends=True)))
    skeleton, line_map = _joined(_with_stubs(lines, 1, stubs))
    return Cut(skeleton, line_map, indent, pieces)


def file_line(lines: LineMap, line: int) -> int:
    """The file's line of a tree's `line`."""
    return line + lines[bisect_right(lines, (line, _LAST)) - 1][1]


def parse_piece(piece: Piece) -> tuple[cst.Module, cst.CSTNode]:
    """The piece's own module (for positions) and its statement."""
    module = collector.parse_module(piece.text)
    return module, module.body[-1]


def parse_method(piece: Piece) -> tuple[cst.Module, cst.FunctionDef]:
    """A method's piece: its own module and the method, in the `class _:` around it."""
    module = collector.parse_module(piece.text)
    return module, module.body[-1].body.body[0]


def whole(skeleton: cst.Module, statements: dict[str, cst.CSTNode]) -> cst.Module:
    """The skeleton with each stub replaced by its statement: the tree of the whole file."""
    body = [statements.get(s.name.value, s) if type(s) in (cst.FunctionDef, cst.ClassDef) else s
            for s in skeleton.body]
    return skeleton.with_changes(body=body)


def whole_class(skeleton: cst.ClassDef, methods: dict[str, cst.FunctionDef]) -> cst.ClassDef:
    """A class's skeleton with each method stub replaced by its method."""
    body = [methods.get(s.name.value, s) if type(s) is cst.FunctionDef else s for s in skeleton.body.body]
    return skeleton.with_changes(body=skeleton.body.with_changes(body=body))


def _class_piece(lines: list[bytes], before: int, end: int, padding: list[bytes], margin: bytes,
                 methods: list) -> Piece:
    """A class's piece: the class with its methods cut out as stubs, and each method a piece of its own,
    parsed inside a `class _:` line."""
    stubs: list[tuple[int, int, list[bytes]]] = []
    pieces: dict[str, Piece] = {}
    for name, first, method_before, method_end in methods:
        stubs.append((first, method_end, [margin + b"def " + name.encode() + b"(): ...\n"]))
        pieces[name] = Piece(*_joined([(method_before - 3, [*padding, b"class _:\n"]),
                                       (method_before, lines[method_before - 1:method_end])]))
    text, line_map = _joined([(before - 2, padding), *_with_stubs(lines[:end], before, stubs)])
    return Piece(text, line_map, pieces, b"".join(lines[before - 1:end]).decode())


def _with_stubs(lines: list[bytes], start: int, stubs: list[tuple[int, int, list[bytes]]]):
    """Lines `start`.. of `lines` as (file line, lines) runs, each (first, end, stub) region replaced
    by its stub."""
    for first, end, stub in stubs:
        yield start, lines[start - 1:first - 1]
        if end == len(lines) and not lines[-1].endswith(b"\n"):
            stub = [*stub[:-1], stub[-1].rstrip(b"\n")]
        yield first, stub
        start = end + 1
    yield start, lines[start - 1:]


def _joined(runs) -> tuple[bytes, LineMap]:
    """The text of (file line, lines) runs, and where its lines are in the file."""
    out: list[bytes] = []
    line_map: list[tuple[int, int]] = []
    for line, run in runs:
        if not run:
            continue
        if not line_map or line_map[-1][1] != line - len(out) - 1:
            line_map.append((len(out) + 1, line - len(out) - 1))
        out += run
    return b"".join(out), tuple(line_map)


def _cuttable(body: list[ast.stmt], lines: list[bytes], margin: bytes):
    """(statement, its first line with the comments above it, its last line) of the functions and
    classes of a block that can be cut out exactly: defined once in it, not its first statement, and
    with only empty lines and comments at its own indentation between it and its neighbours."""
    defined = Counter(s.name for s in body if isinstance(s, _DEFINITIONS))
    for index, stmt in enumerate(body):
        if not isinstance(stmt, _DEFINITIONS) or defined[stmt.name] != 1 or index == 0:
            continue
        first, end = _first_line(stmt), block_end(lines, stmt.end_lineno, margin)
        if not lines[first - 1].startswith(margin) or _margin(lines[first - 1]) != margin:
            continue
        previous = body[index - 1]
        before = (block_end(lines, previous.end_lineno, margin) if isinstance(getattr(previous, "body", None), list)
                  else previous.end_lineno) + 1  # the comments above a statement are its own, as in libcst
        after = _first_line(body[index + 1]) if index + 1 < len(body) else None
        between = lines[before - 1:first - 1] + (lines[end:after - 1] if after is not None else [])
        if before >= 3 and all(line == b"\n" or line.startswith(margin + b"#") for line in between):
            yield stmt, before, end


def _margin(line: bytes) -> bytes:
    return line[:len(line) - len(line.lstrip(b" \t"))]


def _stub(stmt: ast.stmt, lines: list[bytes], indent: bytes) -> list[bytes]:
    """`def name():` / `class name:` with the imports inside it."""
    header = (b"class " if isinstance(stmt, ast.ClassDef) else b"def ") + stmt.name.encode()
    header += b":\n" if isinstance(stmt, ast.ClassDef) else b"():\n"
    inner = []
    for node in nested_imports(stmt.body):
        text = b"".join(lines[node.lineno - 1:node.end_lineno])
        end = len(text) - len(lines[node.end_lineno - 1]) + node.end_col_offset
        inner.append(indent + text[node.col_offset:end] + b"\n")
    return [header] + b"".join(inner or [indent + b"...\n"]).splitlines(keepends=True)


def _first_indent(tree: ast.Module, lines: list[bytes]) -> bytes | None:
    """The indentation of the first indented line of code, which libcst takes as the module's own;
    None if no statement is indented."""
    first: tuple[int, bytes] | None = None
    statements = list(tree.body)
    while statements:
        stmt = statements.pop()
        blocks = [getattr(stmt, attribute, None) for attribute in ("body", "orelse", "finalbody")]
        blocks += [branch.body for branch in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ()))]
        for block in blocks:
            if not isinstance(block, list) or not block:
                continue
            statements.extend(block)
            line = _first_line(block[0])
            text = lines[line - 1]
            margin = text[:len(text) - len(text.lstrip(b" \t"))]
            # on a line of its own (not `if x: y`), deeper than its header (not an `elif`)
            if len(margin) == block[0].col_offset > stmt.col_offset and (first is None or line < first[0]):
                first = (line, margin)
    return first[1] if first is not None else None


def _first_line(stmt: ast.stmt) -> int:
    return min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
