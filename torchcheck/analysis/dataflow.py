"""The shared dataflow layer: an abstract interpreter over a file's statements.

It answers, for any expression it evaluated, what the expression holds (a `Value`), and for any
call, the grad mode and the train/eval state of models at that point. Functions and classes
defined in the linted tree are followed: a model's `forward` (and `nn.Sequential` contents), a
helper that applies softmax, a criterion passed in by every caller. Evaluation is lazy: a file
whose rules never ask a question is never interpreted.

The layer is split by concern: `structure` (functions, classes, model attributes), `frame`
(statements and expressions), `semantics` (what calls do), `grad_mode` and `train_mode` (the
context at a call), `syntax` (argument binding, literals).
"""
from __future__ import annotations

import re

import libcst as cst

from torchcheck.analysis.frame import MAX_CALL_DEPTH, Frame
from torchcheck.analysis.grad_mode import GRAD_OFF, GRAD_ON, GRAD_UNKNOWN, GradModeQueries
from torchcheck.analysis.imports import ImportTable, child_blocks, iter_statements
from torchcheck.analysis.structure import ClassInfo, FunctionInfo, is_model_like
from torchcheck.analysis.syntax import argument, literal
from torchcheck.analysis.train_mode import TrainModeQueries
from torchcheck.analysis.values import UNKNOWN, Value, join
from torchcheck.walk import descendants

_LOSS_FUNCTION = re.compile(r"(^|_)loss$", re.IGNORECASE)

__all__ = ["GRAD_OFF", "GRAD_ON", "GRAD_UNKNOWN", "ClassInfo", "FileAnalysis", "FunctionInfo", "argument",
           "is_model_like", "literal"]


