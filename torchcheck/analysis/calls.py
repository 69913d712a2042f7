"""Call-shaped questions several rules ask: is this a loss call, an optimizer step, a backward,
a model forward; and how to rewrite an argument list without breaking its commas."""
from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.dataflow import ClassInfo, argument, is_model_like
from torchcheck.analysis.imports import dotted_name
from torchcheck.walk import descendants, walk

_OPTIMIZER_NAME = re.compile(r"optim|^opts?(_|$)|_opts?$|^opt[A-Z]", re.IGNORECASE)
_NOT_OPTIMIZER = re.compile(r"sched|lr|warmup|scaler", re.IGNORECASE)


@dataclass(frozen=True)
class LossCall:
    """A call that computes a loss: a criterion called, or a functional loss, with its input and target."""

    loss: str  # the loss class, e.g. CrossEntropyLoss
    call: cst.Call
    input: cst.BaseExpression | None
    target: cst.BaseExpression | None
    callee_text: str


def loss_call(ctx, node: cst.Call) -> LossCall | None:
    """The loss computed by `node`, whether functional (`F.cross_entropy(x, y)`) or a criterion
    object (`criterion(x, y)`, `self.criterion.forward(x, y)`) of a known loss class."""
    if not _input_and_target(node):
        return None  # every loss takes both: no need to ask what the callee holds
    qualname = ctx.qualname(node.func)
    if qualname is None and isinstance(node.func, (cst.Name, cst.Attribute)):
        held = ctx.value(node.func)  # `self.loss_func = F.binary_cross_entropy_with_logits`
        qualname = held.qualname if held.kind == "ref" else None
    name = api.functional_loss(qualname)
    if name is not None:
        loss, params = api.FUNCTIONAL_LOSSES[name]
        first = argument(node, 0, params[0])
        second = argument(node, 1, params[1])
        return LossCall(loss, node, first.value if first else None, second.value if second else None,
                        dotted_name(node.func) or name)
    func = node.func
    if isinstance(func, cst.Attribute) and func.attr.value == "forward":
        func = func.value
    if not isinstance(func, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):  # Subscript: `losses["cls"](x, y)`
        return None
    loss = api.loss_class(ctx.qualname(func.func)) if isinstance(func, cst.Call) else None  # nn.CrossEntropyLoss()(x, y)
    if loss is None:  # a criterion by dataflow: `criterion`, `self.losses["ce"]`, `make_criterion(cfg)`
        value = ctx.value(func)
        loss = value.qualname if value.kind == "criterion" else None
    if loss is None:
        return None
    first = argument(node, 0, "input")
    second = argument(node, 1, "target")
    return LossCall(loss, node, first.value if first else None, second.value if second else None,
                    dotted_name(func) or short_code(ctx, func, limit=30))


def _input_and_target(node: cst.Call) -> bool:
    return len(node.args) >= 2 or any(arg.star for arg in node.args)


