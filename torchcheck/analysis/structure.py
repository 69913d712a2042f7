"""Model structure: the functions and classes of a file, which classes are modules, what their
`__init__` stores on `self`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.imports import dotted_name, iter_statements
from torchcheck.analysis.units import MODULE_UNIT
from torchcheck.analysis.values import Value
from torchcheck.walk import descendants

if TYPE_CHECKING:
    from torchcheck.analysis.dataflow import FileAnalysis

_MODEL_NAME = re.compile(r"^(model|net|network|classifier|student|teacher|generator|discriminator|netG|netD|G|D|"
                         r"actor|critic|encoder|decoder|backbone|unet|vae|autoencoder)$"
                         r"|_(model|net|encoder|decoder|backbone|generator|discriminator)$|^(model|net|teacher|student)_",
                         re.IGNORECASE)
# `prepare_model(...)`, `load_model(...)`: functions that take or return a model, not models.
_MODEL_VERB = re.compile(r"^_*(prepare|load|build|get|create|make|save|init|wrap|unwrap|setup|compile|export|convert|"
                         r"train|eval|evaluate|test|validate|run|fit|copy|update|sync|register|print|log|freeze|"
                         r"restore|resume|download|set|check|is|has|to|apply)_", re.IGNORECASE)
# `model_fn(model, x)`, `model_transform(y)`, `model_cls(config)`: what acts on or makes a model.
_MODEL_HELPER = re.compile(r"_(fn|fns|func|function|transform|factory|builder|cls|class|type|hook|callback|provider)$",
                           re.IGNORECASE)


@lru_cache(maxsize=4096)
def is_model_like(dotted: str | None) -> bool:
    """A name people give models: `model`, `self.net`, `teacher_model`, `netD`."""
    if not dotted:
        return False
    last = dotted.rsplit(".", 1)[-1]
    if last == "module" and "." in dotted:  # DDP/DataParallel: model.module
        last = dotted.rsplit(".", 2)[-2]
    return bool(_MODEL_NAME.search(last)) and not _MODEL_VERB.search(last) and not _MODEL_HELPER.search(last)




@dataclass(eq=False)
class FunctionInfo:
    """A function or method of an analysed module, and where it is defined."""

    definition: cst.FunctionDef
    analysis: FileAnalysis
    cls: ClassInfo | None = None
    parent: FunctionInfo | None = None
    unit: str = MODULE_UNIT  # the part of its module holding it (see `units`)

    @property
    def node(self) -> cst.FunctionDef:
        """Its code; reading it makes the asking file's cached findings depend on its part."""
        self.analysis.read(self.unit, self)
        return self.definition

    @property
    def name(self) -> str:
        return self.definition.name.value

    def param_names(self) -> list[str]:
        p = self.node.params
        return [param.name.value for param in (*p.posonly_params, *p.params, *p.kwonly_params)]

    def defaults(self) -> dict[str, cst.BaseExpression]:
        """Parameter name -> its default value's expression."""
        p = self.node.params
        return {param.name.value: param.default for param in (*p.posonly_params, *p.params, *p.kwonly_params)
                if param.default is not None}

    @cached_property
    def attributes_read(self) -> frozenset[str]:
        """`x` of every `self.x` in a method's body."""
        names = self.param_names()
        if self.cls is None or not names:
            return frozenset()
        return frozenset(node.attr.value for node in descendants(self.node.body) if type(node) is cst.Attribute
                         and isinstance(node.value, cst.Name) and node.value.value == names[0])

    def overrides(self) -> bool:
        """A base class of its class (in the tree) defines a method of its name: a hook that the base
        class's framework calls (`valid_step` of a fairseq task), in the modes it chooses."""
        return self.cls is not None and self.parent is None and \
            any(base.method(self.name) is not None for base in self.cls.base_classes())

    def decorator_qualnames(self) -> list[str]:
        out = []
        for decorator in self.node.decorators:
            expr = decorator.decorator
            if isinstance(expr, cst.Call):
                expr = expr.func
            out.append(self.analysis.imports.qualname(expr) or dotted_name(expr) or "")
        return out


