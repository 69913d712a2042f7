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


@dataclass(frozen=True)
class Fix:
    title: str
    safety: FixSafety
    edits: tuple[Edit, ...]

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "safety": self.safety.value,
            "edits": [{"start": e.start, "end": e.end, "content": e.text} for e in self.edits],
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

    def to_dict(self) -> dict:
        return {"message": self.message, "path": self.path, "line": self.line, "column": self.column,
                "end_line": self.end_line, "end_column": self.end_column}


@dataclass(frozen=True)
class Finding:
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

    @property
    def sort_key(self) -> tuple:
        return (self.path, self.line, self.column, self.code, self.message)

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
        return data
