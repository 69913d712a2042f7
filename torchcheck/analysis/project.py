"""Cross-file facts: the linted tree's modules, so that a model defined in `models.py` is known in
`train.py`. Other files are parsed only when a question reaches them."""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.dataflow import ClassInfo, FileAnalysis, FunctionInfo
from torchcheck.analysis.imports import ImportTable
from torchcheck.analysis.values import Value


def count_tokens(source: bytes) -> int:
    return len(_TOKEN.findall(source))


def module_name(path: Path, root: Path) -> str:
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        relative = Path(path.name)
    parts = list(relative.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_IMPORT_LINE = re.compile(rb"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([\w., \t]+))",
                          re.MULTILINE)
_TOP_LEVEL_DEFINITION = re.compile(rb"^(?:class|def|async\s+def)\s+(\w+)", re.MULTILINE)
_TOKEN = re.compile(rb"\w+|[^\w\s]")
# libcst needs 1-3.5 KB of memory per token of source (measured on torch's own files, up to 0.7 GB for
# one file). The trees alive at once, the linted file's, its neighbours' and the cached ones', are
# kept under this many tokens.
TREE_TOKENS = 150_000
MAX_IMPORTERS = 8  # more files than this importing a function: a library API, its callers are unknowable


@dataclass(frozen=True)
class Outline:
    """What a file imports and defines at top level, read with two regexes, before any parsing."""

    imported: frozenset[str]
    defined: frozenset[str]


# Code that names these behaves differently in train() and eval() itself.
_MODE_WORDS = (("dropout", "dropout"), ("batch_norm", "batchnorm"), ("instance_norm", "instancenorm"),
               ("training", "training-flag"))


class Project:
    """The linted tree. Cross-file questions asked while linting a file go one hop: to the files it
    imports and the files that import it, the same files its cache key covers. Their analyses are
    built fresh for each linted file (so a file's findings never depend on which files were linted
    before it in the same process); only their parsed trees are kept, in a small LRU."""

    def __init__(self, files: dict[str, Path] | None = None) -> None:
        # dotted module name -> file, for every file being linted
        self.files: dict[str, Path] = dict(files or {})
        self._outlines: dict[str, Outline] = {}
        self._importers: dict[str, set[str]] | None = None
        self._by_suffix: dict[str, str] | None = None
        self._tokens: dict[str, int] = {}
        self._trees: OrderedDict[str, tuple[cst.Module, ImportTable] | None] = OrderedDict()  # LRU
        self._in_use: set[str] = set()  # trees the linted file's questions have reached
        self._room = TREE_TOKENS  # tokens its questions may still parse
        self._analyses: dict[str, FileAnalysis | None] = {}
        self._positions: dict[str, Mapping[cst.CSTNode, CodeRange]] = {}  # resolved for findings' evidence only
        self._reachable: set[str] = set()
        self._mode_effects: dict[ClassInfo, tuple[frozenset, bool]] = {}

    # -- one linted file -----------------------------------------------------------------------
    def begin(self, name: str, source: bytes) -> None:
        """Start linting `name`, before its tree is parsed: only it and its neighbours can answer
        cross-file questions, and cached trees make room for its own."""
        self._analyses = {}
        self._positions = {}
        self._reachable = {name} | self.neighbours(name)
        self._mode_effects = {}
        self._in_use = set()
        self._room = TREE_TOKENS - count_tokens(source)
        self._evict()

    def register(self, name: str, analysis: FileAnalysis) -> None:
        self._analyses[name] = analysis

    def end(self) -> None:
        self._analyses = {}
        self._positions = {}
        self._reachable = set()
        self._mode_effects = {}
        self._in_use = set()

    def locate(self, node: cst.CSTNode, exclude: str) -> tuple[Path, CodeRange] | None:
        """The file and span of a node of a module other than `exclude` that the linted file's
        questions reached; None if none of them holds it. A module's positions are resolved the
        first time a finding cites one of its nodes."""
        for name, analysis in self._analyses.items():
            if analysis is None or name == exclude or name not in self.files:
                continue
            if name not in self._positions:
                wrapper = MetadataWrapper(analysis.module, unsafe_skip_copy=True)
                self._positions[name] = wrapper.resolve(PositionProvider)
            span = self._positions[name].get(node)
            if span is not None:
                return self.files[name], span
        return None

    # -- the import graph, from outlines -------------------------------------------------------
    def outline(self, name: str) -> Outline:
        if name not in self._outlines:
            try:
                text = self.files[name].read_bytes() if name in self.files else b""
            except OSError:
                text = b""
            self._outlines[name] = Outline(frozenset(self._imported_names(name, text)),
                                           frozenset(m.decode() for m in _TOP_LEVEL_DEFINITION.findall(text)))
        return self._outlines[name]

    @staticmethod
    def _imported_names(module: str, text: bytes) -> set[str]:
        """Dotted names a file imports: `import a.b` gives a.b; `from .m import x, y`, inside package
        p, gives p.m, p.m.x and p.m.y (x may be a submodule)."""
        imported: set[str] = set()
        package = module.split(".")[:-1]
        for match in _IMPORT_LINE.finditer(text):
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

    def neighbours(self, name: str) -> set[str]:
        return self.imports_of(name) | self.importers_of_module(name) if name in self.files else set()

    # -- cross-file questions ------------------------------------------------------------------
    def _analysis(self, name: str) -> FileAnalysis | None:
        if name not in self._analyses:
            tree = self._tree(name)
            self._analyses[name] = FileAnalysis(tree[0], tree[1], self, name) if tree is not None else None
        return self._analyses[name]

    def _tree(self, name: str) -> tuple[cst.Module, ImportTable] | None:
        """A neighbour's tree, if the linted file's questions have room left for it. Whether they do
        depends only on the files involved, never on what was linted before: findings stay the same
        in any order and any number of processes."""
        cost = self.tokens(name)
        if cost > self._room:
            return None
        self._room -= cost
        self._in_use.add(name)
        if name in self._trees:
            self._trees.move_to_end(name)
            return self._trees[name]
        self._evict()
        try:
            module = cst.parse_module(self.files[name].read_bytes())
        except (OSError, cst.ParserSyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError):
            self._trees[name] = None
            return None
        tree = self._trees[name] = (module, ImportTable(module, name))
        return tree

    def tokens(self, name: str) -> int:
        if name not in self._tokens:
            try:
                self._tokens[name] = count_tokens(self.files[name].read_bytes())
            except OSError:
                self._tokens[name] = 0
        return self._tokens[name]

    def _evict(self) -> None:
        """Drop least recently used trees, outside the linted file's, until the cached ones fit in
        the room its questions have left."""
        for name in list(self._trees):
            if sum(self.tokens(n) for n in self._trees if n not in self._in_use) <= max(self._room, 0):
                break
            if name not in self._in_use:
                del self._trees[name]

    def importers_of(self, module: str, name: str, exclude: FileAnalysis) -> list[FileAnalysis] | None:
        """The neighbours that import `module` and mention `name`, found from their import lines
        before anything is parsed; None if more than MAX_IMPORTERS do."""
        candidates = []
        for other in sorted(self.importers_of_module(module) & self._reachable):
            try:
                if name.encode() in self.files[other].read_bytes():
                    candidates.append(other)
            except OSError:
                continue
        if len(candidates) > MAX_IMPORTERS:
            return None
        found = []
        for other in candidates:
            analysis = self._analysis(other)
            if analysis is not None and analysis is not exclude:
                found.append(analysis)
        return found

    def _split(self, qualname: str):
        dotted, _, name = qualname.rpartition(".")
        if not dotted or qualname.startswith(("torch.", "torchvision.")):
            return None, name
        module = dotted if dotted in self._analyses else self.resolve(dotted)
        if module is None or module not in self._reachable:
            return None, name
        if module not in self._analyses and name not in self.outline(module).defined:
            return None, name  # a constant or a re-export: nothing to parse the file for
        return self._analysis(module), name

    def find_class(self, qualname: str) -> ClassInfo | None:
        analysis, name = self._split(qualname)
        return analysis.classes.get(name) if analysis is not None else None

    def find_function(self, qualname: str) -> FunctionInfo | None:
        analysis, name = self._split(qualname)
        return analysis.functions.get(name) if analysis is not None else None

    def mode_effects(self, cls: ClassInfo) -> tuple[frozenset, bool]:
        """What train() changes in the class and everything inside it ("dropout", "batchnorm",
        "instancenorm", "training-flag"), and whether every submodule is known (else more may)."""
        if cls in self._mode_effects:
            return self._mode_effects[cls]
        self._mode_effects[cls] = (frozenset(), False)  # recursion guard
        code = cls.analysis.module.code_for_node(cls.node)
        effects = {effect for word, effect in _MODE_WORDS if word in code}
        complete = True
        for value in [*cls.attrs().values(), *(Value(kind="layer", qualname=q) for q in cls.base_qualnames() if q in api.MODE_EFFECTS)]:
            more, known = self.value_mode_effects(value)
            effects |= more
            complete &= known
        for base in cls.base_classes():
            more, known = self.mode_effects(base)
            effects |= more
            complete &= known
        self._mode_effects[cls] = (frozenset(effects), complete)
        return self._mode_effects[cls]

    def value_mode_effects(self, value: Value) -> tuple[frozenset, bool]:
        """`mode_effects` of a model or layer value (an `nn.Sequential` model's layers)."""
        if value.kind == "layer" and value.qualname in api.MODE_EFFECTS:
            return frozenset({api.MODE_EFFECTS[value.qualname]}), True
        if value.kind == "model" and isinstance(value.info, ClassInfo):
            return self.mode_effects(value.info)
        if value.kind in ("layer", "tuple") and value.items:
            parts = [self.value_mode_effects(item) for item in value.items]
            return frozenset().union(*(e for e, _ in parts)), all(known for _, known in parts)
        if value.kind == "layer":
            return frozenset(), (value.qualname or "").startswith("torch.nn.")
        return frozenset(), value.kind in ("number", "str", "criterion", "tensor", "optimizer", "tuple")
        if value.kind == "tuple":
            verdicts = [self._value_mode_dependent(i) for i in value.items]
            return True if any(verdicts) else (None if None in verdicts else False)
        if value.kind in ("number", "str", "criterion", "tensor", "optimizer"):
            return False
        return None
