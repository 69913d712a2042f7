"""Where a finding points: the user's line, shown relative to the working folder, with the columns
of its code. The user's line is the first stack frame outside torch, torchcheck, the standard
library and installed packages (Lightning, transformers, ...: a finding in a framework's loop
points at the user's `training_step` line that led there); where every frame is installed code,
the first outside torch, torchcheck and the standard library."""
from __future__ import annotations

import linecache
import re
import site
import sys
import sysconfig
from pathlib import Path

_OWN_DIR = str(Path(__file__).resolve().parent.parent)
_TORCH_DIR = ""
_skipped: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None  # ours, installed, standard


def _directories() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    global _skipped, _TORCH_DIR
    if _skipped is None:
        import torch

        _TORCH_DIR = str(Path(torch.__file__).resolve().parent)
        paths = sysconfig.get_paths()
        installed = {paths[key] for key in ("purelib", "platlib") if key in paths}
        installed.update(getattr(site, "getsitepackages", list)())
        installed.add(site.getusersitepackages())
        standard = {paths[key] for key in ("stdlib", "platstdlib") if key in paths}
        installed, standard = ({*group, *(str(Path(p).resolve()) for p in group)} for group in (installed, standard))
        _skipped = (tuple(sorted((_TORCH_DIR, _OWN_DIR, "<frozen"))), tuple(sorted(installed)), tuple(sorted(standard)))
    return _skipped


def user_frame(outside_modules: bool = False) -> tuple[str, int, int]:
    """The user's line that caused a finding. With `outside_modules`, the line that called the
    outermost module (`model(x)` in the validation loop, not a line inside the model's forward)."""
    ours, installed, standard = _skipped or _directories()
    frames = _stack(sys._getframe(1))
    if outside_modules:
        frames = list(frames)
        calls = [i for i, f in enumerate(frames)
                 if f.f_code.co_name == "_call_impl" and f.f_code.co_filename.startswith(_TORCH_DIR)]
        frames = frames[calls[-1] + 1:] if calls else frames
    fallback = None
    for frame in frames:
        filename = frame.f_code.co_filename
        if filename.startswith(ours):
            continue
        if filename.startswith(installed):
            fallback = fallback or (filename, frame.f_lineno, 1)
        elif not filename.startswith(standard):
            return filename, frame.f_lineno, 1
    return fallback or ("<unknown>", 0, 1)


def _stack(frame):
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
