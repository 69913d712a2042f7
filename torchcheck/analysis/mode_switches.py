"""What one iteration of a loop does to models, in order: `eval()`/`train()` switches, forwards,
backward passes and optimizer steps, following the calls it makes into functions of the tree
(in other files too). Receivers are named as the loop's own code names them: `model` in
`evaluate(model)` and `self.model` in `self.validate()` become the caller's names, and local
aliases (`model = self.model`, `model = nn.DataParallel(model)`, `model = self.train()`) are
seen through."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import (
    forward_receiver,
    is_backward,
    is_model_forward,
    stepped_optimizer,
)
from torchcheck.analysis.grad_mode import GRAD_OFF
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.structure import ClassInfo, FunctionInfo, is_model_like
from torchcheck.analysis.syntax import argument
from torchcheck.analysis.train_mode import mode_set_by
from torchcheck.walk import SCOPE_TYPES, descendants

MAX_DEPTH = 4
# Methods that return the module they are called on, moved or switched.
_SAME_MODULE_METHODS = {"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval", "requires_grad_"}
# Calls that wrap the module they are given, sharing its submodules (and so its mode).
_WRAPPERS = {name.rsplit(".", 1)[-1] for name in api.MODEL_WRAPPERS} | {"DistributedDataParallel", "DDP", "compile"}


@dataclass(frozen=True)
class Event:
    """One thing a loop's code does to a model, directly or through the calls it makes."""

    kind: str  # eval | train | forward | backward | step (its receiver: the model the optimizer updates)
    receiver: str | None  # the module, as the loop's code names it; None where it has no name there
    node: cst.CSTNode  # the call, in whichever file it is
    via: cst.Call | None = None  # the call in the loop's own code that leads to it (None: it is there)
    grad_off: bool = False  # forwards: run under no_grad
    module: bool = False  # eval/train: the receiver is known to be a module (not any object with .eval())
    where: object = field(default=None, compare=False)  # the analysis of the file `node` is in


def _nested(node: cst.CSTNode) -> bool:
    return type(node) in SCOPE_TYPES


class IterationEvents:
    """Events of code bodies, one analysis per file; function bodies are flattened once and cached."""

    def __init__(self) -> None:
        self._functions: dict[FunctionInfo, tuple[Event, ...]] = {}
        self._aliases: dict[object, dict[str, str]] = {}
        self._bound: dict[FunctionInfo, dict[str, set]] = {}

    def of_body(self, analysis, scope: FunctionInfo | None, body: cst.CSTNode, depth: int = 0) -> list[Event]:
        aliases = self.aliases(analysis, scope)
        events: list[Event] = []
        for node in descendants(body, prune=_nested):
            if type(node) is cst.Call:
                events.extend(self._call_events(analysis, scope, node, aliases, depth))
        return events

    def _call_events(self, analysis, scope, call: cst.Call, aliases, depth: int) -> list[Event]:
        callee = analysis.value(call.func)
        if callee.kind == "function" and isinstance(callee.info, FunctionInfo):
            if depth >= MAX_DEPTH:
                return []
            inner = self.of_function(callee.info, depth + 1)
            off = analysis.grad_at.get(call) == GRAD_OFF
            mapped = []
            for event in inner:
                receiver = _map_receiver(event.receiver, callee.info, call, aliases, self.bindings(callee.info)) \
                    if event.receiver else None
                mapped.append(replace(event, receiver=receiver, via=call, grad_off=event.grad_off or off))
            return mapped
        state = mode_set_by(call)
        if state is not None:
            receiver = _resolve(dotted_name(call.func.value), aliases)
            kind = "eval" if state == frozenset({"eval"}) else "train"  # `train(flag)`: it may restore
            return [Event(kind, receiver, call, module=_is_module(analysis, call.func.value), where=analysis)]
        if is_backward(analysis, call):
            return [Event("backward", None, call, where=analysis)]
        optimizer = stepped_optimizer(analysis, call)
        if optimizer is not None:  # the model it updates, where known, is trained here
            return [Event("step", _resolve(analysis.value(optimizer).source, aliases), call, where=analysis)]
        if is_model_forward(analysis, call):
            receiver = _resolve(forward_receiver(call), aliases)
            return [Event("forward", receiver, call, grad_off=analysis.grad_at.get(call) == GRAD_OFF, where=analysis)]
        if callee.kind in ("unknown", "ref") and "train" in _called_name(call) and callee.info is None:
            return [Event("train", None, call, where=analysis)]  # `set_train_mode(model)` we cannot see into
        return []

    def of_function(self, info: FunctionInfo, depth: int) -> tuple[Event, ...]:
        if info not in self._functions:
            self._functions[info] = ()  # recursion guard
            self._functions[info] = tuple(self.of_body(info.analysis, info, info.node.body, depth))
        return self._functions[info]

    def bindings(self, scope: FunctionInfo) -> dict[str, set]:
        if scope not in self._bound:
            self._bound[scope] = _bindings(scope.node.body)
        return self._bound[scope]

    def aliases(self, analysis, scope: FunctionInfo | None) -> dict[str, str]:
        key = scope if scope is not None else analysis
        if key not in self._aliases:
            bound = self.bindings(scope) if scope is not None else _bindings(analysis.module)
            self._aliases[key] = _aliases(bound, set(scope.param_names()) if scope is not None else set())
        return self._aliases[key]


