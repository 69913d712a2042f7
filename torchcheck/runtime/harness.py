"""`watch()`: install the runtime checks, collect findings, always uninstall.

Every hook is a handle pushed on an ExitStack the moment it exists, so a half-finished install or
an exception in the user's loop still removes everything. Nested `watch()` blocks share the
outermost block's hooks; each block sees the findings made while it was active."""
from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass, field, replace

from torchcheck.types import Finding

MODES = ("collect", "warn", "raise")


class TorchcheckError(RuntimeError):
    """Raised in `mode="raise"` at the first finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.code} {finding.name}: {finding.message} ({finding.path}:{finding.line})")
        self.finding = finding


class IndexCheckError(IndexError):
    """An index out of bounds or of the wrong dtype, caught before the indexing op ran."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.message} ({finding.path}:{finding.line})")
        self.finding = finding


@dataclass
class Run:
    """One `watch()` session: its options, and the findings made while it was active."""

    objects: tuple = ()
    mode: str = "collect"
    select: tuple = ()
    ignore: tuple = ()
    _findings: dict = field(default_factory=dict)
    _wants: dict = field(default_factory=dict)
    _active: bool = False
    _group: object = None  # the distributed job this run was part of, seen when it ended

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")

    @property
    def findings(self) -> list[Finding]:
        """Each distinct finding once, with how many times it happened."""
        found = [replace(finding, count=count) for finding, count in self._findings.values()]
        return sorted(found, key=lambda f: (f.path, f.line, f.column, f.code))

    def wants(self, name: str) -> bool:
        if name not in self._wants:
            from torchcheck.registry import resolve_rule

            rule = resolve_rule(name)
            chosen = any(_matches(s, rule) for s in self.select) if self.select else True
            self._wants[name] = chosen and not any(_matches(s, rule) for s in self.ignore)
        return self._wants[name]

    def gather(self, timeout: float | None = None) -> list[Finding] | None:
        """In a job of several processes, every rank calls this after its block: rank 0 gets the
        findings of all ranks, merged (one finding per place, with its `ranks`); the other ranks
        get None, having handed theirs over. In one process, the run's findings. Rank 0 waits up
        to `timeout` seconds (default 300) for the others; a rank with no process group to go
        through keeps its own findings and warns."""
        from torchcheck.runtime import distributed

        gathered = distributed.gather(self.findings, self._group, timeout)
        for message in gathered.notes():
            warnings.warn(f"torchcheck: {message}", RuntimeWarning, stacklevel=2)
        return gathered.findings

    def write_report(self, output=None, format: str = "text") -> list[Finding] | None:
        """Write the report as `torchcheck run` does, to `output` (a path) or stderr; in a job of
        several processes every rank calls it and rank 0 writes the findings of all ranks. Returns
        the findings written (None on a rank that handed its findings to rank 0)."""
        from torchcheck.runtime.reporting import write_report

        return write_report(self, output, format).findings

    def __enter__(self) -> Run:
        if self._active:
            raise RuntimeError("this torchcheck run is already active; use a new watch() to nest")
        _SESSION.enter(self)
        self._active = True
        return self

    def __exit__(self, exc_type, *exc) -> None:
        from torchcheck.runtime.distributed import current_group

        self._active = False
        self._group = current_group()  # its store still reaches the other ranks once the group is destroyed
        _SESSION.exit(self, failed=exc_type is not None)

    def _record(self, finding: Finding) -> bool:
        """Count the finding; True if this run had not seen it before."""
        key = (finding.code, finding.path, finding.line, finding.module_path)
        if key in self._findings:
            self._findings[key][1] += 1
            return False
        self._findings[key] = [finding, 1]
        return True


def _matches(selector: str, rule) -> bool:
    return selector == "ALL" or rule.code.startswith(selector.upper()) or selector == rule.name


def watch(*objects, mode: str = "collect", select=(), ignore=()) -> Run:
    """Watch the training code run inside the `with` block.

    objects: models and optimizers to watch (optional: with none, every module and optimizer used
    inside the block is watched). mode: "collect" (findings in `run.findings`), "warn" (also a
    Python warning per new finding) or "raise" (stop at the first finding with TorchcheckError)."""
    return Run(tuple(objects), mode, tuple(select), tuple(ignore))


