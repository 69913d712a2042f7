"""`--fix` and `--diff`: apply fixes until the file is stable, verify the result still parses,
write atomically. Unwritable files are reported, never crashed on."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import libcst as cst

from torchcheck import registry
from torchcheck.analysis.project import Project
from torchcheck.engine import decode, error_result
from torchcheck.linter import lint_source
from torchcheck.fixes import applicable, apply_fixes
from torchcheck.types import Finding

MAX_PASSES = 10


@dataclass
class FixOutcome:
    """What applying the fixes did: how many, the findings left, and each changed text."""

    fixed: int = 0
    findings: list[Finding] = field(default_factory=list)
    # path (`path:cell N` for a notebook's cell) -> (before, after)
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    sources: dict = field(default_factory=dict)  # the fixed texts, keyed like the report's sources


def fix_source(source: str, path: Path, config, rules, project: Project, unsafe: bool) -> tuple[str, int, list[Finding]]:
    """Apply fixes to a Python file's text; see fix_text."""
    return fix_text(source, lambda text: lint_source(text.encode("utf-8"), path, config, rules, project).findings, unsafe)


def fix_text(source: str, lint: Callable[[str], list[Finding]], unsafe: bool,
             blocked: Callable[[str, Finding], str | None] | None = None) -> tuple[str, int, list[Finding]]:
    """Apply fixes pass after pass until none applies. A fix that would leave the text unparsable
    is dropped alone: the others are applied, and its finding stays, saying why it was not fixed.
    So does a fix that `blocked` (given the current text) gives a reason not to apply.
    Returns the new text, how many fixes were applied, and the findings that remain."""
    fixed = 0
    broken: dict[tuple, str] = {}  # fixes that break the file, by what they write
    findings = lint(source)
    for _ in range(MAX_PASSES):
        candidates = [f for f in findings if _fix_key(f) not in broken
                      and (blocked is None or f.fix is None or blocked(source, f) is None)]
        new_source, applied = apply_fixes(source, candidates, unsafe)
        if not applied:
            break
        error = _parse_error(new_source)
        if error is not None:
            for finding in applied:
                alone = _parse_error(apply_fixes(source, [finding], unsafe)[0])
                if alone is not None:
                    broken[_fix_key(finding)] = alone
            if not any(_fix_key(f) in broken for f in applied):
                broken[_fix_key(applied[-1])] = error  # only the combination breaks: drop one, retry
            continue
        source, fixed = new_source, fixed + len(applied)
        findings = lint(source)
    remaining = []
    for finding in findings:
        reason = broken.get(_fix_key(finding))
        if reason is None and blocked is not None and applicable(finding, unsafe):
            reason = blocked(source, finding)
        remaining.append(_dropped(finding, reason) if reason is not None else finding)
    return source, fixed, remaining


def _fix_key(finding: Finding) -> tuple:
    return (finding.code, finding.fix.title, tuple(e.text for e in finding.fix.edits)) if finding.fix else ()


def _parse_error(source: str) -> str | None:
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        return f"it would make the file unparsable ({exc.message} at line {exc.raw_line})"
    return None


def _dropped(finding: Finding, reason: str) -> Finding:
    return replace(finding, fix=None, extra={**finding.extra, "fix_dropped": f"{finding.fix.title}: {reason}"})


def write_atomically(path: Path, text: str, encoding: str) -> None:
    directory = path.parent
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            handle.write(text)
        os.chmod(temp, path.stat().st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _encoding_of(data: bytes) -> str:
    import io
    import tokenize

    return tokenize.detect_encoding(io.BytesIO(data).readline)[0]


def fix_files(result, config, unsafe: bool, write: bool) -> FixOutcome:
    from torchcheck.notebook import is_notebook

    rules = registry.selected_rules(config)
    project = Project()
    outcome = FixOutcome()
    for file in result.files:
        if not any(f.fix is not None for f in file.findings) or file.source is None:
            outcome.findings.extend(file.findings)
            continue
        path = Path(file.path)
        if is_notebook(path):
            _fix_notebook(file, path, config, rules, project, unsafe, write, outcome)
            continue
        new, count, remaining = fix_source(file.source, path, config, rules, project, unsafe)
        if count and new != file.source:
            if not _write(path, new, _encoding_of(path.read_bytes()), write, file, outcome):
                continue
            outcome.changes[file.path] = (file.source, new)
            outcome.sources[file.path] = new
            outcome.fixed += count
        outcome.findings.extend(remaining)
    outcome.findings.sort(key=lambda f: f.sort_key)
    return outcome


def _fix_notebook(file, path: Path, config, rules, project, unsafe: bool, write: bool, outcome: FixOutcome) -> None:
    """A notebook's fixes go into its code cells' sources only; the changes are shown per cell."""
    from torchcheck.notebook import NotebookError, fix_notebook

    try:
        new, count, remaining, cells = fix_notebook(path, config, rules, project, unsafe)
    except (OSError, NotebookError) as exc:  # changed on disk since it was linted
        outcome.findings.extend(file.findings)
        outcome.findings.extend(error_result(file.path, "io-error", f"Cannot fix notebook: {exc}").findings)
        return
    if new is not None:
        if not _write(path, new, "utf-8", write, file, outcome):
            return
        for position, (before, after) in cells.items():
            outcome.changes[f"{file.path}:cell {position}"] = (before, after)
            outcome.sources[(file.path, position)] = after
        outcome.fixed += count
    outcome.findings.extend(remaining)


def _write(path: Path, text: str, encoding: str, write: bool, file, outcome: FixOutcome) -> bool:
    """Write fixes (when asked to); on failure the file's findings stay, with the reason."""
    if not write:
        return True
    try:
        write_atomically(path, text, encoding)
    except OSError as exc:
        outcome.findings.extend(file.findings)
        outcome.findings.extend(error_result(file.path, "io-error", f"Cannot write fixes: {exc.strerror or exc}").findings)
        return False
    return True


__all__ = ["FixOutcome", "decode", "fix_files", "fix_source", "fix_text", "write_atomically"]