class FileAnalysis(GradModeQueries, TrainModeQueries):
    def __init__(self, module: cst.Module, imports: ImportTable, project, module_name: str = "") -> None:
        self.module = module
        self.imports = imports
        self.project = project
        self.module_name = module_name
        self.functions: dict[str, FunctionInfo] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.all_functions: list[FunctionInfo] = []
        self.function_of_node: dict[cst.FunctionDef, FunctionInfo] = {}
        self._index(module, None, None)
        self.values: dict[cst.CSTNode, Value] = {}
        self.scope: dict[cst.CSTNode, FunctionInfo | None] = {}
        self.grad_at: dict[cst.CSTNode, str] = {}  # call -> on | off | inherit (lexical)
        self.modes_at: dict[cst.CSTNode, dict[str, frozenset]] = {}
        self.call_sites: dict[FunctionInfo, list[tuple[cst.Call, FunctionInfo | None]]] = {}
        self.module_env: dict[str, Value] = {}
        self._evaluated = False
        self._in_progress: set = set()
        self._summaries: dict = {}
        self._entry_grad: dict[FunctionInfo, str] = {}
        self._callers: dict[str, list[FunctionInfo]] | None = None

    # -- index ---------------------------------------------------------------------------------
    def _index(self, block, cls: ClassInfo | None, parent: FunctionInfo | None) -> None:
        for stmt in iter_statements(block):
            if isinstance(stmt, cst.FunctionDef):
                info = FunctionInfo(stmt, self, cls, parent)
                self.all_functions.append(info)
                self.function_of_node[stmt] = info
                if cls is not None and parent is None:
                    cls.methods[info.name] = info
                elif cls is None and parent is None:
                    self.functions[info.name] = info
                self._index(stmt.body, None, info)
            elif isinstance(stmt, cst.ClassDef):
                info = ClassInfo(stmt, self)
                if cls is None and parent is None:
                    self.classes[info.name] = info
                self._index(stmt.body, info, None)
            else:
                for inner in child_blocks(stmt):
                    self._index(inner, cls, parent)

    def resolve_class(self, expr: cst.CSTNode) -> ClassInfo | None:
        if isinstance(expr, cst.Name) and expr.value in self.classes:
            return self.classes[expr.value]
        qualname = self.imports.qualname(expr)
        return self.project.find_class(qualname) if qualname else None

    def resolve_function(self, expr: cst.CSTNode) -> FunctionInfo | None:
        if isinstance(expr, cst.Name) and expr.value in self.functions:
            return self.functions[expr.value]
        qualname = self.imports.qualname(expr)
        return self.project.find_function(qualname) if qualname else None

    # -- evaluation ----------------------------------------------------------------------------
    def ensure_evaluated(self) -> None:
        if self._evaluated:
            return
        self._evaluated = True
        frame = Frame(self, None, record=True)
        frame.run()
        self.module_env = frame.env
        for info in self.all_functions:
            self.evaluate_standalone(info)

    def evaluate_standalone(self, info: FunctionInfo) -> None:
        key = ("standalone", info)
        if key in self._summaries or key in self._in_progress:
            return
        self._in_progress.add(key)
        for caller in self._callers_named(info.name):
            self.evaluate_standalone(caller)  # records the calls that bind this function's parameters
        frame = Frame(self, info, record=True)
        if info.cls is not None and info.node.params.params:
            frame.env[info.node.params.params[0].name.value] = Value(
                kind="model" if info.cls.is_module() else "instance", qualname=info.cls.key, info=info.cls
            )
        for name, value in self.bound_params(info).items():
            frame.env.setdefault(name, value)
        passed = self._passed_params(info)
        _bind_defaults(frame, info, skip=passed)
        frame.run()
        self._in_progress.discard(key)
        self._summaries[key] = frame

    def _callers_named(self, name: str) -> list[FunctionInfo]:
        """The functions of this file with a call of `name` (or `x.name`) in them, by syntax alone."""
        if self._callers is None:
            self._callers = {}
            for info in self.all_functions:
                for node in descendants(info.node.body):
                    if isinstance(node, cst.Call):
                        func = node.func
                        called = func.value if isinstance(func, cst.Name) else func.attr.value if isinstance(func, cst.Attribute) else None
                        callers = self._callers.setdefault(called, [])
                        if called and (not callers or callers[-1] is not info):
                            callers.append(info)
        return self._callers.get(name, [])

    def _passed_params(self, info: FunctionInfo) -> set[str]:
        """The parameters some call of the function in this file passes."""
        names = info.param_names()
        offset = 1 if info.cls is not None else 0
        return {name for call, _caller, _where in self.sites_of(info) for position, name in enumerate(names[offset:])
                if argument(call, position, name) is not None}

    def bound_params(self, info: FunctionInfo) -> dict[str, Value]:
        """Parameter values that every caller in this file agrees on (e.g. the criterion passed in)."""
        sites = self.sites_of(info)
        if not sites:
            return {}
        names = info.param_names()
        offset = 1 if info.cls is not None else 0
        agreed: dict[str, Value] = {}
        for position, name in enumerate(names[offset:]):
            values = []
            for call, _caller, where in sites:
                arg = argument(call, position, name)
                values.append(where.values.get(arg.value, UNKNOWN) if arg is not None else UNKNOWN)
            merged = values[0]
            for value in values[1:]:
                merged = join(merged, value)
            # A tensor only where every caller passes the same: its facts (a teacher's probabilities,
            # a model's logits) then hold for each call.
            if merged.kind not in ("unknown", "number") and (merged.kind != "tensor" or values.count(merged) == len(values)):
                agreed[name] = merged
        return agreed

    def sites_of(self, info: FunctionInfo, cross_file: bool = False):
        """Calls of a function as (call, calling function, its file's analysis). With `cross_file`, a
        top-level function that nothing in its file calls is looked up in the files that import it;
        None when too many files do to tell (a library API)."""
        self.ensure_evaluated()
        sites = self.call_sites.get(info, [])
        if sites or not cross_file or info.cls is not None or info.parent is not None:
            return [(call, caller, self) for call, caller in sites]
        importers = self.project.importers_of(self.module_name, info.name, exclude=self)
        if importers is None:
            return None
        found = []
        for other in importers:
            other.ensure_evaluated()
            found.extend((call, caller, other) for call, caller in other.call_sites.get(info, []))
        return found

    def call_function(self, info: FunctionInfo, args, kwargs, bound: Value | None, caller: Frame) -> Value:
        """The return value of a project function called with these argument values."""
        key = (info, bound.kind if bound else None, tuple(args), tuple(sorted(kwargs.items())), caller.grad)
        if key in self._summaries:
            return self._summaries[key]
        if key in self._in_progress or caller.depth >= MAX_CALL_DEPTH:
            return UNKNOWN
        self._in_progress.add(key)
        frame = Frame(info.analysis, info, record=False, depth=caller.depth + 1, grad=caller.grad)
        names = info.param_names()
        if bound is not None and names:
            frame.env[names[0]] = bound
            names = names[1:]
        for name, value in zip(names, args):
            frame.env[name] = value
        for name, value in kwargs.items():
            frame.env[name] = value
        _bind_defaults(frame, info, skip=frame.env)
        frame.run()
        result = UNKNOWN
        for i, value in enumerate(frame.returns):
            result = value if i == 0 else join(result, value)
        if result.is_tensor and _LOSS_FUNCTION.search(info.name):
            result = result.with_(is_loss=True)  # `compute_loss(...)`, `_smooth_l1_loss(...)`
        self._in_progress.discard(key)
        self._summaries[key] = result
        return result


    def qualname(self, node: cst.CSTNode) -> str | None:
        return self.imports.qualname(node)

    def value(self, node: cst.CSTNode) -> Value:
        self.ensure_evaluated()
        return self.values.get(node, UNKNOWN)



def _bind_defaults(frame: Frame, info: FunctionInfo, skip) -> None:
    """Parameters no caller passes hold their default: `criterion=nn.CrossEntropyLoss()`."""
    params = info.node.params
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.default is not None and param.name.value not in skip and param.name.value not in frame.env:
            frame.env[param.name.value] = frame.eval(param.default)
