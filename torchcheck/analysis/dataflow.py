"""The shared dataflow layer: an abstract interpreter over a file's statements.

It answers, for any expression it evaluated, what the expression holds (a `Value`), and for any
call, the grad mode and the train/eval state of models at that point. Functions and classes
defined in the linted tree are followed: a model's `forward` (and `nn.Sequential` contents), a
helper that applies softmax, a criterion passed in by every caller. Evaluation is lazy: a file
whose rules never ask a question is never interpreted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.imports import ImportTable, child_blocks, dotted_name, iter_statements
from torchcheck.analysis.values import INHERIT, NUMBER, TENSOR, UNKNOWN, Value, combine_graph, join

MAX_CALL_DEPTH = 4
_MODEL_NAME = re.compile(r"^(model|net|network|classifier|student|teacher|generator|discriminator|netG|netD|G|D)$"
                         r"|_(model|net)$|^(model|net)_", re.IGNORECASE)


def is_model_like(dotted: str | None) -> bool:
    """A name people give models: `model`, `self.net`, `teacher_model`, `netD`."""
    if not dotted:
        return False
    last = dotted.rsplit(".", 1)[-1]
    if last == "module" and "." in dotted:  # DDP/DataParallel: model.module
        last = dotted.rsplit(".", 2)[-2]
    return bool(_MODEL_NAME.search(last))
GRAD_ON, GRAD_OFF, GRAD_UNKNOWN = "on", "off", "unknown"


@dataclass(eq=False)
class FunctionInfo:
    node: cst.FunctionDef
    analysis: FileAnalysis
    cls: ClassInfo | None = None
    parent: FunctionInfo | None = None

    @property
    def name(self) -> str:
        return self.node.name.value

    def param_names(self) -> list[str]:
        p = self.node.params
        return [param.name.value for param in (*p.posonly_params, *p.params, *p.kwonly_params)]

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
    node: cst.ClassDef
    analysis: FileAnalysis
    methods: dict[str, FunctionInfo] = field(default_factory=dict)
    _attrs: dict[str, Value] | None = None
    _is_module: bool | None = None

    @property
    def name(self) -> str:
        return self.node.name.value

    @property
    def key(self) -> str:
        return f"{self.analysis.module_name}.{self.name}" if self.analysis.module_name else self.name

    def base_qualnames(self) -> list[str]:
        return [self.analysis.imports.qualname(b.value) or dotted_name(b.value) or "" for b in self.node.bases]

    def base_classes(self) -> list[ClassInfo]:
        out = []
        for base in self.node.bases:
            info = self.analysis.resolve_class(base.value)
            if info is not None and info is not self:
                out.append(info)
        return out

    def is_module(self) -> bool:
        if self._is_module is None:
            self._is_module = False  # recursion guard
            self._is_module = any(q in api.MODULE_BASES or api.loss_class(q) for q in self.base_qualnames()) or any(
                base.is_module() for base in self.base_classes()
            )
        return self._is_module

    def method(self, name: str) -> FunctionInfo | None:
        if name in self.methods:
            return self.methods[name]
        for base in self.base_classes():
            found = base.method(name)
            if found is not None:
                return found
        return None

    def attrs(self) -> dict[str, Value]:
        """`self.x` values assigned in `__init__` (and in bases' `__init__`)."""
        if self._attrs is None:
            self._attrs = {}
            merged: dict[str, Value] = {}
            for base in reversed(self.base_classes()):
                merged.update(base.attrs())
            init = self.methods.get("__init__")
            if init is not None:
                frame = Frame(self.analysis, init, record=False, depth=MAX_CALL_DEPTH - 1)
                frame.env["self"] = Value(kind="instance", info=self)
                frame.run()
                merged.update({k[5:]: v for k, v in frame.env.items() if k.startswith("self.")})
            self._attrs = merged
        return self._attrs

    def mode_dependent(self) -> bool | None:
        """True if the class (or anything inside it) behaves differently in train() and eval(); False only
        when every submodule is known and none does; None when unknown."""
        return self.analysis.project.mode_dependent(self)


class FileAnalysis:
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
        frame = Frame(self, info, record=True)
        if info.cls is not None and info.node.params.params:
            frame.env[info.node.params.params[0].name.value] = Value(
                kind="model" if info.cls.is_module() else "instance", qualname=info.cls.key, info=info.cls
            )
        for name, value in self.bound_params(info).items():
            frame.env.setdefault(name, value)
        frame.run()
        self._in_progress.discard(key)
        self._summaries[key] = frame

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
                arg = _argument(call, position, name)
                values.append(where.values.get(arg.value, UNKNOWN) if arg is not None else UNKNOWN)
            merged = values[0]
            for value in values[1:]:
                merged = join(merged, value)
            if merged.kind not in ("unknown", "tensor", "number"):
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
        frame.run()
        result = UNKNOWN
        for i, value in enumerate(frame.returns):
            result = value if i == 0 else join(result, value)
        self._in_progress.discard(key)
        self._summaries[key] = result
        return result

    # -- context queries -----------------------------------------------------------------------
    def entry_grad(self, info: FunctionInfo | None) -> str:
        """on | off: the grad mode a function body starts in, from its decorators or every caller."""
        if info is None:
            return GRAD_ON
        if info in self._entry_grad:
            return self._entry_grad[info]
        self._entry_grad[info] = GRAD_ON  # recursion guard
        decorators = info.decorator_qualnames()
        if any(q in api.NO_GRAD_CONTEXTS for q in decorators):
            result = GRAD_OFF
        elif any(q in api.ENABLE_GRAD_CONTEXTS for q in decorators):
            result = GRAD_ON
        else:
            sites = self.sites_of(info, cross_file=True)
            if sites is None:
                result = GRAD_UNKNOWN
            elif info.parent is not None and not sites:
                result = self.entry_grad(info.parent)
            elif not sites:
                result = GRAD_ON
            else:
                grads = {where.grad_of_call(c, f) for c, f, where in sites}
                result = GRAD_OFF if grads == {GRAD_OFF} else GRAD_UNKNOWN if GRAD_UNKNOWN in grads else GRAD_ON
        self._entry_grad[info] = result
        return result

    def grad_of_call(self, call: cst.CSTNode, scope: FunctionInfo | None) -> str:
        local = self.grad_at.get(call, INHERIT)
        return self.entry_grad(scope) if local == INHERIT else local

    def has_graph(self, value: Value, node: cst.CSTNode) -> bool | None:
        if value.graph == INHERIT:
            grad = self.entry_grad(self.scope.get(node))
            return True if grad == GRAD_ON else False if grad == GRAD_OFF else None
        return value.graph

    def qualname(self, node: cst.CSTNode) -> str | None:
        return self.imports.qualname(node)

    def value(self, node: cst.CSTNode) -> Value:
        self.ensure_evaluated()
        return self.values.get(node, UNKNOWN)

    def mode_at(self, call: cst.CSTNode, receiver: str) -> frozenset:
        """States ({'eval'}, {'train'}, {'unknown'}) `receiver` may be in at `call`, following callers."""
        self.ensure_evaluated()
        return self._mode_at(call, receiver, set())

    def _mode_at(self, call, receiver: str, seen: set) -> frozenset:
        modes = self.modes_at.get(call, {})
        for candidate in _receiver_prefixes(receiver):
            if candidate in modes:
                return modes[candidate]
        scope = self.scope.get(call)
        if scope is None or scope in seen:
            return frozenset({"unknown"})
        seen = seen | {scope}
        head, _, rest = receiver.partition(".")
        names = scope.param_names()
        sites = self.sites_of(scope, cross_file=True)
        if not sites:
            return frozenset({"unknown"})
        result: set = set()
        for site, _caller, where in sites:
            if scope.cls is not None and names and head == names[0]:
                outer = _self_receiver(site)
                outer_receiver = f"{outer}.{rest}" if outer and rest else outer
            else:
                offset = 1 if scope.cls is not None else 0
                position = names.index(head) - offset if head in names else -1
                arg = _argument(site, position, head) if position >= 0 else None
                base = dotted_name(arg.value) if arg is not None else None
                if base is None and head not in names:
                    base = head  # a global, e.g. the module-level `model`
                outer_receiver = f"{base}.{rest}" if base and rest else base
            if outer_receiver is None:
                result.add("unknown")
            else:
                result |= where._mode_at(site, outer_receiver, seen)
        return frozenset(result)


def _receiver_prefixes(receiver: str) -> list[str]:
    parts = receiver.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _self_receiver(call: cst.Call) -> str | None:
    if isinstance(call.func, cst.Attribute):
        return dotted_name(call.func.value)
    return None


def _argument(call: cst.Call, position: int, name: str | None = None) -> cst.Arg | None:
    """The argument given for parameter `name` at `position` (positional or keyword)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if 0 <= position < len(positional) and not any(a.star for a in call.args[: position + 1]):
        return positional[position]
    return None


argument = _argument


def _literal(node: cst.CSTNode):
    if isinstance(node, cst.Integer):
        return int(node.value.replace("_", ""), 0) if not node.value.startswith("0") or node.value == "0" else None
    if isinstance(node, cst.Float):
        return float(node.value.replace("_", ""))
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = _literal(node.expression)
        return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else None
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    return None


literal = _literal
_NOT_LITERAL = object()


class Frame:
    """One evaluation of a function body (or the module body)."""

    def __init__(self, analysis: FileAnalysis, func: FunctionInfo | None, record: bool, depth: int = 0, grad=None):
        self.fa = analysis
        self.func = func
        self.record = record
        self.depth = depth
        self.env: dict[str, Value] = {}
        self.returns: list[Value] = []
        self.modes: dict[str, frozenset] = {}
        if grad is not None:
            self.grad = grad
        elif func is None:
            self.grad = GRAD_ON
        else:
            decorators = func.decorator_qualnames()
            self.grad = (
                GRAD_OFF
                if any(q in api.NO_GRAD_CONTEXTS for q in decorators)
                else GRAD_ON
                if any(q in api.ENABLE_GRAD_CONTEXTS for q in decorators)
                else INHERIT
            )

    def run(self) -> None:
        body = self.fa.module if self.func is None else self.func.node.body
        self.exec_block(body)

    # -- statements ----------------------------------------------------------------------------
    def exec_block(self, block) -> None:
        for stmt in iter_statements(block):
            self.exec(stmt)

    def exec(self, stmt: cst.CSTNode) -> None:
        if isinstance(stmt, cst.Assign):
            value = self.eval(stmt.value)
            for target in stmt.targets:
                self.bind(target.target, value)
        elif isinstance(stmt, cst.AnnAssign):
            if stmt.value is not None:
                self.bind(stmt.target, self.eval(stmt.value))
        elif isinstance(stmt, cst.AugAssign):
            current = self.eval(stmt.target)
            self.bind(stmt.target, self.binop(current, self.eval(stmt.value)))
        elif isinstance(stmt, cst.Expr):
            self.eval(stmt.value)
        elif isinstance(stmt, cst.Return):
            self.returns.append(self.eval(stmt.value) if stmt.value is not None else UNKNOWN)
        elif isinstance(stmt, (cst.If, cst.Try, cst.Match)) or type(stmt).__name__ == "TryStar":
            if isinstance(stmt, cst.If):
                self.eval(stmt.test)
            self.exec_branches(child_blocks(stmt), exhaustive=isinstance(stmt, cst.If) and stmt.orelse is not None)
        elif isinstance(stmt, (cst.For, cst.While)):
            if isinstance(stmt, cst.For):
                self.bind(stmt.target, self.element_of(self.eval(stmt.iter)))
            else:
                self.eval(stmt.test)
            for block in child_blocks(stmt):
                self.exec_block(block)
        elif isinstance(stmt, cst.With):
            self.exec_with(stmt)
        elif isinstance(stmt, cst.FunctionDef):
            info = self.fa.function_of_node.get(stmt)
            self.env[stmt.name.value] = Value(kind="function", info=info)
        elif isinstance(stmt, cst.Assert):
            self.eval(stmt.test)
        elif isinstance(stmt, cst.Del):
            pass

    def exec_branches(self, blocks, exhaustive: bool) -> None:
        start_env, start_modes = dict(self.env), dict(self.modes)
        ends = []
        for block in blocks:
            self.env, self.modes = dict(start_env), dict(start_modes)
            self.exec_block(block)
            ends.append((self.env, self.modes))
        if not exhaustive:
            ends.append((start_env, start_modes))
        env, modes = ends[0]
        for other_env, other_modes in ends[1:]:
            env = {k: join(v, other_env[k]) for k, v in env.items() if k in other_env}
            modes = {k: v | other_modes.get(k, frozenset({"unknown"})) for k, v in modes.items()} | {
                k: v | frozenset({"unknown"}) for k, v in other_modes.items() if k not in modes
            }
        self.env, self.modes = env, modes

    def exec_with(self, stmt: cst.With) -> None:
        saved = self.grad
        for item in stmt.items:
            value = self.eval(item.item)
            if value.kind == "grad_ctx":
                self.grad = value.qualname if value.qualname in (GRAD_ON, GRAD_OFF) else saved
            elif value.kind == "unknown_grad_ctx":
                self.grad = GRAD_OFF  # set_grad_enabled(<expr>): the train/val phase pattern; trust it
            if item.asname is not None:
                self.bind(item.asname.name, UNKNOWN)
        self.exec_block(stmt.body)
        self.grad = saved

    def bind(self, target: cst.CSTNode, value: Value) -> None:
        if isinstance(target, cst.Name):
            self.env[target.value] = value
        elif isinstance(target, cst.Attribute):
            name = dotted_name(target)
            if name is not None:
                self.env[name] = value
        elif isinstance(target, (cst.Tuple, cst.List)):
            elements = target.elements
            for i, element in enumerate(elements):
                if isinstance(element, cst.StarredElement):
                    self.bind(element.value, UNKNOWN)
                    continue
                item = value.items[i] if value.kind == "tuple" and i < len(value.items) else UNKNOWN
                self.bind(element.value, item)
        if self.record:
            self.fa.values[target] = value
            self.fa.scope[target] = self.func

    def element_of(self, iterable: Value) -> Value:
        if iterable.kind == "tuple" and iterable.items:
            merged = iterable.items[0]
            for item in iterable.items[1:]:
                merged = join(merged, item)
            return merged
        return UNKNOWN

    # -- expressions ---------------------------------------------------------------------------
    def eval(self, node: cst.CSTNode | None) -> Value:
        if node is None:
            return UNKNOWN
        value = self._eval(node)
        if self.record:
            self.fa.values[node] = value
            self.fa.scope[node] = self.func
        return value

    def _eval(self, node: cst.CSTNode) -> Value:
        if isinstance(node, cst.Name):
            return self.lookup(node)
        if isinstance(node, cst.Attribute):
            return self.attribute(node)
        if isinstance(node, cst.Call):
            return self.call(node)
        if isinstance(node, (cst.Integer, cst.Float, cst.Imaginary)):
            return NUMBER
        if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
            return Value(kind="str")
        if isinstance(node, (cst.Tuple, cst.List)):
            items = []
            for element in node.elements:
                item = self.eval(element.value)
                items.append(UNKNOWN if isinstance(element, cst.StarredElement) else item)
            return Value(kind="tuple", items=tuple(items))
        if isinstance(node, cst.BinaryOperation):
            return self.binop(self.eval(node.left), self.eval(node.right))
        if isinstance(node, cst.UnaryOperation):
            inner = self.eval(node.expression)
            return inner.with_(activation=None, origin=None) if inner.is_tensor else inner
        if isinstance(node, cst.Subscript):
            return self.subscript(node)
        if isinstance(node, cst.IfExp):
            self.eval(node.test)
            return join(self.eval(node.body), self.eval(node.orelse))
        if isinstance(node, cst.Await):
            return self.eval(node.expression)
        if not isinstance(node, cst.Lambda):
            self.eval_children(node)  # comprehensions, comparisons, f-strings...: record the calls inside
        return UNKNOWN

    def eval_children(self, node: cst.CSTNode) -> None:
        for child in node.children:
            if isinstance(child, cst.BaseExpression):
                self.eval(child)
            elif not isinstance(child, (cst.BaseStatement, cst.BaseSuite)):
                self.eval_children(child)

    def lookup(self, node: cst.Name) -> Value:
        name = node.value
        if name in self.env:
            return self.env[name]
        if name in ("True", "False", "None"):
            return NUMBER
        if self.func is not None and name in self.fa.module_env:
            return self.fa.module_env[name]
        if name in self.fa.classes:
            return Value(kind="class", qualname=self.fa.classes[name].key, info=self.fa.classes[name])
        if name in self.fa.functions:
            return Value(kind="function", info=self.fa.functions[name])
        return self.imported(node)

    def imported(self, node: cst.CSTNode) -> Value:
        qualname = self.fa.imports.qualname(node)
        if qualname is None:
            return UNKNOWN
        info = self.fa.project.find_class(qualname)
        if info is not None:
            return Value(kind="class", qualname=info.key, info=info)
        function = self.fa.project.find_function(qualname)
        if function is not None:
            return Value(kind="function", info=function)
        return Value(kind="ref", qualname=qualname)

    def attribute(self, node: cst.Attribute) -> Value:
        dotted = dotted_name(node)
        if dotted is not None:
            if dotted in self.env:
                return self.env[dotted]
            head = dotted.split(".")[0]
            if head not in self.env and (self.func is None or head not in self.fa.module_env):
                if head not in self.fa.classes and head not in self.fa.functions:
                    if head in self.fa.imports.aliases:
                        return self.imported(node)
        base = self.eval(node.value)
        attr = node.attr.value
        if base.kind in ("instance", "model") and isinstance(base.info, ClassInfo):
            return self.attribute_of(base, attr)
        if base.kind == "layer" and attr == "weight":
            return Value(kind="tensor", graph=True)
        if base.is_tensor:
            if attr == "data":
                return base.with_(graph=False, is_loss=False)
            if attr in ("T", "mT", "real"):
                return base
        return UNKNOWN

    def subscript(self, node: cst.Subscript) -> Value:
        base = self.eval(node.value)
        indices = []
        for element in node.slice:
            if isinstance(element.slice, cst.Index):
                self.eval(element.slice.value)
                indices.append(_literal(element.slice.value) if isinstance(element.slice.value, cst.Integer) else None)
            else:
                indices.append(None)
        if base.kind == "tuple" and len(indices) == 1 and isinstance(indices[0], int):
            i = indices[0]
            return base.items[i] if -len(base.items) <= i < len(base.items) else UNKNOWN
        if base.is_tensor:
            shape = base.shape
            if shape is not None and len(indices) == 1 and isinstance(indices[0], int):
                shape = shape[1:]
            else:
                shape = None
            return base.with_(shape=shape, image=False, is_loss=False)
        return UNKNOWN

    def binop(self, left: Value, right: Value) -> Value:
        if left.is_tensor or right.is_tensor:
            return Value(
                kind="tensor",
                graph=combine_graph(*(g for g in (left.graph, right.graph) if g is not None)),
                is_loss=left.is_loss or right.is_loss,
                source=left.source or right.source,
            )
        if left.kind == "number" and right.kind == "number":
            return NUMBER
        return UNKNOWN

    def model_output_graph(self) -> object:
        return True if self.grad == GRAD_ON else False if self.grad == GRAD_OFF else INHERIT

    # -- calls ---------------------------------------------------------------------------------
    def call(self, node: cst.Call) -> Value:
        func = node.func
        method_base = None
        if isinstance(func, cst.Attribute):
            dotted = dotted_name(func)
            head = dotted.split(".")[0] if dotted else None
            if dotted is not None and head not in self.env and head in self.fa.imports.aliases and (
                self.func is None or head not in self.fa.module_env
            ):
                callee = self.eval(func)
            else:
                method_base = self.eval(func.value)
                callee = self.attribute_of(method_base, func.attr.value)
                if self.record:
                    self.fa.values[func] = callee
        else:
            callee = self.eval(func)
        args, kwargs = [], {}
        for arg in node.args:
            value = self.eval(arg.value)
            if arg.star:
                continue
            if arg.keyword is not None:
                kwargs[arg.keyword.value] = value
            else:
                args.append(value)
        if self.record:
            self.fa.grad_at[node] = self.grad
            self.fa.scope[node] = self.func
        if isinstance(func, cst.Attribute) and method_base is not None:
            self.track_mode(node, func)
        if self.record:
            self.fa.modes_at[node] = self.modes
        if callee.kind == "function" and isinstance(callee.info, FunctionInfo):
            if self.record:
                self.fa.call_sites.setdefault(callee.info, []).append((node, self.func))
            return self.fa.call_function(callee.info, args, kwargs, callee.bound, self)
        if method_base is not None and callee.kind == "unknown" and not (
            not method_base.is_tensor and is_model_like(dotted_name(func))
        ):
            return self.method_call(node, method_base, func.attr.value, args, kwargs)
        return self.apply(node, callee, args, kwargs)

    def attribute_of(self, base: Value, attr: str) -> Value:
        """`self.fc` / `model.encode`: an attribute set in `__init__`, or a method bound to `base`."""
        if base.kind in ("instance", "model") and isinstance(base.info, ClassInfo):
            attrs = base.info.attrs()
            if attr in attrs:
                return attrs[attr]
            method = base.info.method(attr)
            if method is not None:
                return Value(kind="function", info=method, bound=base)
        return UNKNOWN

    def track_mode(self, node: cst.Call, func: cst.Attribute) -> None:
        receiver = dotted_name(func.value)
        if receiver is None:
            return
        if func.attr.value == "eval" and not node.args:
            state = frozenset({"eval"})
        elif func.attr.value == "train":
            flag = _literal(node.args[0].value) if node.args else True
            state = frozenset({"eval" if flag is False else "train" if flag is True else "unknown"})
        else:
            return
        # A new dict, never mutated: `modes_at` shares it between calls.
        self.modes = {k: v for k, v in self.modes.items() if not k.startswith(receiver + ".")} | {receiver: state}

    def method_call(self, node: cst.Call, base: Value, name: str, args, kwargs) -> Value:
        if base.kind in ("model", "criterion", "layer") and name in ("to", "cuda", "cpu", "float", "double", "half", "train", "eval", "requires_grad_"):
            return base
        if base.kind in ("model", "criterion", "layer") and name == "forward":
            return self.apply(node, base, args, kwargs)
        if base.kind in ("ref", "class", "function", "optimizer", "scheduler", "str", "number"):
            return UNKNOWN
        graph = base.graph if base.is_tensor else None
        if name in ("softmax", "log_softmax", "sigmoid"):
            return Value(kind="tensor", activation=name, origin=node, graph=graph, source=base.source)
        if name == "exp" and base.activation == "log_softmax":
            return base.with_(activation="softmax", origin=node)
        if name == "log" and base.activation == "softmax":
            return base.with_(activation="log_softmax", origin=node)
        if not base.is_tensor:
            return UNKNOWN
        if name == "detach":
            return base.with_(graph=False)
        if name in ("item", "tolist", "numpy"):
            return NUMBER
        if name in api.DTYPE_METHODS:
            return base.with_(dtype=api.DTYPE_METHODS[name])
        if name in api.PRESERVING_METHODS:
            dtype = base.dtype
            if name in ("to", "type") and args and args[0].kind == "ref":
                dtype = api.DTYPE_NAMES.get((args[0].qualname or "").rsplit(".", 1)[-1], dtype)
            keep_shape = name in ("cuda", "cpu", "to", "contiguous", "clone")
            return base.with_(dtype=dtype, shape=base.shape if keep_shape else None, image=base.image and keep_shape)
        if name in ("sum", "mean"):
            return Value(kind="tensor", graph=graph, is_loss=base.is_loss, source=base.source)
        if name in ("requires_grad_",):
            return base.with_(graph=True)
        return Value(kind="tensor", graph=graph)

    def apply(self, node: cst.Call, callee: Value, args, kwargs) -> Value:
        first = args[0] if args else kwargs.get("input", UNKNOWN)
        kind = callee.kind
        if kind == "ref":
            return self.call_ref(node, callee.qualname or "", args, kwargs)
        if kind == "class" and isinstance(callee.info, ClassInfo):
            if callee.info.is_module():
                return Value(kind="model", qualname=callee.info.key, info=callee.info)
            return Value(kind="instance", qualname=callee.info.key, info=callee.info)
        if kind == "criterion":
            return Value(kind="tensor", is_loss=True, graph=_loss_graph(self, args), source=first.source)
        if kind == "layer":
            out = self.apply_layer(callee, first, node)
            if api.has_parameters(callee.qualname) and out.is_tensor:
                out = out.with_(graph=self.model_output_graph(), source=dotted_name(node.func) or out.source)
            return out
        if kind == "model":
            source = dotted_name(node.func) if not isinstance(node.func, cst.Attribute) or node.func.attr.value != "forward" else dotted_name(node.func.value)
            out = TENSOR
            if isinstance(callee.info, ClassInfo):
                forward = callee.info.method("forward")
                if forward is not None:
                    out = self.fa.call_function(forward, args, kwargs, callee, self)
                    if out.kind == "unknown":
                        out = TENSOR
            elif callee.qualname and api.is_torchvision_builder(callee.qualname):
                out = Value(kind="tensor", activation="logits")
            graph = self.model_output_graph()
            if out.kind == "tuple":
                return out.with_(items=tuple(i.with_(graph=graph, source=source) if i.is_tensor else i for i in out.items))
            return out.with_(graph=graph, source=source, is_loss=out.is_loss)
        if kind == "unknown" and isinstance(node.func, (cst.Name, cst.Attribute)):
            # An unknown callable named like a model, or fed tensors, gives a tensor of unknown kind.
            if is_model_like(dotted_name(node.func)):
                return Value(kind="tensor", graph=self.model_output_graph(), source=dotted_name(node.func))
            if any(a.is_tensor for a in args):
                return Value(kind="tensor", graph=None)
        return UNKNOWN

    def apply_layer(self, layer: Value, value: Value, node) -> Value:
        qualname = layer.qualname or ""
        if qualname in ("torch.nn.Sequential",):
            for item in layer.items:
                value = self.apply_layer(item, value, node) if item.kind in ("layer", "model") else Value(kind="tensor")
            return value
        if layer.kind == "model":
            return self.apply(node, layer, [value], {})
        if qualname in api.IMAGE_TRANSFORM_CLASSES or qualname == "torchvision.transforms.Compose" and layer.image:
            return Value(kind="tensor", image=True, shape=(None, None, None), graph=False)
        activation = api.LAYER_ACTIVATION.get(qualname)
        if activation is not None:
            return Value(kind="tensor", activation=activation, origin=layer.origin or node, graph=value.graph,
                         source=value.source)
        if qualname in api.TRANSPARENT_LAYERS:
            return value
        return Value(kind="tensor", graph=value.graph, source=value.source)

    def call_ref(self, node: cst.Call, qualname: str, args, kwargs) -> Value:
        first = args[0] if args else kwargs.get("input", UNKNOWN)
        if qualname in api.SOFTMAX_FUNCTIONS:
            return Value(kind="tensor", activation="softmax", origin=node, graph=first.graph, source=first.source)
        if qualname in api.LOG_SOFTMAX_FUNCTIONS:
            return Value(kind="tensor", activation="log_softmax", origin=node, graph=first.graph, source=first.source)
        if qualname in api.SIGMOID_FUNCTIONS:
            return Value(kind="tensor", activation="sigmoid", origin=node, graph=first.graph, source=first.source)
        if qualname == "torch.exp" and first.activation == "log_softmax":
            return first.with_(activation="softmax", origin=node)
        if qualname == "torch.log" and first.activation == "softmax":
            return first.with_(activation="log_softmax", origin=node)
        if qualname.startswith("torch.nn.functional."):
            name = api.functional_loss(qualname)
            if name is not None:
                return Value(kind="tensor", is_loss=True, graph=_loss_graph(self, args), source=first.source)
            if qualname.rsplit(".", 1)[1] in ("relu", "relu6", "elu", "gelu", "dropout", "linear", "leaky_relu"):
                activation = "logits" if qualname.endswith(".linear") else None
                return Value(kind="tensor", activation=activation, graph=first.graph, source=first.source)
        if api.loss_class(qualname):
            return Value(kind="criterion", qualname=api.loss_class(qualname))
        if api.is_optimizer_class(qualname):
            return Value(kind="optimizer", qualname=qualname)
        if qualname.startswith("torch.optim.lr_scheduler."):
            return Value(kind="scheduler", qualname=qualname)
        if qualname.endswith("GradScaler"):
            return Value(kind="scaler", qualname=qualname)
        if qualname in api.NO_GRAD_CONTEXTS:
            return Value(kind="grad_ctx", qualname=GRAD_OFF)
        if qualname in api.ENABLE_GRAD_CONTEXTS:
            return Value(kind="grad_ctx", qualname=GRAD_ON)
        if qualname in api.SET_GRAD_ENABLED:
            flag = _literal(node.args[0].value) if node.args else None
            if flag is True or flag is False:
                return Value(kind="grad_ctx", qualname=GRAD_ON if flag else GRAD_OFF)
            return Value(kind="unknown_grad_ctx")
        if qualname == "torch.nn.Sequential":
            items = args
            if len(args) == 1 and args[0].kind == "tuple" and args[0].items and all(i.kind == "tuple" for i in args[0].items):
                items = [i.items[1] if len(i.items) > 1 else UNKNOWN for i in args[0].items]  # OrderedDict
            return Value(kind="layer", qualname=qualname, items=tuple(items))
        if qualname in ("collections.OrderedDict",) and args:
            return args[0]
        if qualname == "torchvision.transforms.Compose":
            items = args[0].items if args and args[0].kind == "tuple" else ()
            return Value(kind="layer", qualname=qualname, image=any(i.qualname in api.IMAGE_TRANSFORM_CLASSES for i in items))
        if qualname in api.IMAGE_LOADERS:
            return Value(kind="tensor", image=True, shape=(None, None, None), graph=False)
        if api.is_torchvision_builder(qualname) or qualname == "torch.optim.swa_utils.AveragedModel":
            return Value(kind="model", qualname=qualname)
        if qualname in api.TENSOR_FACTORIES:
            return self.tensor_factory(node, qualname, args, kwargs)
        if qualname in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            return Value(kind="tensor", graph=True)
        if qualname in ("torch.stack", "torch.cat", "torch.sum", "torch.mean"):
            items = first.items if first.kind == "tuple" else (first,)
            return Value(kind="tensor", graph=combine_graph(*(i.graph for i in items)), is_loss=any(i.is_loss for i in items))
        if qualname.startswith("torch.nn.") and qualname.rsplit(".", 1)[1][:1].isupper():
            return Value(kind="layer", qualname=qualname, origin=node)
        if qualname in ("sum",):
            items = first.items if first.kind == "tuple" else ()
            return Value(kind="tensor", graph=combine_graph(*(i.graph for i in items)), is_loss=any(i.is_loss for i in items))
        if qualname.startswith("torch.") and first.is_tensor:
            return Value(kind="tensor", graph=first.graph)
        return UNKNOWN

    def tensor_factory(self, node: cst.Call, qualname: str, args, kwargs) -> Value:
        dtype = api.LEGACY_TENSOR_DTYPES.get(qualname)
        dtype_arg = next((a for a in node.args if a.keyword is not None and a.keyword.value == "dtype"), None)
        if dtype_arg is not None:
            name = dotted_name(dtype_arg.value) or ""
            dtype = api.DTYPE_NAMES.get(name.rsplit(".", 1)[-1])
        elif qualname in ("torch.tensor", "torch.as_tensor") and node.args:
            dtype = _infer_literal_dtype(node.args[0].value)
        elif qualname in ("torch.arange", "torch.randint", "torch.randperm"):
            positional = [a for a in node.args if a.keyword is None]
            literals = [_literal(a.value) for a in positional[:3]] if qualname == "torch.arange" else [0]
            dtype = "int64" if all(isinstance(v, int) and not isinstance(v, bool) for v in literals) else None
        elif qualname in ("torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.linspace"):
            dtype = "float32"
        shape = None
        if qualname in ("torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty"):
            dims = [_literal(a.value) for a in node.args if a.keyword is None]
            if len(dims) == 1 and isinstance(node.args[0].value, (cst.Tuple, cst.List)):
                dims = [_literal(e.value) for e in node.args[0].value.elements]
            if dims and all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
                shape = tuple(dims)
        requires_grad = next(
            (_literal(a.value) for a in node.args if a.keyword is not None and a.keyword.value == "requires_grad"), False
        )
        return Value(kind="tensor", dtype=dtype, shape=shape, graph=True if requires_grad is True else False)


def _loss_graph(frame: Frame, args) -> object:
    if frame.grad == GRAD_OFF:
        return False
    graphs = [a.graph for a in args[:1]]
    return combine_graph(*graphs) if graphs and graphs[0] is not None else frame.model_output_graph()


def _infer_literal_dtype(node: cst.CSTNode) -> str | None:
    values = []

    def walk(n):
        if isinstance(n, (cst.List, cst.Tuple)):
            for element in n.elements:
                walk(element.value)
        else:
            values.append(_literal(n))

    walk(node)
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float32"
    return None
