"""Cross-file facts: the linted tree's modules, so that a model defined in `models.py` is known in
`train.py`. Other files are parsed only when a question reaches them, and once per process."""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.dataflow import ClassInfo, FileAnalysis, FunctionInfo
from torchcheck.analysis.imports import ImportTable
from torchcheck.analysis.values import Value


def module_name(path: Path, root: Path) -> str:
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        relative = Path(path.name)
    parts = list(relative.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_IMPORT_LINE = re.compile(rb"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w., ]+))", re.MULTILINE)
CACHE_SIZE = 16  # parsed files kept for cross-file questions; bounds memory on huge trees
MAX_IMPORTERS = 8  # more files than this importing a function: a library API, its callers are unknowable


class Project:
    def __init__(self, files: dict[str, Path] | None = None) -> None:
        # dotted module name -> file, for every file being linted
        self.files: dict[str, Path] = dict(files or {})
        self._analyses: OrderedDict[str, FileAnalysis | None] = OrderedDict()
        self._imports: dict[str, set[str]] = {}
        self._mode_dependent: dict[ClassInfo, bool | None] = {}

    def register(self, name: str, analysis: FileAnalysis) -> None:
        self._remember(name, analysis)

    def forget(self, name: str) -> None:
        """Drop a linted file's analysis (its tree and values): other files reload it if they ask."""
        self._analyses.pop(name, None)

    def _remember(self, name: str, analysis: FileAnalysis | None) -> None:
        self._analyses[name] = analysis
        self._analyses.move_to_end(name)
        while len(self._analyses) > CACHE_SIZE:
            self._analyses.popitem(last=False)

    def analysis_for(self, name: str) -> FileAnalysis | None:
        for candidate in self._candidates(name):
            if candidate not in self._analyses:
                self._remember(candidate, self._load(candidate))
            else:
                self._analyses.move_to_end(candidate)
            if self._analyses[candidate] is not None:
                return self._analyses[candidate]
        return None

    def _candidates(self, name: str) -> list[str]:
        if name in self.files or name in self._analyses:
            return [name]
        suffix = "." + name
        return sorted(m for m in self.files if m.endswith(suffix))[:1]

    def _load(self, name: str) -> FileAnalysis | None:
        path = self.files.get(name)
        if path is None:
            return None
        try:
            module = cst.parse_module(path.read_bytes())
        except (OSError, cst.ParserSyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        return FileAnalysis(module, ImportTable(module, name), self, name)

    def importers_of(self, module: str, name: str, exclude: FileAnalysis) -> list[FileAnalysis] | None:
        """The other files of the tree that import `module` and mention `name`, found from their
        import lines before anything is parsed; None if more than MAX_IMPORTERS do."""
        candidates = []
        for other, path in sorted(self.files.items()):
            imported = self._imported_modules(other, path)
            if other == module or (module not in imported and module.rsplit(".", 1)[-1] not in imported):
                continue
            try:
                if name.encode() in path.read_bytes():
                    candidates.append(other)
            except OSError:
                continue
        if len(candidates) > MAX_IMPORTERS:
            return None
        found = []
        for other in candidates:
            analysis = self.analysis_for(other)
            if analysis is not None and analysis is not exclude:
                found.append(analysis)
        return found

    def _imported_modules(self, module: str, path: Path) -> set[str]:
        if module not in self._imports:
            try:
                text = path.read_bytes()
            except OSError:
                text = b""
            imported: set[str] = set()
            package = module.split(".")[:-1]
            for match in _IMPORT_LINE.finditer(text):
                if match.group(1):
                    target = match.group(1).decode()
                    dots = len(target) - len(target.lstrip("."))
                    if dots:  # from .models import Net, inside package a.b -> a.b.models
                        base = package[: len(package) - dots + 1] if dots <= len(package) + 1 else []
                        target = ".".join([*base, target.lstrip(".")]).strip(".")
                    imported.add(target)
                else:
                    imported.update(part.split()[0] for part in match.group(2).decode().split(",") if part.split())
            # `from models import Net` names module `models`; so does `from pkg.models import Net`.
            self._imports[module] = imported | {m.rsplit(".", 1)[-1] for m in imported}
        return self._imports[module]

    def _split(self, qualname: str):
        module, _, name = qualname.rpartition(".")
        if not module or qualname.startswith(("torch.", "torchvision.")):
            return None, name
        return self.analysis_for(module), name

    def find_class(self, qualname: str) -> ClassInfo | None:
        analysis, name = self._split(qualname)
        return analysis.classes.get(name) if analysis is not None else None

    def find_function(self, qualname: str) -> FunctionInfo | None:
        analysis, name = self._split(qualname)
        return analysis.functions.get(name) if analysis is not None else None

    def mode_dependent(self, cls: ClassInfo) -> bool | None:
        if cls in self._mode_dependent:
            return self._mode_dependent[cls]
        self._mode_dependent[cls] = None  # recursion guard
        result: bool | None = False
        code = cls.analysis.module.code_for_node(cls.node)
        if "training" in code or "dropout" in code or "batch_norm" in code:
            result = True
        else:
            for value in cls.attrs().values():
                verdict = self._value_mode_dependent(value)
                if verdict:
                    result = True
                    break
                if verdict is None:
                    result = None
        if any(q in api.MODE_DEPENDENT_LAYERS for q in cls.base_qualnames()):
            result = True
        for base in cls.base_classes():
            verdict = self.mode_dependent(base)
            result = True if verdict or result else (None if verdict is None or result is None else False)
        self._mode_dependent[cls] = result
        return result

    def _value_mode_dependent(self, value: Value) -> bool | None:
        if value.kind == "layer":
            if value.qualname in api.MODE_DEPENDENT_LAYERS:
                return True
            if value.items:
                verdicts = [self._value_mode_dependent(i) for i in value.items]
                return True if any(verdicts) else (None if None in verdicts else False)
            return False if (value.qualname or "").startswith("torch.nn.") else None
        if value.kind == "model":
            if isinstance(value.info, ClassInfo):
                return self.mode_dependent(value.info)
            return None
        if value.kind == "tuple":
            verdicts = [self._value_mode_dependent(i) for i in value.items]
            return True if any(verdicts) else (None if None in verdicts else False)
        if value.kind in ("number", "str", "criterion", "tensor", "optimizer"):
            return False
        return None
