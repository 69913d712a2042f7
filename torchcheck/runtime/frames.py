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
OURS, INSTALLED, STANDARD, USER = range(4)
_kinds: dict[str, int] = {}  # file name -> what kind of code it holds
_prefixes: tuple | None = None


def _prefixes_of_kinds() -> tuple:
    global _prefixes, _TORCH_DIR
    if _prefixes is None:
        import torch

        _TORCH_DIR = str(Path(torch.__file__).resolve().parent)
        paths = sysconfig.get_paths()
        installed = {paths[key] for key in ("purelib", "platlib") if key in paths}
        installed.update(getattr(site, "getsitepackages", list)())
        installed.add(site.getusersitepackages())
        standard = {paths[key] for key in ("stdlib", "platstdlib") if key in paths}
        installed, standard = ({*group, *(str(Path(p).resolve()) for p in group)} for group in (installed, standard))
        _prefixes = ((OURS, (_TORCH_DIR, _OWN_DIR, "<frozen")), (INSTALLED, tuple(installed)),
                     (STANDARD, tuple(standard)))
    return _prefixes


def _kind(filename: str) -> int:
    kind = next((kind for kind, prefixes in _prefixes_of_kinds() if filename.startswith(prefixes)), USER)
    _kinds[filename] = kind
    return kind


def user_frame(outside_modules: bool = False) -> tuple[str, int, int]:
    """The user's line that caused a finding. With `outside_modules`, the line that called the
    outermost module (`model(x)` in the validation loop, not a line inside the model's forward)."""
    frame = sys._getframe(1)
    if outside_modules:
        _prefixes_of_kinds()
        outermost = None
        caller = frame
        while caller is not None:
            if caller.f_code.co_name == "_call_impl" and caller.f_code.co_filename.startswith(_TORCH_DIR):
                outermost = caller
            caller = caller.f_back
        if outermost is not None:
            frame = outermost.f_back
    kinds = _kinds
    fallback = None
    while frame is not None:
        filename = frame.f_code.co_filename
        kind = kinds.get(filename)
        if kind is None:
            kind = _kind(filename)
        if kind == USER:
            return filename, frame.f_lineno, 1
        if kind == INSTALLED and fallback is None:
            fallback = (filename, frame.f_lineno, 1)
        frame = frame.f_back
    return fallback or ("<unknown>", 0, 1)


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
