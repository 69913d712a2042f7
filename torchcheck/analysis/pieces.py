"""A module that other files ask about, parsed in pieces: its own level at once, each top-level
function and class the first time a question reads it.

A linted file asks few things of each module it imports: whether a name is a model class, what
a helper returns. Those answers read about half of a neighbour's lines (`units`), and in a large
package a file reaches dozens of neighbours, so parsing only what is read is most of the cost of
re-linting one edited file.

`cut` replaces each top-level function and class by a stub of the same name and kind that keeps
the imports inside it (an import anywhere names things for the whole module) and the line
numbers of everything after it. The skeleton answers every module-level question as the whole
module would. A piece is parsed alone behind a two-line `if` block indented like the module, so
that libcst records its indentation as it would in the whole file; `Cut.whole` puts the pieces
back in place of the stubs, node for node the tree of the whole file.

Only what can be cut exactly is cut: a name defined once at top level, with nothing but empty
lines and column-0 comments between it and its neighbours, in a UTF-8 file with `\\n` line ends.
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass

import libcst as cst

from torchcheck import collector
from torchcheck.analysis.units import block_end, nested_imports

_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]", re.MULTILINE)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class Piece:
    text: bytes  # the padding `if` block, then the statement with the comments above it
    line_offset: int  # its lines are the file's lines minus this


@dataclass
class Cut:
    skeleton: bytes
    indent: bytes  # the module's, which its skeleton must keep
    pieces: dict[str, Piece]  # by the top-level name the statement defines


def cut(source: bytes) -> Cut | None:
    """The skeleton and pieces of a module; None if nothing can be cut exactly."""
    if b"\r" in source or source.startswith(b"\xef\xbb\xbf") or _COOKIE.search(b"\n".join(source.split(b"\n", 2)[:2])):
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = source.splitlines(keepends=True)
    indent = _first_indent(tree, lines)
    if indent is None:
        return None
    defined = Counter(s.name for s in tree.body if isinstance(s, _DEFINITIONS))
    skeleton = list(lines)
    pieces: dict[str, Piece] = {}
    body = tree.body
    for index, stmt in enumerate(body):
        if not isinstance(stmt, _DEFINITIONS) or defined[stmt.name] != 1 or index == 0:
            continue
        first, end = _first_line(stmt), block_end(lines, stmt.end_lineno)
        before = _last_line(body[index - 1], lines) + 1  # the comments above it are its own, as in libcst
        after = _first_line(body[index + 1]) if index + 1 < len(body) else len(lines) + 1
        if before < 3 or not _only_blank_or_comments(lines[before - 1:first - 1] + lines[end:after - 1]):
            continue
        stub = _stub(stmt, lines, indent, end - first + 1)
        if stub is None:
            continue
        skeleton[first - 1:end] = stub
        if not lines[end - 1].endswith(b"\n"):
            skeleton[end - 1] = skeleton[end - 1].rstrip(b"\n")
        padding = b"if 1:\n" + indent + b"pass\n"
        pieces[stmt.name] = Piece(padding + b"".join(lines[before - 1:end]), before - 3)
    if not pieces:
        return None
    return Cut(b"".join(skeleton), indent, pieces)


def parse_piece(piece: Piece) -> tuple[cst.Module, cst.CSTNode]:
    """The piece's own module (for positions) and its statement."""
    module = collector.parse_module(piece.text)
    return module, module.body[-1]


def whole(skeleton: cst.Module, statements: dict[str, cst.CSTNode]) -> cst.Module:
    """The skeleton with each stub replaced by its statement: the tree of the whole file."""
    body = [statements.get(s.name.value, s) if type(s) in (cst.FunctionDef, cst.ClassDef) else s
            for s in skeleton.body]
    return skeleton.with_changes(body=body)


def _stub(stmt: ast.stmt, lines: list[bytes], indent: bytes, room: int) -> list[bytes] | None:
    """`def name():` / `class name:` with the imports inside it, padded by blank lines above to
    `room` lines (the stub's own comments then hold them), or None if it does not fit."""
    header = (b"class " if isinstance(stmt, ast.ClassDef) else b"def ") + stmt.name.encode()
    header += b":\n" if isinstance(stmt, ast.ClassDef) else b"():\n"
    inner = []
    for node in nested_imports(stmt.body):
        text = b"".join(lines[node.lineno - 1:node.end_lineno])
        end = len(text) - len(lines[node.end_lineno - 1]) + node.end_col_offset
        inner.append(indent + text[node.col_offset:end] + b"\n")
    inner = inner or [indent + b"...\n"]
    lines = [header] + b"".join(inner).splitlines(keepends=True)
    if len(lines) > room:
        return None
    return [b"\n"] * (room - len(lines)) + lines


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


def _last_line(stmt: ast.stmt, lines: list[bytes]) -> int:
    """With the indented comments below a block, which libcst keeps in it."""
    return block_end(lines, stmt.end_lineno) if isinstance(getattr(stmt, "body", None), list) else stmt.end_lineno


def _first_line(stmt: ast.stmt) -> int:
    return min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])


def _only_blank_or_comments(lines: list[bytes]) -> bool:
    return all(line == b"\n" or line.startswith(b"#") for line in lines)