def short_code(ctx, node: cst.CSTNode, limit: int = 60) -> str:
    """The source of `node` on one line, shortened for a message."""
    text = " ".join(ctx.code(node).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def origin_note(ctx, value) -> str:
    """` (from `F.softmax(x, dim=1)`)`: where a tensor got its activation, for messages."""
    return f" (from `{short_code(ctx, value.origin)}`)" if isinstance(value.origin, cst.CSTNode) else ""


_ACTIVATION_NOTE = {"softmax": "softmax applied here", "log_softmax": "log-softmax applied here",
                    "sigmoid": "sigmoid applied here", "logits": "logits computed here"}


def loss_evidence(ctx, loss: LossCall, value) -> list[tuple[cst.CSTNode, str]]:
    """The evidence chain of a finding about a loss's input `value`, for `Rule.report(related=...)`:
    where its activation was applied (maybe in a model's forward in another module), where the input
    variable was assigned, where the criterion was created."""
    evidence = []
    if isinstance(value.origin, cst.CSTNode) and value.activation in _ACTIVATION_NOTE:
        evidence.append((value.origin, _ACTIVATION_NOTE[value.activation]))
    evidence.extend(source_evidence(ctx, loss.input))
    func = loss.call.func
    if isinstance(func, cst.Attribute) and func.attr.value == "forward":
        func = func.value
    criterion = ctx.value(func)
    if criterion.kind == "criterion" and isinstance(criterion.origin, cst.CSTNode):
        evidence.append((criterion.origin, f"`{loss.callee_text}` ({criterion.qualname}) created here"))
    return evidence


def source_evidence(ctx, expr: cst.CSTNode | None) -> list[tuple[cst.CSTNode, str]]:
    """Where the tensor `expr` came from: the model class whose forward returned it, and the
    assignment of the variable that holds it."""
    if isinstance(expr, cst.Call):
        return forward_evidence(ctx, expr)
    binding = last_binding(ctx, expr)
    if binding is None:
        return []
    name, value = binding
    returned = forward_evidence(ctx, value) if isinstance(value, cst.Call) else []
    return [*returned, (name, f"`{name.value}` assigned here")]


def forward_evidence(ctx, call: cst.Call) -> list[tuple[cst.CSTNode, str]]:
    """`[(def forward, "returned by `Net.forward`")]` when `call` runs a model class of the project."""
    model = ctx.value(forward_model(call))
    forward = model.info.method("forward") if model.kind == "model" and isinstance(model.info, ClassInfo) else None
    return [(forward.node.name, f"returned by `{model.info.name}.forward`")] if forward is not None else []


def last_binding(ctx, use: cst.CSTNode | None) -> tuple[cst.Name, cst.BaseExpression | None] | None:
    """The target that last bound the variable `use` before it, in the enclosing function, and the
    value assigned to it as a whole (None for unpacking and for-loop targets); None if `use` is not
    a variable or none is found."""
    if not isinstance(use, cst.Name):
        return None
    scope = ctx.functions[-1] if ctx.functions else ctx.module
    index = ctx.memo.setdefault("bindings", {})
    if scope not in index:
        index[scope] = _Bindings(scope)
    return index[scope].before(use)


class _Bindings:
    """Every binding of a variable in a scope, in the order a walk meets it: a for-loop binds before
    its body runs, an assignment after its value is computed (`x = f(x)` uses the old `x`)."""

    def __init__(self, scope: cst.CSTNode) -> None:
        self.order: dict[cst.Name, int] = {}
        self.bound: dict[str, list[tuple[int, cst.Name, cst.BaseExpression | None]]] = {}
        counter = 0

        def on_visit(node: cst.CSTNode) -> None:
            nonlocal counter
            counter += 1
            if type(node) is cst.Name:
                self.order[node] = counter
            elif type(node) is cst.For:
                for name in _bound_names(node.target):
                    self.bound.setdefault(name.value, []).append((counter, name, None))

        def on_leave(node: cst.CSTNode) -> None:
            nonlocal counter
            counter += 1
            if type(node) not in (cst.Assign, cst.AnnAssign) or node.value is None:
                return
            for target in node.targets if type(node) is cst.Assign else [node]:  # an AnnAssign is its own target
                for name in _bound_names(target.target):
                    value = node.value if name is target.target else None
                    self.bound.setdefault(name.value, []).append((counter, name, value))

        walk(scope, on_visit, on_leave)

    def before(self, use: cst.Name) -> tuple[cst.Name, cst.BaseExpression | None] | None:
        at = self.order.get(use)
        if at is None:
            return None
        earlier = [(name, value) for when, name, value in self.bound.get(use.value, ()) if when < at]
        return earlier[-1] if earlier else None


def _bound_names(target: cst.BaseExpression) -> list[cst.Name]:
    if isinstance(target, cst.Name):
        return [target]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for element in target.elements for n in _bound_names(element.value)]
    return []


def only_use_is(ctx, name: cst.CSTNode, origin) -> bool:
    """`probs = F.softmax(x, 1)` assigned once, in this function, and used only here (`name`)."""
    if not isinstance(name, cst.Name) or not isinstance(origin, cst.Call):
        return False
    scope = ctx.functions[-1] if ctx.functions else ctx.module
    assigns = [n for n in descendants(scope) if type(n) is cst.Assign and n.value is origin]
    if len(assigns) != 1 or len(assigns[0].targets) != 1:
        return False
    target = assigns[0].targets[0].target
    if not isinstance(target, cst.Name) or target.value != name.value:
        return False
    return sum(type(n) is cst.Name and n.value == name.value for n in descendants(scope)) == 2