class _Session:
    """What is installed once for all active runs: the outermost `watch()` creates the context and
    the event hub; each run entering adds the checks it selects that are not installed yet. All is
    removed when the outermost run ends."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.stack: contextlib.ExitStack | None = None
        self.context = None
        self.hub = None
        self.checks: dict[str, object] = {}
        self.lock = threading.RLock()
        self._wants: dict[str, bool] = {}  # reset whenever the set of active runs changes

    def enter(self, run: Run) -> None:
        with self.lock:
            first = not self.runs
            if first:
                self._start()
            self.runs.append(run)
            self._wants.clear()
            try:
                self.context.watch(run.objects)
                self._add_checks(run)
            except BaseException:
                self.runs.remove(run)
                self._wants.clear()
                if first:
                    self._stop()
                raise

    def _start(self) -> None:
        from torchcheck.runtime import distributed
        from torchcheck.runtime.context import Context
        from torchcheck.runtime.events import Hub

        stack = contextlib.ExitStack()
        try:
            self.context = Context(self, stack)
            self.hub = Hub(stack, self.context)
            self.hub.subscribe("step_post", self.context.count_step)
            distributed.remember_store_on_destroy(stack)
        except BaseException:
            stack.close()
            self.context = self.hub = None
            raise
        self.stack = stack

    def _add_checks(self, run: Run) -> None:
        from torchcheck.runtime.checks import all_checks

        for name, check_class in all_checks().items():
            if name in self.checks or not run.wants(name):
                continue
            check = self.checks[name] = check_class(self.context)
            for event in check_class.events():
                self.hub.subscribe(event, getattr(check, "on_" + event))

    def _stop(self) -> None:
        from torchcheck.runtime.distributed import forget_store

        forget_store()
        stack, self.stack = self.stack, None
        self.context = self.hub = None
        self.checks = {}
        if stack is not None:
            stack.close()

    def exit(self, run: Run, failed: bool) -> None:
        with self.lock:
            try:
                if self.hub is not None and run in self.runs:
                    self.hub.emit("run_end")  # the run leaving still receives what the device held back
            except TorchcheckError:
                if not failed:  # mode="raise"; never hide the exception the block raised
                    raise
            finally:
                if run in self.runs:
                    self.runs.remove(run)
                self._wants.clear()
                if not self.runs:
                    self._stop()

    def wants(self, name: str) -> bool:
        wanted = self._wants.get(name)
        if wanted is None:
            wanted = self._wants[name] = any(run.wants(name) for run in self.runs)
        return wanted

    def report(self, name: str, message: str, *, module_path: str | None = None, step: int | None = None,
               where: tuple[str, int, int] | None = None, error: type[Exception] | None = None,
               outside_modules: bool = False, related: tuple = ()) -> None:
        """`related`: (message, where) pairs, the evidence shown with the finding."""
        from torchcheck.registry import resolve_rule
        from torchcheck.runtime.distributed import rank
        from torchcheck.runtime.frames import code_span, display, user_frame
        from torchcheck.types import RelatedLocation

        rule = resolve_rule(name)
        path, line, _ = where or user_frame(outside_modules)
        column, end_column = code_span(path, line)
        this_rank = rank()
        evidence = []
        for note, (at_path, at_line, _) in related:
            start, end = code_span(at_path, at_line)
            evidence.append(RelatedLocation(note, display(at_path), at_line, start, at_line, end))
        finding = Finding(rule.code, rule.name, message, display(path), line, column, line, end_column,
                          rule.severity, None, module_path, step, 1, () if this_rank is None else (this_rank,),
                          tuple(evidence))
        new = False
        for run in list(self.runs):
            if run.wants(name):
                new = run._record(finding) or new
        if error is not None:
            raise error(finding)
        if new:
            for run in self.runs:
                if run.mode == "warn" and run.wants(name):
                    warnings.warn(f"{finding.code} {finding.name}: {message} ({finding.path}:{line})",
                                  RuntimeWarning, stacklevel=3)
                    break
            for run in self.runs:
                if run.mode == "raise" and run.wants(name):
                    raise TorchcheckError(finding)


_SESSION = _Session()
