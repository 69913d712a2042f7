"""Applying fixes to source text: non-overlapping edits, safe ones only unless asked, until stable."""
from __future__ import annotations

from torchcheck.types import Finding, FixSafety


def applicable(finding: Finding, unsafe: bool) -> bool:
    return finding.fix is not None and (unsafe or finding.fix.safety == FixSafety.SAFE)


def apply_fixes(source: str, findings: list[Finding], unsafe: bool = False) -> tuple[str, list[Finding]]:
    """Apply each applicable finding's edits, skipping any whose edits overlap one already taken.
    Returns the new source and the findings whose fixes were applied."""
    taken: list[tuple[int, int]] = []
    chosen: list[Finding] = []
    for finding in sorted((f for f in findings if applicable(f, unsafe)), key=lambda f: f.fix.edits[0].start):
        spans = [(e.start, e.end) for e in finding.fix.edits]
        if any(s < te and ts < e or (s == e == ts) for s, e in spans for ts, te in taken):
            continue
        taken.extend(spans)
        chosen.append(finding)
    edits = sorted((e for f in chosen for e in f.fix.edits), key=lambda e: (e.start, e.end), reverse=True)
    for edit in edits:
        source = source[: edit.start] + edit.text + source[edit.end :]
    return source, chosen
