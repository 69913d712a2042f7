"""The human formats, in the shape of ruff's: code, message, location, source with the span
marked, help, then a summary line."""
from __future__ import annotations

from collections import Counter
from functools import lru_cache

from rich.markup import escape
from rich.text import Text

from torchcheck.report import source_of
from torchcheck.types import FixSafety


def _fix_marker(finding) -> str:
    return " [*]" if finding.fix is not None and finding.fix.safety == FixSafety.SAFE else ""


def _style(finding) -> str:
    return "bold red" if finding.severity.value == "error" else "bold yellow"


def render_text(summary, console) -> None:
    lines: list[Text] = []  # printed at once: rich's per-call overhead is most of a warm run's report
    for finding in summary.findings:
        head = Text()
        head.append(finding.code, style=_style(finding))
        head.append(_fix_marker(finding), style="cyan")
        head.append(" " + finding.message, style="bold")
        if finding.count > 1:
            head.append(f" (x{finding.count})", style="dim")
        lines.append(head)
        where = finding.location
        extra = []
        if finding.module_path:
            extra.append(f"module {finding.module_path}")
        if finding.step is not None:
            extra.append(f"step {finding.step}")
        if finding.ranks:
            extra.append(f"rank{'s' if len(finding.ranks) > 1 else ''} {', '.join(map(str, finding.ranks))}")
        lines.append(Text(" --> ", style="blue") + Text(where) + Text(f" ({', '.join(extra)})" if extra else "", style="dim"))
        lines.extend(_excerpt(finding, source_of(finding, summary.sources)))
        for related in finding.related:
            lines.extend(_note(related, source_of(related, summary.sources)))
        if finding.fix is not None:
            label = "help" if finding.fix.safety == FixSafety.SAFE else "help (unsafe fix)"
            lines.append(Text(f"{label}: ", style="bold cyan") + Text(finding.fix.title))
        if "fix_dropped" in finding.extra:
            lines.append(Text("note: ", style="bold yellow") + Text(f"fix not applied: {finding.extra['fix_dropped']}"))
        lines.append(Text())
    if lines:
        console.print(Text("\n").join(lines))
    _summary_line(summary, console)


def _excerpt(finding, source: str | None) -> list[Text]:
    if not source:
        return []
    lines = _lines_of(source)
    if not 0 < finding.line <= len(lines):
        return []
    last = min(finding.end_line, finding.line + 4, len(lines))
    width = len(str(last))
    gutter = " " * width + " |"
    out = [Text(gutter, style="blue")]
    for number in range(finding.line, last + 1):
        line = lines[number - 1].expandtabs(4) if "\t" not in lines[number - 1] else lines[number - 1].replace("\t", " ")
        out.append(Text(f"{number:>{width}} | ", style="blue") + Text(line))
        start = finding.column - 1 if number == finding.line else len(line) - len(line.lstrip())
        end = finding.end_column - 1 if number == finding.end_line else len(line)
        if end <= start:
            end = start + 1
        out.append(Text(gutter + " ", style="blue") + Text(" " * start + "^" * (end - start), style=_style(finding)))
    out.append(Text(gutter, style="blue"))
    return out


def _note(related, source: str | None) -> list[Text]:
    """` = note: softmax applied here --> models.py:12:16`, then that line of code, rustc-style."""
    out = [Text(" = ", style="blue") + Text("note: ", style="bold") + Text(related.message)
           + Text(" --> ", style="blue") + Text(related.location)]
    lines = _lines_of(source) if source else []
    if 0 < related.line <= len(lines):
        line = " ".join(lines[related.line - 1].split())
        out.append(Text("   | ", style="blue") + Text(line if len(line) <= 100 else line[:99] + "…", style="dim"))
    return out


@lru_cache(maxsize=16)
def _lines_of(source: str) -> list[str]:
    """A file's lines, split once for all the findings and notes shown in it."""
    return source.splitlines()


def _summary_line(summary, console) -> None:
    findings = summary.findings
    if summary.kind == "cell":  # the runtime harness in a notebook: findings shown under a cell
        noun = "finding" if len(findings) == 1 else "findings"
        console.print(Text(f"torchcheck: {len(findings)} {noun} while this cell ran.", style="bold"))
        return
    if summary.fixed:
        console.print(Text(f"Fixed {summary.fixed} finding{'s' if summary.fixed != 1 else ''}.", style="bold green"))
    if not findings:
        if summary.kind == "lint" and summary.files == 0:
            console.print(Text("No Python file or notebook found: nothing was linted.", style="bold yellow"))
        elif summary.kind == "run":
            console.print(Text("No findings: the run passed every check.", style="bold green"))
        else:
            console.print(Text("All checks passed!", style="bold green"))
        return
    files = len({f.path for f in findings})
    noun = "finding" if len(findings) == 1 else "findings"
    console.print(Text(f"Found {len(findings)} {noun} in {files} file{'s' if files != 1 else ''}.", style="bold"))
    safe = sum(1 for f in findings if f.fix is not None and f.fix.safety == FixSafety.SAFE)
    unsafe = sum(1 for f in findings if f.fix is not None and f.fix.safety == FixSafety.UNSAFE)
    if safe:
        console.print(Text(f"[*] {safe} fixable with the `--fix` option."))
    if unsafe:
        console.print(Text(f"{unsafe} more fixable with `--fix --unsafe-fixes`.", style="dim"))


def render_concise(summary, console) -> None:
    for finding in summary.findings:
        line = Text(f"{finding.location}: ")
        line.append(finding.code, style=_style(finding))
        line.append(_fix_marker(finding), style="cyan")
        line.append(" " + finding.message)
        console.print(line)
    _summary_line(summary, console)


def render_statistics(findings, console) -> None:
    """`--statistics`: one row per rule, most frequent first."""
    counts = Counter((f.code, f.name) for f in findings)
    fixable = Counter((f.code, f.name) for f in findings if f.fix is not None and f.fix.safety == FixSafety.SAFE)
    for (code, name), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        marker = "[*]" if fixable[(code, name)] else "   "
        console.print(f"{count:>5}\t{code}\t{marker} {escape(name)}", markup=False, highlight=False)
