"""A module's parts, by which the cache tells what another file's findings read of it.

The analysis records, for each module it reached, which parts its answers read: a top-level
function or class (by name), and always the module's own level (`MODULE_UNIT`: its other
statements, the names it defines, its imports wherever they are, since names resolve through
them). A cached finding then depends on those parts only: an edit inside a function that no
other file asked about re-lints no other file.

Parts are cut with Python's `ast`, which parses ten times faster than libcst and needs no
import of it: a warm run compares parts without loading libcst. A part is its statement with the
comments and blank lines above it, as libcst attaches them to the statement (a class's comments
are read too: `mode_effects` looks for words like "dropout" in its code)."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from torchcheck.analysis.import_graph import IMPORT_LINE, TOP_LEVEL_DEFINITION
from torchcheck.digest import blake2b

MODULE_UNIT = "<module>"


@dataclass
class Dependencies:
    """What a linted file's findings read of the rest of the tree: the keys of its cache entry."""

    modules: dict[str, frozenset[str] | None] = field(default_factory=dict)  # module -> parts read (None: all)
    # (module, name) -> the importers of the module that mention the name: who may call it
    searches: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    resolutions: dict[str, str | None] = field(default_factory=dict)  # dotted name -> the module it named


@dataclass(frozen=True)
class Unit:
    """One part of a module, by the lines its statements span and a digest of its text."""

    spans: tuple[tuple[int, int], ...]  # first and last line of each statement making it up
    digest: str  # of its text, wherever it is

    def holds(self, line: int) -> bool:
        return any(start <= line <= end for start, end in self.spans)


def module_units(source: bytes) -> dict[str, Unit] | None:
    """The parts of a module's source, by name; None if Python cannot parse it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = source.splitlines(keepends=True)
    parts: dict[str, list[tuple[int, int, bytes]]] = {}
    own: list[bytes] = [repr((IMPORT_LINE.findall(source), TOP_LEVEL_DEFINITION.findall(source))).encode()]
    previous_end = 0
    for stmt in tree.body:
        start, end = min(previous_end + 1, stmt.lineno), stmt.end_lineno or stmt.lineno  # `x = 1; y = 2`: one line
        previous_end = max(end, previous_end)
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            parts.setdefault(stmt.name, []).append((start, end, b"".join(lines[start - 1:block_end(lines, end)])))
            own.append(f"{type(stmt).__name__} {stmt.name}\n".encode())
            own.extend(ast.dump(node).encode() for node in nested_imports(stmt.body))
        else:
            text = b"".join(lines[start - 1:end])
            parts.setdefault(MODULE_UNIT, []).append((start, end, text))
            own.append(text)
    units = {name: _unit(found) for name, found in parts.items() if name != MODULE_UNIT}
    units[MODULE_UNIT] = Unit(tuple((start, end) for start, end, _ in parts.get(MODULE_UNIT, ())), _digest(own))
    return units


def block_end(lines: list[bytes], end: int, margin: bytes = b"") -> int:
    """The last line of a block at `margin` ending at `end`, with the comments indented deeper below
    its last statement, which libcst keeps in the block (a comment at the block's own indentation
    belongs to what follows)."""
    last = end
    for number in range(end + 1, len(lines) + 1):
        line = lines[number - 1]
        if line.strip() and len(line) - len(line.lstrip(b" \t")) <= len(margin):
            break
        if line.strip():
            last = number
    return last


def _unit(found: list[tuple[int, int, bytes]]) -> Unit:
    return Unit(tuple((start, end) for start, end, _ in found), _digest(text for _, _, text in found))


def _digest(texts) -> str:
    return blake2b(b"\0".join(texts), digest_size=16).hexdigest()


def nested_imports(body: list[ast.stmt]):
    """The import statements anywhere in a block, without walking expressions."""
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt
            continue
        for attribute in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, attribute, None)
            if isinstance(inner, list):
                yield from nested_imports(inner)
        for branch in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())):
            yield from nested_imports(branch.body)


def part_key(name: str) -> str:
    """A short stand-in for a part's name in cache entries (a warm run reads a million of them). Two
    names may share one: then both parts are compared, which is never wrong."""
    return blake2b(name.encode(), digest_size=3).hexdigest()


def parts_unchanged(before: dict[str, Unit] | None, after: dict[str, Unit] | None, keys, cited_lines) -> bool:
    """Whether the parts read (by `part_key`) have the same text in both versions, and the parts
    holding `cited_lines` (evidence a finding shows) are also where they were."""
    if before is None or after is None:
        return False
    wanted = set(keys)
    read = {name for name in before.keys() | after.keys() if part_key(name) in wanted}
    if {part_key(name) for name in read} != wanted:
        return False  # a part read is gone from the version it was read in
    for name in read:
        if name not in before or name not in after or before[name].digest != after[name].digest:
            return False
    for line in cited_lines:
        holder = next((name for name, unit in before.items() if unit.holds(line)), None)
        if holder is None or holder not in after or after[holder] != before[holder]:
            return False
    return True
