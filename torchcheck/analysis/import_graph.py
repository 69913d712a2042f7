"""The linted tree's import graph, read from each file's import lines before anything is parsed:
which module a dotted name is, who imports whom, where a re-exported name is defined. It imports
no parser, so a warm run answered from the cache never loads libcst."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

IMPORT_LINE = re.compile(rb"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([\w., \t]+))",
                          re.MULTILINE)
TOP_LEVEL_DEFINITION = re.compile(rb"^(?:class|def|async\s+def)\s+(\w+)", re.MULTILINE)
# A token is a run of word characters or any other character but whitespace (`\w+|[^\w\s]` on bytes):
# counted by two byte translations, five times faster than the pattern's matches.
_WORD = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_SPACE = b" \t\n\r\x0b\x0c"
_WORD_AS_A = bytes(ord("a") if b in _WORD else ord(" ") for b in range(256))
MAX_REEXPORT_HOPS = 4  # `from .models import Net` in a package's __init__, and chains of them


# A module this large is generated code or data (torch's OpInfo tables: 260k tokens, 735 MB of libcst
# tree, 15 s to parse). It is linted in a process of its own, which exits after it (the memory such a
# tree leaves behind is not reused well), and never analysed to answer other files' questions.
MAX_HELD_TOKENS_PER_MODULE = 100_000


def count_tokens(source: bytes) -> int:
    words = source.translate(_WORD_AS_A)
    return len(source.translate(None, _WORD + _SPACE)) + words.count(b" a") + words.startswith(b"a")


def too_large_to_hold(path: Path, max_bytes: float) -> bool:
    """Over MAX_HELD_TOKENS_PER_MODULE, and not so large that linting skips it (`max_bytes`)."""
    try:
        size = path.stat().st_size
        if size < MAX_HELD_TOKENS_PER_MODULE or size > max_bytes:  # a token takes at least a byte
            return False
        return count_tokens(path.read_bytes()) > MAX_HELD_TOKENS_PER_MODULE
    except OSError:
        return False


_RESOLVED: dict[tuple[Path, str | None], Path] = {}


def resolved(path: Path) -> Path:
    """`path.resolve()`, once per path (and working directory, for a relative one): a run asks it of
    every file several times, and each answer costs a system call per path component."""
    key = (path, None if path.is_absolute() else os.getcwd())
    real = _RESOLVED.get(key)
    if real is None:
        real = _RESOLVED[key] = path.resolve()
    return real


def remember_resolved(path: Path, real: Path) -> None:
    """What `resolved(path)` is, known without asking the file system (a file that is not a link,
    in a folder already resolved)."""
    _RESOLVED[path, None if path.is_absolute() else os.getcwd()] = real


def relative_text(path: Path, root: Path) -> str | None:
    """`resolved(path).relative_to(resolved(root)).as_posix()`, None where it is not under `root`; by
    string operations, as a warm run asks it several times of each of thousands of files."""
    real, base = str(resolved(path)), str(resolved(root))
    if real == base:
        return "."
    prefix = base if base.endswith(os.sep) else base + os.sep
    return real[len(prefix):].replace(os.sep, "/") if real.startswith(prefix) else None


def module_name(path: Path, root: Path) -> str:
    return dotted_module(relative_text(path, root) or path.name)


def dotted_module(relative: str) -> str:
    """The module name of a file at `relative` ("/"-separated) below its root."""
    parts = relative.split("/")
    dot = parts[-1].rfind(".")
    if 0 < dot < len(parts[-1]) - 1:  # its suffix, as `Path.with_suffix("")` drops it
        parts[-1] = parts[-1][:dot]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class Outline:
    """What a file imports and defines at top level, read with two regexes, before any parsing."""

    imported: frozenset[str]
    defined: frozenset[str]


class ImportGraph:
    def __init__(self, files: dict[str, Path] | None = None, outlines: dict[str, Outline] | None = None) -> None:
        # dotted module name -> file, for every file being linted
        self.files: dict[str, Path] = dict(files or {})
        self._outlines: dict[str, Outline] = dict(outlines or {})  # known ones: read from the cache
        self._importers: dict[str, set[str]] | None = None
        self._by_suffix: dict[str, str] | None = None
        self._tokens: dict[str, int] = {}

    def known_outlines(self) -> dict[str, Outline]:
        """The outlines read so far (or given), by module."""
        return dict(self._outlines)

    def outline(self, name: str) -> Outline:
        if name not in self._outlines:
            try:
                text = self.files[name].read_bytes() if name in self.files else b""
            except OSError:
                text = b""
            is_package = name in self.files and self.files[name].name == "__init__.py"
            self._outlines[name] = Outline(frozenset(self._imported_names(name, text, is_package)),
                                           frozenset(m.decode() for m in TOP_LEVEL_DEFINITION.findall(text)))
        return self._outlines[name]

    @staticmethod
    def _imported_names(module: str, text: bytes, is_package: bool = False) -> set[str]:
        """Dotted names a file imports: `import a.b` gives a.b; `from .m import x, y`, inside package
        p (in one of its modules, or in its `__init__.py`), gives p.m, p.m.x and p.m.y (x may be a
        submodule)."""
        imported: set[str] = set()
        package = module.split(".") if is_package else module.split(".")[:-1]
        for match in IMPORT_LINE.finditer(text):
            if match.group(1):
                target = match.group(1).decode()
                dots = len(target) - len(target.lstrip("."))
                if dots:  # from .models import Net, inside package a.b -> a.b.models
                    base = package[: len(package) - dots + 1] if dots <= len(package) + 1 else []
                    target = ".".join([*base, target.lstrip(".")]).strip(".")
                names = match.group(2).decode().strip("()").replace("\\", " ").split(",")
                imported.update(f"{target}.{n.split()[0]}".strip(".") for n in names if n.split())
                if target:
                    imported.add(target)
            else:
                imported.update(part.split()[0] for part in match.group(3).decode().split(",") if part.split())
        return imported

    def resolve(self, dotted: str) -> str | None:
        """The tree's module for an imported dotted name: itself, or the first module ending with it
        (`from models import Net` run from the project root names `pkg.models`)."""
        if self._by_suffix is None:
            self._by_suffix = {}
            for module in sorted(self.files, reverse=True):
                parts = module.split(".")
                for i in range(len(parts)):
                    self._by_suffix[".".join(parts[i:])] = module
            self._by_suffix.update({m: m for m in self.files})
        return self._by_suffix.get(dotted)

    def imports_of(self, name: str) -> set[str]:
        """The tree's modules that `name` imports."""
        return {m for m in map(self.resolve, self.outline(name).imported) if m is not None and m != name}

    def importers_of_module(self, name: str) -> set[str]:
        if self._importers is None:
            self._importers = {}
            for other in self.files:
                for module in self.imports_of(other):
                    self._importers.setdefault(module, set()).add(other)
        return self._importers.get(name, set())

    def importers_mentioning(self, module: str, name: str) -> list[str]:
        """The files importing `module` whose text mentions `name`: the only ones that can call it by
        that name."""
        found = []
        for other in sorted(self.importers_of_module(module)):
            try:
                if name.encode() in self.files[other].read_bytes():
                    found.append(other)
            except OSError:
                continue
        return found

    def neighbours(self, name: str) -> set[str]:
        return self.imports_of(name) | self.importers_of_module(name) if name in self.files else set()

    def tokens(self, name: str) -> int:
        if name not in self._tokens:
            try:
                self._tokens[name] = count_tokens(self.files[name].read_bytes())
            except OSError:
                self._tokens[name] = 0
        return self._tokens[name]

    def definition(self, qualname: str) -> tuple[tuple[str, ...], str | None, str, tuple[tuple[str, str | None], ...]]:
        """(the modules read to find it, the module defining `qualname`, its name there, the dotted
        names resolved on the way that another file added to the tree could resolve otherwise),
        from outlines."""
        read: list[str] = []
        looked_up: list[tuple[str, str | None]] = []
        for _ in range(MAX_REEXPORT_HOPS):
            dotted, _, name = qualname.rpartition(".")
            if not dotted or qualname.startswith(("torch.", "torchvision.")):
                break
            module = self.resolve(dotted)
            if module != dotted:  # not found, or found by its ending (`models` as `pkg.models`)
                looked_up.append((dotted, module))
            if module is None:
                break
            read.append(module)
            if name in self.outline(module).defined:
                return tuple(read), module, name, tuple(looked_up)
            sources = [d for d in self.outline(module).imported if d.rpartition(".")[2] == name and d != qualname]
            if len(sources) != 1:
                break  # a constant, an alias, or nothing to tell which
            qualname = sources[0]
        return tuple(read), None, qualname.rpartition(".")[2], tuple(looked_up)
