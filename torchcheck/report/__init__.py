"""Renderers: one finding type, one set of formats, for static, runtime and pytest output.

`text` and `concise` are for people (rich, colour only on a terminal, NO_COLOR honoured); `json`,
`sarif` and `github` are for machines and stable (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field

from torchcheck.report.machine import render_github, render_json, render_sarif
from torchcheck.report.text import render_concise, render_text
from torchcheck.types import Finding

FORMATS = ("text", "concise", "json", "sarif", "github")


@dataclass
class Summary:
    files: int
    findings: list[Finding]
    sources: dict[str, str] = field(default_factory=dict)  # path -> text, for the source excerpts
    fixed: int = 0
    kind: str = "lint"  # lint | run


def read_sources(findings: list[Finding], known: dict[str, str] | None = None) -> dict[str, str]:
    """The text of each file with findings or evidence, for the source excerpts: the `known` texts,
    and the other files read (unreadable files are skipped)."""
    from pathlib import Path

    sources = dict(known or {})
    for path in [f.path for f in findings] + [r.path for f in findings for r in f.related]:
        if path not in sources:
            try:
                sources[path] = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                sources[path] = ""
    return sources


def render(summary: Summary, fmt: str, console) -> None:
    """Write the report to a rich Console."""
    if fmt == "text":
        render_text(summary, console)
    elif fmt == "concise":
        render_concise(summary, console)
    else:
        text = {"json": render_json, "sarif": render_sarif, "github": render_github}[fmt](summary)
        console.file.write(text)
        console.file.flush()
