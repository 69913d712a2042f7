"""Everything a rule may ask about the file it is visiting, computed once per file and lazily."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import libcst as cst
from libcst._nodes.internal import CodegenState

from torchcheck.analysis.dataflow import FileAnalysis
from torchcheck.analysis.imports import ImportTable
from torchcheck.analysis.values import Value

if TYPE_CHECKING:
    from torchcheck.analysis.project import Project
    from torchcheck.config import Config
    from torchcheck.rule import FixSpec, Rule


@dataclass
class Report:
    """A finding as a rule reports it, on nodes; the linter turns it into a `Finding`."""

    rule: Rule
    node: cst.CSTNode
    message: str
    fix: FixSpec | None
    statement: cst.CSTNode | None
    related: tuple[tuple[cst.CSTNode, str], ...]  # (node, note): the evidence, source first


class FileContext:
    def __init__(self, path: Path, display_path: str, source: str, module: cst.Module, module_name: str,
                 project: Project, config: Config, analysis: FileAnalysis | None = None) -> None:
        self.path = path
        self.display_path = display_path
        self.source = source
        self.module = module
        self.module_name = module_name
        self.project = project
        self.config = config
        self.imports = analysis.imports if analysis is not None else ImportTable(module, module_name, path.name == "__init__.py")
        self.reports: list[Report] = []
        self.statements: list[cst.CSTNode] = []  # enclosing statements during traversal
        self.functions: list[cst.FunctionDef] = []
        self.classes: list[cst.ClassDef] = []
        self._analysis = analysis
        self.memo: dict[str, dict] = {}  # answers several rules share, per question

    @property
    def has_analysis(self) -> bool:
        return self._analysis is not None

    @property
    def analysis(self) -> FileAnalysis:
        if self._analysis is None:
            self._analysis = FileAnalysis(self.module, self.imports, self.project, self.module_name)
            self.project.register(self.module_name, self._analysis)
        return self._analysis

    def qualname(self, node: cst.CSTNode) -> str | None:
        return self.imports.qualname(node)

    def value(self, node: cst.CSTNode) -> Value:
        return self.analysis.value(node)

    def code(self, node: cst.CSTNode) -> str:
        """The source of `node`, its continuation lines indented as in the statement being visited
        (`Module.code_for_node` drops the enclosing blocks' indentation)."""
        state = CodegenState(default_indent=self.module.default_indent, default_newline=self.module.default_newline,
                             indent_tokens=self._indentation())
        node._codegen(state)
        return "".join(state.tokens)

    def _indentation(self) -> list[str]:
        return [statement.body.indent or self.module.default_indent for statement in self.statements
                if isinstance(getattr(statement, "body", None), cst.IndentedBlock)]

    def rule_options(self, name: str) -> dict:
        return self.config.rule_options.get(name, {})

    def report(self, rule: Rule, node: cst.CSTNode, message: str, fix: FixSpec | None,
               related: tuple[tuple[cst.CSTNode, str], ...]) -> None:
        if any(r.rule is rule and r.node is node for r in self.reports):
            return
        statement = self.statements[-1] if self.statements else None
        self.reports.append(Report(rule, node, message, fix, statement, related))
