"""Where a module's nodes are in its file, found one top-level statement at a time.

libcst's `PositionProvider` finds positions by generating the code of the whole tree: half a second
for a 200 KB model file. A file's findings cite a few nodes, so only the top-level statements that
hold them are generated, each starting from the line Python's own parser gives it. The positions
are libcst's own, computed by the same code generation, as if the whole tree had been generated.
"""
from __future__ import annotations

import ast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from torchcheck.walk import descendants


class Positions:
    """`positions[node]` is the span of a node of `module` (parsed from `source`); `node in positions`
    tells whether the node is in the module's code."""

    def __init__(self, module: cst.Module, source: str | bytes) -> None:
        self._module = module
        self._source = source
        self._spans: dict[cst.CSTNode, CodeRange] = {}
        self._statement_of: dict[int, int] = {}  # id(node) -> index of the top-level statement holding it
        self._walked = 0  # top-level statements whose nodes `_statement_of` holds
        self._generated: set[int] = set()
        self._first_lines: list[int] | None = None
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
            if index is not None and index not in self._generated:
                self._generate(index)
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

    def _generate(self, index: int) -> None:
        self._generated.add(index)
        first_lines = self._statement_lines()
        if first_lines is None:
            self._generate_whole()
            return
        statement = self._module.body[index]
        provider = PositionProvider()
        # A statement's code starts with the empty lines and comments above it (one line each).
        state = PositionProvidingCodegenState(default_indent=self._module.default_indent,
                                              default_newline=self._module.default_newline, provider=provider,
                                              line=first_lines[index] - len(statement.leading_lines))
        statement._codegen(state)
        self._spans.update(provider._computed)

    def _statement_lines(self) -> list[int] | None:
        """The line of each top-level statement's first token (its first decorator's, if any); None if
        Python's parser does not see the statements libcst sees."""
        if self._first_lines is None:
            try:
                tree = ast.parse(self._source)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
            lines = []
            position = 0
            for statement in self._module.body:
                if position >= len(tree.body):
                    return None
                first = tree.body[position]
                lines.append(min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", ()))]))
                position += len(statement.body) if isinstance(statement, cst.SimpleStatementLine) else 1
            if position != len(tree.body):
                return None
            self._first_lines = lines
        return self._first_lines

    def _generate_whole(self) -> None:
        if not self._whole:
            self._spans = dict(MetadataWrapper(self._module, unsafe_skip_copy=True).resolve(PositionProvider))
            self._whole = True