def method_name(node: cst.Call) -> str | None:
    return node.func.attr.value if type(node.func) is cst.Attribute else None


def receiver(node: cst.Call) -> str | None:
    return dotted_name(node.func.value) if isinstance(node.func, cst.Attribute) else None


def is_backward(ctx, node: cst.Call) -> bool:
    return method_name(node) == "backward" or ctx.qualname(node.func) == "torch.autograd.backward"


def stepped_optimizer(ctx, node: cst.Call) -> cst.BaseExpression | None:
    """The optimizer expression an `opt.step()` / `scaler.step(opt)` call steps."""
    if method_name(node) != "step":
        return None
    base = node.func.value
    value = ctx.value(base)
    if value.kind == "scaler" or (value.kind == "unknown" and "scaler" in (dotted_name(base) or "").lower()):
        first = argument(node, 0, "optimizer")
        return first.value if first is not None and dotted_name(first.value) else None
    return base if is_optimizer(ctx, base) else None


def optimizer_key(node: cst.BaseExpression) -> str | None:
    """How an optimizer is named: `opt`, `self.optimizer`; one of a list, `optimizers[i]`, as the list."""
    while isinstance(node, cst.Subscript):
        node = node.value
    return dotted_name(node)


def is_optimizer(ctx, node: cst.CSTNode) -> bool:
    """An optimizer by dataflow, or, where unknown, by name (`optimizer`, `opt_g`, `self.optim`)."""
    value = ctx.value(node)
    if value.kind == "optimizer":
        return True
    last = (optimizer_key(node) or "").rsplit(".", 1)[-1]
    return value.kind == "unknown" and bool(_OPTIMIZER_NAME.search(last)) and not _NOT_OPTIMIZER.search(last)


# Methods of a module that run its forward: `module.validation_step(batch, i)`.
FORWARD_METHODS = ("forward", "validation_step", "test_step", "predict_step")


def is_model_forward(ctx, node: cst.Call) -> bool:
    """`model(x)`, `self.net(x)`, `model.forward(x)`, `module.validation_step(batch, i)`: a call that
    runs a model (something that is, or is named like, a model)."""
    if not isinstance(node.func, (cst.Name, cst.Attribute)) or not node.args:
        return False  # a forward takes inputs; `solver.model()` is something else
    if isinstance(node.func, cst.Attribute) and ctx.qualname(node.func) is not None:
        return False  # torch.xxx(...), np.xxx(...): a library function
    model = forward_model(node)
    value = ctx.value(model)
    if value.kind == "model" or value.kind == "layer" and value.qualname == "torch.nn.Sequential":
        return True
    return value.kind == "unknown" and is_model_like(dotted_name(model))


def forward_model(node: cst.Call) -> cst.BaseExpression:
    """The model a forward call runs: `model` in `model(x)` and in `model.validation_step(b, i)`."""
    return node.func.value if method_name(node) in FORWARD_METHODS else node.func


def forward_receiver(node: cst.Call) -> str | None:
    return dotted_name(forward_model(node))


# -- rewriting arguments ---------------------------------------------------------------------------
_NO_SPACE = cst.SimpleWhitespace("")


def keyword_arg(name: str, value: str) -> cst.Arg:
    return cst.Arg(
        value=cst.parse_expression(value),
        keyword=cst.Name(name),
        equal=cst.AssignEqual(whitespace_before=_NO_SPACE, whitespace_after=_NO_SPACE),
    )


def with_args(call: cst.Call, args: list[cst.Arg]) -> cst.Call:
    """`call` with a new argument list, commas normalised (none after the last unless the
    original had a trailing comma)."""
    trailing = bool(call.args) and not isinstance(call.args[-1].comma, cst.MaybeSentinel)
    fixed = []
    for i, arg in enumerate(args):
        last = i == len(args) - 1
        if last and not trailing:
            fixed.append(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
        elif isinstance(arg.comma, cst.MaybeSentinel):
            fixed.append(arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))))
        else:
            fixed.append(arg)
    return call.with_changes(args=fixed)
