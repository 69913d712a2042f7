"""Qualified names of the things a file imports, matched by meaning rather than by text.

`F.cross_entropy`, `torch.nn.functional.cross_entropy`, `from torch.nn.functional import
cross_entropy as ce` and `import torch as T; T.nn.functional.cross_entropy` all resolve to
`torch.nn.functional.cross_entropy`. Built from a walk over statements only (no expression
traversal), so it is cheap enough to compute for every file.
"""
from __future__ import annotations

import re
from functools import lru_cache

import libcst as cst

from torchcheck.analysis.torch_api import OTHER_FRAMEWORKS

# Public re-exports: the private module a class lives in is folded into the public path.
_CANONICAL_PREFIXES = [
    (re.compile(r"^torch\.nn\.modules\.\w+\."), "torch.nn."),
    (re.compile(r"^torch\.optim\.(?!lr_scheduler|swa_utils)\w+\."), "torch.optim."),
    (re.compile(r"^torch\.autograd\.variable\."), "torch.autograd."),
    (re.compile(r"^torch\.autograd\.grad_mode\."), "torch."),
    (re.compile(r"^torch\.nn\.parameter\."), "torch.nn."),
    (re.compile(r"^torch\.functional\."), "torch."),
    (re.compile(r"^pytorch_lightning\."), "lightning.pytorch."),
]


@lru_cache(maxsize=4096)
def canonical(qualname: str) -> str:
    for pattern, replacement in _CANONICAL_PREFIXES:
        qualname = pattern.sub(replacement, qualname, count=1)
    return qualname


def dotted_name(node: cst.CSTNode) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None."""
    if type(node) is cst.Name:
        return node.value
    parts: list[str] = []
    while type(node) is cst.Attribute:  # libcst's classes are ABCs: isinstance() is slow on this hot path
        parts.append(node.attr.value)
        node = node.value
    if type(node) is not cst.Name:
        return None
    parts.append(node.value)
    return ".".join(reversed(parts))


def _module_path(node: cst.BaseExpression | None) -> str:
    return dotted_name(node) or "" if node is not None else ""


def iter_statements(body) -> list[cst.CSTNode]:
    """The statements of a block, with simple statement lines opened into their small statements."""
    if type(body) is cst.SimpleStatementSuite:
        return list(body.body)
    out: list[cst.CSTNode] = []
    for stmt in getattr(body, "body", ()):
        if type(stmt) is cst.SimpleStatementLine:
            out.extend(stmt.body)
        else:
            out.append(stmt)
    return out


def child_blocks(stmt: cst.CSTNode) -> list:
    """The nested blocks of a compound statement."""
    blocks = []
    for attr in ("body", "orelse", "finalbody"):
        part = getattr(stmt, attr, None)
        if part is None:
            continue
        if type(part) is cst.If:
            blocks.append(cst.IndentedBlock(body=[part]))
        elif type(part) in (cst.Else, cst.Finally):
            blocks.append(part.body)
        elif isinstance(part, cst.BaseSuite):
            blocks.append(part)
    for handler in getattr(stmt, "handlers", ()):
        blocks.append(handler.body)
    for case in getattr(stmt, "cases", ()):
        blocks.append(case.body)
    return blocks


class ImportTable:
    """Local name -> qualified name, for every import anywhere in a module."""

    def __init__(self, module: cst.Module, module_name: str = "", is_package: bool = False) -> None:
        self.module_name = module_name
        self.is_package = is_package  # an `__init__.py`: `from .m import x` is its own submodule m
        self.aliases: dict[str, str] = {}
        self.packages: set[str] = set()  # the top-level packages of its absolute imports
        self._walk(module)

    def other_framework(self) -> str | None:
        """The framework other than PyTorch this module is written for: one it imports, when it imports
        nothing from `torch` or a `torch*` package (torchvision, torchaudio, ...)."""
        if any(package.startswith("torch") for package in self.packages):
            return None
        return min(self.packages & OTHER_FRAMEWORKS, default=None)

    def _walk(self, block) -> None:
        for stmt in iter_statements(block):
            if type(stmt) is cst.Import:
                for alias in stmt.names:
                    full = _module_path(alias.name)
                    self.packages.add(full.split(".")[0])
                    if alias.asname is not None:
                        self.aliases[alias.asname.name.value] = full
                    else:
                        head = full.split(".")[0]
                        self.aliases.setdefault(head, head)
            elif type(stmt) is cst.ImportFrom:
                base = self._resolve_relative(len(stmt.relative), _module_path(stmt.module))
                if not stmt.relative:
                    self.packages.add(base.split(".")[0])
                if type(stmt.names) is cst.ImportStar:
                    continue
                for alias in stmt.names:
                    name = _module_path(alias.name)
                    local = alias.asname.name.value if alias.asname is not None else name
                    self.aliases[local] = f"{base}.{name}" if base else name
            else:
                for block_ in child_blocks(stmt):
                    self._walk(block_)

    def _resolve_relative(self, dots: int, module: str) -> str:
        if not dots:
            return module
        parts = self.module_name.split(".") if self.module_name else []
        package = parts[: max(0, len(parts) - dots + (1 if self.is_package else 0))]
        return ".".join([*package, module] if module else package)

    def qualname(self, node: cst.CSTNode) -> str | None:
        dotted = dotted_name(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        target = self.aliases.get(head)
        if target is None:
            return None
        return canonical(f"{target}.{rest}" if rest else target)

    def local_names_for(self, qualname: str) -> list[str]:
        """Local spellings of an imported module or object, e.g. ['torch', 'T'] for 'torch'."""
        return [local for local, target in self.aliases.items() if target == qualname]
