"""Where a finding points: the user's line (the first frame outside torch and torchcheck), shown
relative to the working folder, with the columns of its code."""
from __future__ import annotations

import linecache
import re
import sys
from pathlib import Path

_TORCH_DIR = None
_OWN_DIR = str(Path(__file__).resolve().parent.parent)


def _is_library(filename: str) -> bool:
    return filename.startswith((_TORCH_DIR, _OWN_DIR, "<frozen")) or "/contextlib.py" in filename


def user_frame(outside_modules: bool = False) -> tuple[str, int, int]:
    """The first stack frame outside torch and torchcheck: the user's line that caused a finding.
    With `outside_modules`, the line that called the outermost module (`model(x)` in the
    validation loop, not a line inside the model's own forward)."""
    global _TORCH_DIR
    if _TORCH_DIR is None:
        import torch

        _TORCH_DIR = str(Path(torch.__file__).resolve().parent)
    frame = sys._getframe(1)
    if outside_modules:
        frames = []
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        calls = [i for i, f in enumerate(frames)
                 if f.f_code.co_name == "_call_impl" and f.f_code.co_filename.startswith(_TORCH_DIR)]
        candidates = iter(frames[calls[-1] + 1:] if calls else frames)
    else:
        candidates = _walk(frame)
    for frame in candidates:
        if not _is_library(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno, 1
    return "<unknown>", 0, 1


def _walk(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back


def modules_being_called() -> list:
    """The modules whose __call__ is on the stack, innermost first (the last is the root model)."""
    found = []
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_call_impl":
            found.append(frame.f_locals.get("self"))
        frame = frame.f_back
    return found


def inside(filename: str) -> bool:
    """Is a function of a file named `filename` on the stack?"""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(filename):
            return True
        frame = frame.f_back
    return False


def display(path: str) -> str:
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path


def code_span(path: str, line: int) -> tuple[int, int]:
    """The columns of the code on a line (without indentation), to mark it in reports."""
    text = re.sub(r"\s+#[^'\"]*$", "", linecache.getline(path, line).rstrip("\n"))
    stripped = text.lstrip()
    if not stripped:
        return 1, 1
    start = len(text) - len(stripped) + 1
    return start, len(text) + 1
