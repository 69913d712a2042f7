"""The report at the end of a run, as `torchcheck run` and `Run.write_report()` write it: one file
(or stderr for text) per run, by rank 0 for a job of several processes, or one per rank
(`r.rank3.json`) when the ranks could not merge."""
from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from torchcheck.runtime import distributed


def write_report(run, output=None, fmt: str = "text", failed: bool = False) -> distributed.Gathered:
    """Gather the run's findings across ranks and write what this rank has to report (`failed`:
    the code failed on this rank)."""
    gathered = distributed.gather(run.findings, run._group, failed=failed)
    _write(gathered, Path(output) if output is not None else None, fmt)
    return gathered


def _write(gathered: distributed.Gathered, output: Path | None, fmt: str) -> None:
    from torchcheck.report import Summary, read_sources, render

    if gathered.findings is None:
        return
    if gathered.alone and output is not None:
        output = distributed.rank_path(output, gathered.group.rank)
    for note in gathered.notes(output):
        distributed.say(note)
    findings = gathered.findings
    summary = Summary(1, findings, read_sources(findings), kind="run")
    if output is None:
        render(summary, fmt, Console(file=sys.stderr if fmt == "text" else sys.stdout, highlight=False, soft_wrap=True))
        return
    with open(output, "w", encoding="utf-8") as handle:
        render(summary, fmt, Console(file=handle, color_system=None, force_terminal=False, width=120, highlight=False,
                                     soft_wrap=True))
