"""Where a module's nodes are in its file, found one statement at a time.

libcst's `PositionProvider` finds positions by generating the code of the whole tree: half a second
for a 200 KB model file. A file's findings cite a few nodes, so only the statements that hold them
are generated: the innermost statement holding the node, found by going down from the top-level
statement through the blocks of compound statements (bodies of classes, functions, loops, `if`,
`with` and `try`), generated from the line Python's own parser gives it and indented as
its blocks are; for a node in a header (a class's name), the header alone. The positions are
libcst's own, computed by the same code generation, as if the whole tree had been generated.
"""
from __future__ import annotations

import ast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from torchcheck.walk import descendants

_PLACEHOLDER_BODY = cst.IndentedBlock([cst.SimpleStatementLine([cst.Pass()])])
_HEADED = (cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.With)
_NO_ELSE = {cst.For: {"orelse": None}, cst.While: {"orelse": None}, cst.If: {"orelse": None}}


class Positions:
    """`positions[node]` is the span of a node of `module` (parsed from `source`); `node in positions`
    tells whether the node is in the module's code."""

    def __init__(self, module: cst.Module, source: str | bytes) -> None:
        self._module = module
        self._source = source
        self._spans: dict[cst.CSTNode, CodeRange] = {}
        self._statement_of: dict[int, int] = {}  # id(node) -> index of the top-level statement holding it
        self._walked = 0  # top-level statements whose nodes `_statement_of` holds
        self._top_level: list | tuple | None = None  # `_paired` of the module's body; () if not pairable
        self._whole = False

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        span = self.get(node)
        if span is None:
            # Not below a statement (the module itself), or in a field the walk skips: the whole tree.
            self._generate_whole()
            span = self._spans[node]
        return span

    def __contains__(self, node: cst.CSTNode) -> bool:
        return self.get(node) is not None

    def get(self, node: cst.CSTNode, default: CodeRange | None = None) -> CodeRange | None:
        if node not in self._spans and not self._whole:
            index = self._find(node)
            if index is not None:
                self._generate(node, index)
        return self._spans.get(node, default)

    def _find(self, node: cst.CSTNode) -> int | None:
        body = self._module.body
        while id(node) not in self._statement_of and self._walked < len(body):
            statement = body[self._walked]
            self._statement_of[id(statement)] = self._walked
            for below in descendants(statement):
                self._statement_of[id(below)] = self._walked
            self._walked += 1
        return self._statement_of.get(id(node))

    def _generate(self, node: cst.CSTNode, index: int) -> None:
        """Generate the innermost statement holding `node` below the top-level statement `index`."""
        if self._top_level is None:
            try:
                self._top_level = _paired(self._module.body, ast.parse(self._source).body) or ()
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                self._top_level = ()
        if not self._top_level:
            self._generate_whole()
            return
        statement, twin = self._top_level[index]
        indents: list[str] = []
        while statement is not node:
            blocks = [(block, _paired(block.body, twins)) for block, twins in _blocks(statement, twin)]
            holding = next(((block, pair) for block, pairs in blocks for pair in pairs or () if _holds(pair[0], node)), None)
            if holding is None:
                if _in_header(statement, node) and all(pairs is not None for _, pairs in blocks):
                    # Only what comes before the node decides its span: the body is not generated.
                    statement = statement.with_changes(body=_PLACEHOLDER_BODY, **_NO_ELSE.get(type(statement), {}))
                break
            block, (statement, twin) = holding
            indents.append(block.indent or self._module.default_indent)
        provider = PositionProvider()
        # A statement's code starts with the empty lines and comments above it (one line each).
        first = min([twin.lineno, *(d.lineno for d in getattr(twin, "decorator_list", ()))])
        state = PositionProvidingCodegenState(default_indent=self._module.default_indent,
                                              default_newline=self._module.default_newline, provider=provider,
                                              indent_tokens=indents, line=first - len(statement.leading_lines))
        statement._codegen(state)
        self._spans.update(provider._computed)

    def _generate_whole(self) -> None:
        if not self._whole:
            self._spans = dict(MetadataWrapper(self._module, unsafe_skip_copy=True).resolve(PositionProvider))
            self._whole = True


def _paired(statements, twins: list[ast.stmt]) -> list[tuple[cst.BaseStatement, ast.stmt]] | None:
    """Each libcst statement of a block with Python's parse of it (the first of `a; b`); None if the
    two parsers do not see the same statements."""
    pairs = []
    position = 0
    for statement in statements:
        if position >= len(twins):
            return None
        pairs.append((statement, twins[position]))
        position += len(statement.body) if type(statement) is cst.SimpleStatementLine else 1
    return pairs if position == len(twins) else None


def _blocks(statement: cst.CSTNode, twin: ast.stmt):
    """The indented blocks of a compound statement, each with Python's parse of its statements."""
    for field in ("body", "orelse", "finalbody"):
        block = getattr(statement, field, None)
        twins = getattr(twin, field, None)
        if type(block) is cst.If and type(twins) is list and len(twins) == 1:  # `elif`: its blocks are ours
            yield from _blocks(block, twins[0])
            continue
        if block is not None and type(block) is not cst.IndentedBlock:  # `else:` / `finally:`
            block = getattr(block, "body", None)
        if type(block) is cst.IndentedBlock and type(twins) is list:
            yield block, twins
    for clause, twin_clause in zip(getattr(statement, "handlers", ()), getattr(twin, "handlers", ())):
        if type(clause.body) is cst.IndentedBlock:
            yield clause.body, twin_clause.body


def _in_header(statement: cst.CSTNode, node: cst.CSTNode) -> bool:
    """Whether a node of a compound statement that no statement of its blocks holds is in its header
    (a class's name, a loop's iterable), before its body, rather than in its `else`."""
    orelse = getattr(statement, "orelse", None)
    return (type(statement) in _HEADED and type(statement.body) is cst.IndentedBlock and node is not statement.body
            and (orelse is None or not _holds(orelse, node)))


def _holds(statement: cst.CSTNode, node: cst.CSTNode) -> bool:
    return statement is node or any(below is node for below in descendants(statement))
