"""`watch()`: install the runtime checks, collect findings, always uninstall.

Every hook is a handle pushed on an ExitStack the moment it exists, so a half-finished install or
an exception in the user's loop still removes everything. Nested `watch()` blocks share the
outermost block's hooks; each block sees the findings made while it was active."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from torchcheck.types import Finding

MODES = ("collect", "warn", "raise")
_TORCH_DIR = None
_OWN_DIR = str(Path(__file__).resolve().parent.parent)


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


def user_frame(outside_modules: bool = False) -> tuple[str, int, int]:
    """The first stack frame outside torch and torchcheck: the user's line that caused a finding.
    With `outside_modules`, the line that called the outermost module (`model(x)` in the
    validation loop, not a line inside the model's own forward)."""
    global _TORCH_DIR
    if _TORCH_DIR is None:
        import torch

        _TORCH_DIR = str(Path(torch.__file__).resolve().parent)
    if not outside_modules:
        frame = sys._getframe(1)
        while frame is not None:
            filename = frame.f_code.co_filename
            if not filename.startswith((_TORCH_DIR, _OWN_DIR, "<frozen")) and "/contextlib.py" not in filename:
                return filename, frame.f_lineno, 1
            frame = frame.f_back
        return "<unknown>", 0, 1
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    start = 0
    if outside_modules:
        calls = [i for i, f in enumerate(frames) if f.f_code.co_name == "_call_impl" and f.f_code.co_filename.startswith(_TORCH_DIR)]
        start = calls[-1] + 1 if calls else 0
    for frame in frames[start:]:
        filename = frame.f_code.co_filename
        if not filename.startswith((_TORCH_DIR, _OWN_DIR, "<frozen")) and "/contextlib.py" not in filename:
            return filename, frame.f_lineno, 1
    return "<unknown>", 0, 1


def display(path: str) -> str:
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path


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
    _stack: contextlib.ExitStack | None = None

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

    def __enter__(self) -> Run:
        if self._active:
            raise RuntimeError("this torchcheck run is already active; use a new watch() to nest")
        _SESSION.enter(self)
        self._active = True
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._active = False
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
    """The hooks installed once for all active runs (the outermost `watch()` installs them)."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.stack: contextlib.ExitStack | None = None
        self.state = None
        self.lock = threading.RLock()
        self._wants: dict[str, bool] = {}  # reset whenever the set of active runs changes

    def enter(self, run: Run) -> None:
        with self.lock:
            if not self.runs:
                from torchcheck.runtime.checks import State, install_all

                stack = contextlib.ExitStack()
                try:
                    self.state = State(self)
                    install_all(self.state, stack)
                except BaseException:
                    stack.close()
                    self.state = None
                    raise
                self.stack = stack
            self.runs.append(run)
            self._wants.clear()
            self.state.watch(run.objects)

    def exit(self, run: Run, failed: bool) -> None:
        with self.lock:
            try:
                if self.state is not None and run in self.runs:
                    self.state.finish()  # the run leaving still receives what the device held back
            except TorchcheckError:
                if not failed:  # mode="raise"; never hide the exception the block raised
                    raise
            finally:
                if run in self.runs:
                    self.runs.remove(run)
                self._wants.clear()
                if not self.runs and self.stack is not None:
                    stack, self.stack = self.stack, None
                    self.state = None
                    stack.close()

    def wants(self, name: str) -> bool:
        wanted = self._wants.get(name)
        if wanted is None:
            wanted = self._wants[name] = any(run.wants(name) for run in self.runs)
        return wanted

    def report(self, name: str, message: str, *, module_path: str | None = None, step: int | None = None,
               where: tuple[str, int, int] | None = None, error: type[Exception] | None = None,
               outside_modules: bool = False) -> None:
        from torchcheck.registry import resolve_rule

        rule = resolve_rule(name)
        path, line, _ = where or user_frame(outside_modules)
        column, end_column = _code_span(path, line)
        finding = Finding(rule.code, rule.name, message, display(path), line, column, line, end_column,
                          rule.severity, None, module_path, step, 1, _rank())
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


def _code_span(path: str, line: int) -> tuple[int, int]:
    """The columns of the code on a line (without indentation), to mark it in reports."""
    import linecache

    text = re.sub(r"\s+#[^'\"]*$", "", linecache.getline(path, line).rstrip("\n"))
    stripped = text.lstrip()
    if not stripped:
        return 1, 1
    start = len(text) - len(stripped) + 1
    return start, len(text) + 1


def _rank() -> int | None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except Exception:  # noqa: BLE001 - a broken process group must not break the harness
        return None
    if "RANK" in os.environ and os.environ.get("WORLD_SIZE", "1") != "1":
        return int(os.environ["RANK"])
    return None


_SESSION = _Session()
