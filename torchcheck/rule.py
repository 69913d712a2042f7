"""The base class of every static rule, and the registry the engine and catalog read.

A rule is a libcst visitor batched with every other rule into one traversal per file. It reads
facts from `self.ctx` (imports, dataflow) and calls `self.report(...)`; it never prints.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import libcst as cst

from torchcheck.types import FixSafety, Severity

if TYPE_CHECKING:
    from torchcheck.context import FileContext


@dataclass(frozen=True)
class Invalid:
    """An example that must give exactly one finding of the rule (and, if given, this fixed code)."""

    code: str
    fixed: str | None = None


@dataclass(frozen=True)
class Replacement:
    """Replace `node` with `text`; with `insert_before`, insert `text` at the start of `node`
    instead (an inserted line, ending in a newline, keeps the node's indentation)."""

    node: cst.CSTNode
    text: str
    insert_before: bool = False


@dataclass(frozen=True)
class FixSpec:
    """A fix as a rule builds it: node replacements, turned into text edits by the linter."""

    title: str
    replacements: tuple[Replacement, ...]
    safety: FixSafety | None = None  # None: the rule's declared safety


class Rule(cst.BatchableCSTVisitor):
    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]  # one line: what it finds
    severity: ClassVar[Severity] = Severity.ERROR
    fix_safety: ClassVar[FixSafety | None] = None  # None: the rule offers no fix
    fix_reason: ClassVar[str] = ""
    runtime_check: ClassVar[bool] = False  # the runtime harness has a check of the same name
    # Text (a string or a compiled regular expression) that must occur in a file for the rule to be
    # able to fire: a cheap pre-filter that spares parsing files no rule can fire on.
    needles: ClassVar[tuple] = ()
    options: ClassVar[dict[str, object]] = {}
    # The torch version from which the recommended replacement exists; with an older
    # `target-version` in the config, the rule is off.
    min_target_version: ClassVar[tuple[int, ...] | None] = None
    # The torch version that removed the pitfall; with this `target-version` or newer, the rule is off.
    max_target_version: ClassVar[tuple[int, ...] | None] = None
    VALID: ClassVar[list[str]] = []
    INVALID: ClassVar[list[Invalid]] = []

    def __init__(self, ctx: FileContext) -> None:
        super().__init__()
        self.ctx = ctx

    def option(self, key: str):
        return self.ctx.rule_options(self.name).get(key, self.options[key])

    def report(self, node: cst.CSTNode, message: str, fix: FixSpec | None = None,
               related: Sequence[tuple[cst.CSTNode, str]] = ()) -> None:
        """Report `node`. `related` is the evidence, source first: (node, note) pairs, where a node
        may belong to another module of the project (a model's forward in models.py)."""
        self.ctx.report(self, node, message, fix, tuple(related))

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def doc_sections(cls) -> dict[str, str]:
        """The docstring split at its `## Heading` lines."""
        sections: dict[str, str] = {}
        current = "intro"
        for line in cls.doc().splitlines():
            match = re.match(r"^## (.+)$", line)
            if match:
                current = match.group(1).strip()
                sections[current] = ""
            else:
                sections[current] = sections.get(current, "") + line + "\n"
        return {k: v.strip() for k, v in sections.items()}


@dataclass(frozen=True)
class PseudoRule:
    """A code the engine itself reports (unparsable file, crashing rule) or that only the runtime
    harness checks. It has a catalog entry but no visitor."""

    code: str
    name: str
    summary: str
    severity: Severity
    doc_text: str
    runtime_check: bool = False
    fix_safety: FixSafety | None = None
    fix_reason: str = ""
    options: dict | None = None

    def doc(self) -> str:
        return inspect.cleandoc(self.doc_text)
