"""The report at the end of a run, as `torchcheck run` and `Run.write_report()` write it: one file
(or stderr for text) per run, by rank 0 for a job of several processes, or one per rank
(`r.rank3.json`) when the ranks could not merge."""
from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from torchcheck.runtime import distributed


def write_report(run, output=None, fmt: str = "text") -> list | None:
    return write_gathered(distributed.gather(run.findings), Path(output) if output is not None else None, fmt)


def write_gathered(gathered: distributed.Gathered, output: Path | None, fmt: str) -> list | None:
    """Write what this rank has to report; returns the findings written, None when it had none to."""
    from torchcheck.report import Summary, read_sources, render

    if gathered.findings is None:
        return None
    if gathered.alone and output is not None:
        output = distributed.rank_path(output, gathered.group.rank)
    for note in gathered.notes(output):
        distributed.say(note)
    findings = gathered.findings
    summary = Summary(1, findings, read_sources(findings), kind="run")
    if output is None:
        render(summary, fmt, Console(file=sys.stderr if fmt == "text" else sys.stdout, highlight=False, soft_wrap=True))
        return findings
    with open(output, "w", encoding="utf-8") as handle:
        render(summary, fmt, Console(file=handle, color_system=None, force_terminal=False, width=120, highlight=False,
                                     soft_wrap=True))
    return findings