def _called_name(call: cst.Call) -> str:
    func = call.func
    return func.value if isinstance(func, cst.Name) else func.attr.value if isinstance(func, cst.Attribute) else ""


def _is_module(analysis, receiver: cst.BaseExpression) -> bool:
    """`model.eval()` on something that is a module: a model or layer value, or an object of unknown
    class named like a model (not an evaluator or a metric with its own `eval`)."""
    value = analysis.value(receiver)
    if value.kind in ("model", "layer"):
        return not (isinstance(value.info, ClassInfo) and "eval" in value.info.methods)
    return value.kind == "unknown" and is_model_like(dotted_name(receiver))


def _bindings(body: cst.CSTNode) -> dict[str, set]:
    """Every local name bound in `body`, with the dotted names of the modules its assignments
    hold (`_wrapped`), None for a binding of anything else."""
    bound: dict[str, set] = {}
    for node in descendants(body, prune=_nested):
        if type(node) is cst.Assign and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name:
            bound.setdefault(node.targets[0].target.value, set()).add(_wrapped(node.value))
            continue
        if type(node) is cst.Assign:
            targets = [t.target for t in node.targets]
        elif type(node) in (cst.AnnAssign, cst.AugAssign, cst.For):
            targets = [node.target]
        elif type(node) is cst.WithItem and node.asname is not None:
            targets = [node.asname.name]
        else:
            continue
        for target in targets:
            for name in (target, *descendants(target)):
                if type(name) is cst.Name:
                    bound.setdefault(name.value, set()).add(None)
    return bound


def _aliases(bound: dict[str, set], params: set[str]) -> dict[str, str]:
    """Local names that only ever hold one module under another name: `model` for `model = self.model`
    and `model = nn.DataParallel(model)`. A name also bound to anything else is its own."""
    aliases: dict[str, str] = {}
    for name, sources in bound.items():
        sources = {s for s in sources if s != name}  # `model = DataParallel(model)` keeps what it held
        if len(sources) == 1 and None not in sources and name not in params:
            aliases[name] = next(iter(sources))
    return aliases


def _wrapped(value: cst.BaseExpression) -> str | None:
    """The dotted name of the module `value` is: `self.model` of `self.model`, `model.to(device)`,
    `nn.DataParallel(model)`, `accelerator.prepare(model)`, `self.train()`; None for anything else."""
    while isinstance(value, cst.Call):
        name = _called_name(value)
        if isinstance(value.func, cst.Attribute) and name in _SAME_MODULE_METHODS:
            value = value.func.value
        elif value.args and (name in _WRAPPERS or name == "prepare" and len(value.args) == 1):
            value = value.args[0].value
        else:
            return None
    return dotted_name(value)


def _resolve(name: str | None, aliases: dict[str, str], depth: int = 0) -> str | None:
    if name is None or depth > 8:
        return name
    head, dot, rest = name.partition(".")
    if head in aliases:
        return _resolve(aliases[head] + dot + rest, aliases, depth + 1)
    if name.endswith(".module"):  # DataParallel/DDP's wrapped model: the same modules
        return _resolve(name[: -len(".module")], aliases, depth + 1)
    return name


def _map_receiver(name: str, callee: FunctionInfo, call: cst.Call, aliases: dict[str, str], bound) -> str | None:
    """`name` as the callee's code names it, in the caller's names; None where the caller has no
    name for it (a module the callee builds itself)."""
    head, dot, rest = name.partition(".")
    params = callee.param_names()
    if callee.cls is not None and params and head == params[0]:
        outer = dotted_name(call.func.value) if isinstance(call.func, cst.Attribute) else None
    elif head in params:
        offset = 1 if callee.cls is not None and isinstance(call.func, cst.Attribute) else 0
        arg = argument(call, params.index(head) - offset, head)
        outer = dotted_name(arg.value) if arg is not None else None
    elif head in bound:
        return None
    else:
        outer = head  # a global
    return _resolve(outer + dot + rest, aliases) if outer else None
