"""Cross-file facts: the linted tree's modules, so that a model defined in `models.py` is known in
`train.py`. Other files are parsed only when a question reaches them, and only as far as it reads
them (`pieces`); which file that is comes from the import graph (`import_graph`)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import libcst as cst
from libcst.metadata import CodePosition, CodeRange, MetadataWrapper, PositionProvider

from torchcheck import collector
from torchcheck.analysis import pieces
from torchcheck.analysis import torch_api as api
from torchcheck.analysis.dataflow import ClassInfo, FileAnalysis, FunctionInfo
from torchcheck.analysis.import_graph import (
    MAX_HELD_TOKENS_PER_MODULE,
    ImportGraph,
    Outline,
    count_tokens,
)
from torchcheck.analysis.imports import ImportTable
from torchcheck.analysis.memo import SharedMemo
from torchcheck.analysis.units import MODULE_UNIT, Dependencies
from torchcheck.analysis.values import Value
from torchcheck.digest import blake2b
from torchcheck.walk import descendants

if TYPE_CHECKING:
    from torchcheck.cache import Cache

# A run keeps the analyses it built until they pass this many tokens of source; they are then
# dropped, between two linted files, except the modules that many of the files linted since asked
# about (a package's core), with everything their answers read, within half the budget: in a large
# package every model imports the same core modules, which would otherwise be parsed and analysed
# again after each drop. A process linting transformers peaks at about 600 MB with 3M tokens; with
# 1M it rebuilt twice as many modules and ran 30% longer.
HELD_TOKENS = 3_000_000
HOT_ASKERS = 3
MAX_IMPORTERS = 8  # more files than this importing a function: a library API, its callers are unknowable


# Code that names these behaves differently in train() and eval() itself.
_MODE_WORDS = (("dropout", "dropout"), ("batch_norm", "batchnorm"), ("instance_norm", "instancenorm"),
               ("training", "training-flag"))


class Project(ImportGraph):
    """The linted tree. A module's analysis is built the first time a question reaches it and then
    answers every linted file of the run, so each file is parsed and analysed about once per process.
    Its memoised answers are pure functions of the tree (see `memo`), so findings never depend on
    which files were linted before, in which order, or in how many processes."""

    def __init__(self, files: dict[str, Path] | None = None, outlines: dict[str, Outline] | None = None,
                 cache: Cache | None = None) -> None:
        super().__init__(files, outlines)
        self._cache = cache  # the run's result cache, which also keeps where modules are cut
        # Modules this process has yet to lint (`expect`): parsed whole when a question reaches them
        # first, as their tree then serves their own lint. Any other is parsed in pieces (`pieces`),
        # as questions read them.
        self._to_lint: set[str] = set()
        self.memo = SharedMemo()
        self._analyses: dict[str, FileAnalysis | None] = {}
        self._digests: dict[str, str] = {}  # the content each held analysis was built from
        self._held = 0  # tokens of the held analyses
        self._current: tuple[str, str] | None = None  # the linted file and its content digest
        self._unheld: FileAnalysis | None = None  # the linted file's analysis, if too large to hold
        # resolved for findings' evidence only, by tree (kept, so that its id is not reused)
        self._positions: dict[int, Mapping[cst.CSTNode, CodeRange]] = {}
        self._node_ids: dict[int, tuple[cst.Module, set[int]]] = {}
        self._mode_effects: dict[ClassInfo, tuple[frozenset, bool]] = {}
        self._definitions: dict[str, tuple] = {}  # qualname -> `definition`
        self._askers: dict[str, set[str]] = {}  # module -> the linted files that asked about it since the last drop

    # -- one linted file -----------------------------------------------------------------------
    def expect(self, names: Iterable[str]) -> None:
        """The modules this process lints next (and, as far as it knows, no others)."""
        self._to_lint = set(names)

    def begin(self, name: str, source: bytes) -> FileAnalysis | None:
        """Start linting `name`; the analysis already built from this very content, if any."""
        self.memo.begin_file()
        digest = blake2b(source, digest_size=16).hexdigest()
        self._current = (name, digest)
        if self._digests.get(name) == digest and self._analyses.get(name) is not None \
                and self._analyses[name].complete():
            return self._analyses[name]
        tokens = count_tokens(source)
        if name in self.files:
            self._tokens.setdefault(name, tokens)  # counted once: `register` asks again
        if self._held + tokens > HELD_TOKENS:
            self._make_room()
        return None

    def register(self, name: str, analysis: FileAnalysis) -> None:
        """The linted file's own analysis answers the files linted after it (unless it is too large to)."""
        if self._current is None or self._current[0] != name:
            return
        if name in self.files and self.tokens(name) > MAX_HELD_TOKENS_PER_MODULE:
            self._unheld = analysis
            return
        if name not in self._analyses:
            self._held += self.tokens(name) if name in self.files else 0
        self._analyses[name] = analysis
        self._digests[name] = self._current[1]

    def end(self) -> None:
        """The linted file is done: its analysis, if too large to hold, is disposed."""
        if self._unheld is not None:
            self._unheld.dispose()
        if self._current is not None:
            self._to_lint.discard(self._current[0])
        self._current, self._unheld = None, None

    def _make_room(self) -> None:
        """Drop the held analyses except the hot modules' closures that fit in half the budget."""
        keep: set[str] = set()
        held = 0
        for name in sorted(self._askers, key=lambda m: (-len(self._askers[m]), m)):
            if len(self._askers[name]) < HOT_ASKERS:
                break
            closure = self._closure(name) - keep
            tokens = sum(self.tokens(m) for m in closure if m in self.files)
            if held + tokens <= HELD_TOKENS // 2:
                keep |= closure
                held += tokens
        for name, analysis in self._analyses.items():
            if analysis is None:
                continue
            if name in keep:
                analysis.forget_calls()
            else:
                analysis.dispose()
        self._analyses = {m: a for m, a in self._analyses.items() if m in keep}
        self._digests = {m: d for m, d in self._digests.items() if m in keep}
        self._positions, self._node_ids, self._mode_effects, self._askers = {}, {}, {}, {}
        self._held = held

    def _reached(self, analysis: FileAnalysis) -> list[FileAnalysis]:
        """`analysis` and the held analyses of the modules its answers read, and theirs."""
        found = [analysis]
        seen = {id(analysis)}
        for current in found:
            for name in current.consulted:
                other = self._analyses.get(name)
                if other is not None and id(other) not in seen:
                    seen.add(id(other))
                    found.append(other)
        return found

    def _closure(self, name: str) -> set[str]:
        """`name` and the modules whose content its held answers read, and theirs."""
        analysis = self._analyses.get(name)
        return {name}.union(*(a.consulted for a in self._reached(analysis))) if analysis is not None else {name}

    def dependencies(self, analysis: FileAnalysis) -> Dependencies:
        """What a file's findings read, through the analyses its questions reached and theirs: the
        modules, each with the parts of it they read (`units`; None: its whole text), the importers
        they searched for a name, and the dotted names whose resolution they relied on."""
        reached = self._reached(analysis)
        whole = set().union(*(a.read_whole for a in reached))
        modules: dict[str, frozenset[str] | None] = {}
        for name in set().union(*(a.consulted for a in reached)):
            if name in whole or (name in self._analyses and self._analyses[name] is None):
                modules[name] = None  # its text was searched, or it could not be analysed
            elif name in self._analyses:
                modules[name] = frozenset(self._analyses[name].units_read)
            else:  # only its outline was read, to follow a re-export
                modules[name] = frozenset({MODULE_UNIT})
        resolutions, searches = {}, {}
        for current in reached:
            resolutions.update(current.resolutions)
            searches.update(current.searches)
        return Dependencies(modules, searches, resolutions)

    def locate(self, node: cst.CSTNode, linted: FileAnalysis) -> tuple[Path, CodeRange] | None:
        """The file and span of a node of another module that the linted file's questions reached;
        None if none of them holds it. A tree's positions are resolved the first time a finding
        cites one of its nodes."""
        for name in sorted(set().union(*(a.consulted for a in self._reached(linted)))):
            analysis = self._analyses.get(name)
            if analysis is None or analysis is linted or name not in self.files:
                continue
            for tree, lines in analysis.trees():
                if id(tree) not in self._node_ids:
                    self._node_ids[id(tree)] = (tree, {id(n) for n in descendants(tree)})
                if id(node) not in self._node_ids[id(tree)][1]:
                    continue
                if id(tree) not in self._positions:
                    self._positions[id(tree)] = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(PositionProvider)
                span = self._positions[id(tree)].get(node)
                if span is not None:
                    return self.files[name], _in_file(span, lines)
        return None

    # -- cross-file questions ------------------------------------------------------------------
    def _analysis(self, name: str) -> FileAnalysis | None:
        if name not in self._analyses:
            if self.tokens(name) > MAX_HELD_TOKENS_PER_MODULE:
                self._analyses[name] = None
                return None
            try:
                source = self.files[name].read_bytes()
                digest = blake2b(source, digest_size=16).hexdigest()
                cut = pieces.cut(source, self._cut_plan(name, source, digest)) if name not in self._to_lint else None
                module = collector.parse_module(cut.skeleton if cut is not None else source)
                if cut is not None and module.default_indent != cut.indent.decode():
                    cut, module = None, collector.parse_module(source)
            except (OSError, cst.ParserSyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError):
                self._analyses[name] = None
                return None
            self._held += self.tokens(name)
            self._digests[name] = digest
            self._analyses[name] = FileAnalysis(module, ImportTable(module, name, self.files[name].name == "__init__.py"), self, name, cut)
        return self._analyses[name]

    def _cut_plan(self, name: str, source: bytes, digest: str) -> dict:
        """Where the module is cut (`pieces.plan`): kept in the cache for its content, if there is one."""
        if self._cache is None:
            return pieces.plan(source)
        plan = self._cache.cut_plan(self.files[name], digest)
        if plan is None:
            plan = pieces.plan(source)
            self._cache.put_cut_plan(self.files[name], digest, plan)
        return plan

    def importers_of(self, module: str, name: str, exclude: FileAnalysis) -> list[FileAnalysis] | None:
        """The files that import `module` and mention `name`, found from their import lines before
        anything is parsed; None if more than MAX_IMPORTERS do."""
        candidates = self.importers_mentioning(module, name)
        exclude.searches[module, name] = tuple(candidates)
        if len(candidates) > MAX_IMPORTERS:
            return None
        exclude.consulted.update(candidates)
        exclude.read_whole.update(candidates)
        found = []
        for other in candidates:
            analysis = self._analysis(other)
            if analysis is not None and analysis is not exclude:
                found.append(analysis)
        return found

    def _split(self, qualname: str, asker: FileAnalysis | None):
        """The analysis of the module that defines `qualname`, following re-exports (`from .models
        import Net` in a package's `__init__`), and the name there."""
        if qualname not in self._definitions:
            self._definitions[qualname] = self.definition(qualname)
        read, module, name, looked_up = self._definitions[qualname]
        if asker is not None:
            asker.consulted.update(read)
            asker.resolutions.update(looked_up)
        if module is not None and self._current is not None:
            self._askers.setdefault(module, set()).add(self._current[0])
        return (self._analysis(module) if module is not None else None), name

    def find_class(self, qualname: str, asker: FileAnalysis | None = None) -> ClassInfo | None:
        analysis, name = self._split(qualname, asker)
        return analysis.classes.get(name) if analysis is not None else None

    def find_function(self, qualname: str, asker: FileAnalysis | None = None) -> FunctionInfo | None:
        analysis, name = self._split(qualname, asker)
        return analysis.functions.get(name) if analysis is not None else None

    def mode_effects(self, cls: ClassInfo) -> tuple[frozenset, bool]:
        """What train() changes in the class and everything inside it ("dropout", "batchnorm",
        "instancenorm", "training-flag"), and whether every submodule is known (else more may)."""
        if cls in self._mode_effects:
            return self._mode_effects[cls]
        self._mode_effects[cls] = (frozenset(), False)  # recursion guard
        code = cls.analysis.class_code(cls)
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


def _in_file(span: CodeRange, lines: pieces.LineMap) -> CodeRange:
    return CodeRange(CodePosition(pieces.file_line(lines, span.start.line), span.start.column),
                     CodePosition(pieces.file_line(lines, span.end.line), span.end.column))
