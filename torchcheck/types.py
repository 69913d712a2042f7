"""The value types every part of torchcheck shares: findings, fixes, severities."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


class FixSafety(str, Enum):
    SAFE = "safe"
    UNSAFE = "unsafe"


@dataclass(frozen=True)
class Edit:
    """Replace source[start:end] (character offsets) with `text`."""

    start: int
    end: int
    text: str
    cell: int | None = None  # in a notebook: the cell (its position) whose source the offsets count in

    def to_dict(self) -> dict:
        data = {"start": self.start, "end": self.end, "content": self.text}
        if self.cell is not None:
            data["cell"] = self.cell
        return data


@dataclass(frozen=True)
class Fix:
    """A fix as reported: its text edits, and whether it is safe to apply."""

    title: str
    safety: FixSafety
    edits: tuple[Edit, ...]

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "safety": self.safety.value,
            "edits": [e.to_dict() for e in self.edits],
        }


@dataclass(frozen=True)
class RelatedLocation:
    """A place a finding's evidence passes through: where the softmax was applied, where the
    criterion was created. 1-based lines and columns, like the finding's own."""

    message: str
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    cell: int | None = None  # in a notebook: the cell's position (lines then count within the cell)
    cell_id: str | None = None

    def to_dict(self) -> dict:
        data = {"message": self.message, "path": self.path, "line": self.line, "column": self.column,
                "end_line": self.end_line, "end_column": self.end_column}
        data.update(_cell_fields(self))
        return data

    @property
    def location(self) -> str:
        return location(self)


@dataclass(frozen=True)
class Finding:
    """One finding, static or runtime: the rule, the message, where, and its evidence and fix."""

    code: str
    name: str
    message: str
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity = Severity.ERROR
    fix: Fix | None = None
    # Runtime findings only: where in the model and when it happened, and how often.
    module_path: str | None = None
    step: int | None = None
    count: int = 1
    ranks: tuple[int, ...] = ()  # the ranks of a distributed run it happened on
    related: tuple[RelatedLocation, ...] = ()  # static findings: the evidence chain, source first
    extra: dict = field(default_factory=dict, compare=False)
    # In a notebook: the cell's position among all cells (1-based) and its id; lines count within the cell.
    cell: int | None = None
    cell_id: str | None = None

    @property
    def sort_key(self) -> tuple:
        return (self.path, self.cell or 0, self.line, self.column, self.code, self.message)

    @property
    def location(self) -> str:
        return location(self)

    def to_dict(self) -> dict:
        data = {
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "severity": self.severity.value,
            "fix": self.fix.to_dict() if self.fix else None,
            "related": [r.to_dict() for r in self.related],
        }
        for key in ("module_path", "step"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.ranks:
            data["ranks"] = list(self.ranks)
        if self.count != 1:
            data["count"] = self.count
        if "fix_dropped" in self.extra:
            data["fix_dropped"] = self.extra["fix_dropped"]
        data.update(_cell_fields(self))
        return data


def _cell_fields(where) -> dict:
    return {"cell": where.cell, "cell_id": where.cell_id} if where.cell is not None else {}


def location(where) -> str:
    """`path:line:column`, or `path:cell N:line:column` in a notebook."""
    cell = f"cell {where.cell}:" if where.cell is not None else ""
    return f"{where.path}:{cell}{where.line}:{where.column}"