@dataclass(eq=False)
class ClassInfo:
    """A class of an analysed module: its methods, attributes and bases, each resolved once."""

    definition: cst.ClassDef
    analysis: FileAnalysis
    unit: str = MODULE_UNIT
    own_methods: dict[str, FunctionInfo] = field(default_factory=dict)
    _attrs: dict[str, Value] | None = None
    _is_module: bool | None = None
    # Its bases' infos, once resolved: an analysis is only dropped with the modules its answers read.
    _bases: list[ClassInfo] | None = None

    @property
    def node(self) -> cst.ClassDef:
        self.analysis.read(self.unit)
        return self.definition

    @property
    def methods(self) -> dict[str, FunctionInfo]:
        self.analysis.read(self.unit)
        return self.own_methods

    @property
    def name(self) -> str:
        return self.definition.name.value

    @property
    def key(self) -> str:
        return f"{self.analysis.module_name}.{self.name}" if self.analysis.module_name else self.name

    def base_qualnames(self) -> list[str]:
        return [self.analysis.imports.qualname(b.value) or dotted_name(b.value) or "" for b in self.node.bases]

    def base_classes(self) -> list[ClassInfo]:
        if self._bases is None:
            resolved = [self.analysis.resolve_class(base.value) for base in self.node.bases]
            self._bases = [info for info in resolved if info is not None and info is not self]
        return self._bases

    def is_module(self) -> bool:
        if self._is_module is None:
            self._is_module = False  # recursion guard
            self._is_module = any(q in api.MODULE_BASES or api.loss_class(q) for q in self.base_qualnames()) or any(
                base.is_module() for base in self.base_classes()
            )
        return self._is_module

    def is_lightning(self) -> bool:
        """A LightningModule: Lightning runs its `validation_step` in eval mode under no_grad."""
        return any(q in api.LIGHTNING_MODULES for q in self.base_qualnames()) or any(
            base.is_lightning() for base in self.base_classes()
        )

    def record_fields(self) -> list[str] | None:
        """The fields, in order, of a dataclass or a NamedTuple class; None for other classes."""
        decorators = [d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator for d in self.node.decorators]
        if not self.is_named_tuple() and not any(
                self.analysis.imports.qualname(d) in api.RECORD_DECORATORS for d in decorators):
            return None
        return [stmt.target.value for stmt in iter_statements(self.node.body)
                if type(stmt) is cst.AnnAssign and isinstance(stmt.target, cst.Name)]

    def is_named_tuple(self) -> bool:
        return "typing.NamedTuple" in self.base_qualnames()

    def method(self, name: str) -> FunctionInfo | None:
        if name in self.methods:
            return self.methods[name]
        for base in self.base_classes():
            found = base.method(name)
            if found is not None:
                return found
        return None

    def attrs(self) -> dict[str, Value]:
        """Class attributes (`criterion = nn.CrossEntropyLoss()` in the class body) and `self.x` values
        assigned in `__init__` (and in bases')."""
        if self._attrs is None:
            from torchcheck.analysis.frame import MAX_CALL_DEPTH, Frame

            self._attrs = {}
            with self.analysis.project.memo.isolated():  # kept on the class: no enclosing evaluation may cut it
                merged: dict[str, Value] = {}
                for base in reversed(self.base_classes()):
                    merged.update(base.attrs())
                body = Frame(self.analysis, None, record=False, depth=MAX_CALL_DEPTH - 1)
                for stmt in iter_statements(self.node.body):
                    if isinstance(stmt, (cst.Assign, cst.AnnAssign)):
                        body.exec(stmt)
                merged.update({k: v for k, v in body.env.items() if "." not in k})
                init = self.methods.get("__init__")
                if init is not None:
                    frame = Frame(self.analysis, init, record=False, depth=MAX_CALL_DEPTH - 1)
                    frame.env["self"] = Value(kind="instance", info=self)
                    frame.run()
                    merged.update({k[5:]: v for k, v in frame.env.items() if k.startswith("self.")})
            self._attrs = merged
        return self._attrs

    def mode_effects(self) -> tuple[frozenset, bool]:
        """What train() changes in the class ("dropout", "batchnorm", ...), and whether all its
        submodules are known."""
        return self.analysis.project.mode_effects(self)
