"""`--fix` and `--diff`: apply fixes until the file is stable, verify the result still parses,
write atomically. Unwritable files are reported, never crashed on."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import libcst as cst

from torchcheck import registry
from torchcheck.analysis.project import Project
from torchcheck.engine import _error_result, decode, lint_source
from torchcheck.fixes import apply_fixes
from torchcheck.types import Finding

MAX_PASSES = 10


@dataclass
class FixOutcome:
    fixed: int = 0
    findings: list[Finding] = field(default_factory=list)
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (before, after)
    sources: dict[str, str] = field(default_factory=dict)


def fix_source(source: str, path: Path, config, rules, project: Project, unsafe: bool) -> tuple[str, int, list[Finding]]:
    """Apply fixes pass after pass until none applies. A fix that would leave the file unparsable
    is dropped alone: the others are applied, and its finding stays, saying why it was not fixed.
    Returns the new text, how many fixes were applied, and the findings that remain."""
    fixed = 0
    broken: dict[tuple, str] = {}  # fixes that break the file, by what they write
    findings = lint_source(source.encode("utf-8"), path, config, rules, project).findings
    for _ in range(MAX_PASSES):
        candidates = [f for f in findings if _fix_key(f) not in broken]
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
        findings = lint_source(source.encode("utf-8"), path, config, rules, project).findings
    return source, fixed, [_dropped(f, broken[_fix_key(f)]) if _fix_key(f) in broken else f for f in findings]


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
    rules = registry.selected_rules(config)
    project = Project()
    outcome = FixOutcome()
    for file in result.files:
        if not any(f.fix is not None for f in file.findings) or file.source is None:
            outcome.findings.extend(file.findings)
            continue
        path = Path(file.path)
        new, count, remaining = fix_source(file.source, path, config, rules, project, unsafe)
        if count and new != file.source:
            if write:
                try:
                    write_atomically(path, new, _encoding_of(path.read_bytes()))
                except OSError as exc:
                    outcome.findings.extend(file.findings)
                    outcome.findings.extend(_error_result(file.path, "io-error", f"Cannot write fixes: {exc.strerror or exc}").findings)
                    continue
            outcome.changes[file.path] = (file.source, new)
            outcome.sources[file.path] = new
            outcome.fixed += count
        outcome.findings.extend(remaining)
    outcome.findings.sort(key=lambda f: f.sort_key)
    return outcome


__all__ = ["FixOutcome", "decode", "fix_files", "fix_source", "write_atomically"]
