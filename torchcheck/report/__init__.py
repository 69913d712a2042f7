"""Renderers: one finding type, one set of formats, for static, runtime and pytest output.

`text` and `concise` are for people (rich, colour only on a terminal, NO_COLOR honoured); `json`,
`sarif` and `github` are for machines and stable (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field

from torchcheck.types import Finding

FORMATS = ("text", "concise", "json", "sarif", "github")


@dataclass
class Summary:
    """What a report shows: the findings, the texts they point into, and the counts."""

    files: int
    findings: list[Finding]
    sources: dict = field(default_factory=dict)  # source_key -> text, for the source excerpts
    fixed: int = 0
    kind: str = "lint"  # lint | run | cell (runtime findings under a notebook cell)


def source_key(where) -> str | tuple[str, int]:
    """Where the text a finding or a related location points into is kept in `Summary.sources`:
    its path, or (path, cell) for a notebook's cell."""
    return where.path if where.cell is None else (where.path, where.cell)


def source_of(where, sources: dict) -> str | None:
    return sources.get(source_key(where))


def read_sources(findings: list[Finding], known: dict | None = None) -> dict:
    """The text of each file (or notebook cell) with findings or evidence, for the source excerpts:
    the `known` texts, and the others read (unreadable files are skipped)."""
    from pathlib import Path

    sources = dict(known or {})
    for where in [*findings, *(r for f in findings for r in f.related)]:
        key = source_key(where)
        if key in sources:
            continue
        if where.cell is not None:
            from torchcheck.notebook import cell_sources

            cells = cell_sources(Path(where.path))
            sources.update({(where.path, position): text for position, text in cells.items()})
            sources.setdefault(key, "")
            continue
        try:
            sources[key] = Path(where.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            sources[key] = ""
    return sources


def render(summary: Summary, fmt: str, console) -> None:
    """Write the report to a rich Console."""
    if fmt in ("text", "concise"):
        from torchcheck.report.text import render_concise, render_text

        (render_text if fmt == "text" else render_concise)(summary, console)
    else:
        from torchcheck.report.machine import render_github, render_json, render_sarif

        text = {"json": render_json, "sarif": render_sarif, "github": render_github}[fmt](summary)
        console.file.write(text)
        console.file.flush()
