"""Call-shaped questions several rules ask: is this a loss call, an optimizer step, a backward,
a model forward; and how to rewrite an argument list without breaking its commas."""
from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.dataflow import argument, is_model_like
from torchcheck.analysis.imports import dotted_name

_OPTIMIZER_NAME = re.compile(r"optim|^opt(_|$)|_opt$|^opt[A-Z]", re.IGNORECASE)
_NOT_OPTIMIZER = re.compile(r"sched|lr|warmup|scaler", re.IGNORECASE)


@dataclass(frozen=True)
class LossCall:
    loss: str  # the loss class, e.g. CrossEntropyLoss
    call: cst.Call
    input: cst.BaseExpression | None
    target: cst.BaseExpression | None
    callee_text: str


def loss_call(ctx, node: cst.Call) -> LossCall | None:
    """The loss computed by `node`, whether functional (`F.cross_entropy(x, y)`) or a criterion
    object (`criterion(x, y)`, `self.criterion.forward(x, y)`) of a known loss class."""
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
    if isinstance(func, cst.Call):  # nn.CrossEntropyLoss()(x, y)
        loss = api.loss_class(ctx.qualname(func.func))
    else:
        value = ctx.value(func)
        loss = value.qualname if value.kind == "criterion" else None
    if loss is None:
        return None
    first = argument(node, 0, "input")
    second = argument(node, 1, "target")
    text = short_code(ctx, func) if isinstance(func, cst.Subscript) else dotted_name(func) or "criterion"
    return LossCall(loss, node, first.value if first else None, second.value if second else None, text)


def short_code(ctx, node: cst.CSTNode, limit: int = 60) -> str:
    """The source of `node` on one line, shortened for a message."""
    text = " ".join(ctx.code(node).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def origin_note(ctx, value) -> str:
    """` (from `F.softmax(x, dim=1)`)`: where a tensor got its activation, for messages."""
    return f" (from `{short_code(ctx, value.origin)}`)" if isinstance(value.origin, cst.CSTNode) else ""


def method_name(node: cst.Call) -> str | None:
    return node.func.attr.value if isinstance(node.func, cst.Attribute) else None


def receiver(node: cst.Call) -> str | None:
    return dotted_name(node.func.value) if isinstance(node.func, cst.Attribute) else None


def is_backward(ctx, node: cst.Call) -> bool:
    return method_name(node) == "backward" or ctx.qualname(node.func) == "torch.autograd.backward"


def stepped_optimizer(ctx, node: cst.Call) -> str | None:
    """The optimizer an `opt.step()` / `scaler.step(opt)` call steps, by its expression text."""
    if method_name(node) != "step":
        return None
    base = node.func.value
    value = ctx.value(base)
    name = dotted_name(base) or ""
    if value.kind == "scaler" or (value.kind == "unknown" and "scaler" in name.lower()):
        first = argument(node, 0, "optimizer")
        return dotted_name(first.value) if first is not None else None
    return (name or "optimizer") if is_optimizer(ctx, base) else None


def is_optimizer(ctx, node: cst.CSTNode) -> bool:
    """An optimizer by dataflow, or, where unknown, by name (`optimizer`, `opt_g`, `self.optim`)."""
    value = ctx.value(node)
    if value.kind == "optimizer":
        return True
    last = (dotted_name(node) or "").rsplit(".", 1)[-1]
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
    if value.kind == "model":
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
