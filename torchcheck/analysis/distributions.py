"""What a loss is fed, as distributions: KL-divergence calls and their options, and tensors known
to hold raw logits because of how the code uses them. Shared by the `kl-div-*` rules."""
from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import LossCall, last_binding, loss_call
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.syntax import argument, literal
from torchcheck.walk import descendants

# `torch.kl_div(input, target, reduction=1, log_target=False)`: the reduction is an integer enum.
_TORCH_OP_PARAMS = ("input", "target", "reduction", "log_target")
_TORCH_OP_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}
# Losses whose input is, by their definition, raw logits.
_LOGIT_LOSSES = {"CrossEntropyLoss", "BCEWithLogitsLoss", "MultiLabelSoftMarginLoss"}
PROBABILITIES = ("softmax", "sigmoid")
_LOGITS_NAME = re.compile(r"(^|_)logits?(_|$)", re.IGNORECASE)
DISTRIBUTIONS = ("softmax", "log_softmax")


@dataclass(frozen=True)
class KLCall:
    """A KL-divergence loss call, with the call that sets its options."""

    loss: LossCall
    # The call that holds `reduction=` and `log_target=`: the functional call itself, or the
    # constructor of the criterion; None where the criterion's origin is unknown.
    options: cst.Call | None
    params: tuple[str, ...]  # the parameters of `options`, in order
    torch_op: bool  # `torch.kl_div`: integer reductions, no "batchmean"

    def option(self, name: str) -> cst.Arg | None:
        if self.options is None or name not in self.params:
            return None
        return argument(self.options, self.params.index(name), name)

    @property
    def reduction(self) -> str | None:
        """"mean", "batchmean", "sum", "none", "default" (none given), or None when not literal
        (or set through the deprecated `size_average`/`reduce`)."""
        if self.options is None or any(arg.star for arg in self.options.args):
            return None
        if self.option("size_average") is not None or self.option("reduce") is not None:
            return None
        given = self.option("reduction")
        if given is None:
            return "default"
        value = literal(given.value)
        if self.torch_op:
            return _TORCH_OP_REDUCTIONS.get(value) if isinstance(value, int) else None
        return value if isinstance(value, str) else None

    @property
    def log_target(self) -> bool | None:
        """Whether the target is read as log-probabilities; None when not known."""
        if self.options is None or any(arg.star for arg in self.options.args):
            return None
        given = self.option("log_target")
        if given is None:
            return False
        value = literal(given.value)
        return value if isinstance(value, bool) else None


def kl_call(ctx, node: cst.Call) -> KLCall | None:
    """`F.kl_div(x, y)`, `torch.kl_div(x, y)` or a call of an `nn.KLDivLoss` criterion."""
    if ctx.qualname(node.func) == "torch.kl_div":
        first, second = argument(node, 0, "input"), argument(node, 1, "target")
        loss = LossCall("KLDivLoss", node, first.value if first else None, second.value if second else None,
                        dotted_name(node.func) or "torch.kl_div")
        return KLCall(loss, node, _TORCH_OP_PARAMS, torch_op=True)
    loss = loss_call(ctx, node)
    if loss is None or loss.loss != "KLDivLoss":
        return None
    constructor = criterion_constructor(ctx, node)
    if constructor is None and ctx.value(_criterion_expr(node)).kind != "criterion":
        return KLCall(loss, node, api.FUNCTIONAL_LOSSES["kl_div"][1], torch_op=False)  # `F.kl_div`, held or not
    return KLCall(loss, constructor, api.LOSS_CLASSES["KLDivLoss"], torch_op=False)


def criterion_constructor(ctx, node: cst.Call) -> cst.Call | None:
    """The `nn.KLDivLoss(...)` call that built the criterion `node` calls."""
    func = _criterion_expr(node)
    if isinstance(func, cst.Call) and api.loss_class(ctx.qualname(func.func)) == "KLDivLoss":  # `nn.KLDivLoss()(x, y)`
        return func
    criterion = ctx.value(func)
    return criterion.origin if criterion.kind == "criterion" and isinstance(criterion.origin, cst.Call) else None


def _criterion_expr(node: cst.Call) -> cst.BaseExpression:
    func = node.func
    return func.value if isinstance(func, cst.Attribute) and func.attr.value == "forward" else func


def logits_evidence(ctx, expr: cst.CSTNode | None) -> str | None:
    """Why `expr` holds raw logits, or None if it is not known to: a model or layer whose last
    step is a linear layer, a variable also fed to a loss that takes logits (`outputs` in
    `criterion(outputs, labels)` with a `CrossEntropyLoss`), or a tensor nothing normalised that
    its code calls logits (`student_logits`, `out.logits`)."""
    if expr is None:
        return None
    value = ctx.value(expr)
    if value.activation == "logits":
        return "the output of a final linear layer"
    named = expr.left if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Divide) else expr
    if value.activation is None and value.kind in ("tensor", "unknown") and \
            _LOGITS_NAME.search((dotted_name(named) or "").rsplit(".", 1)[-1]):  # `logits`, `student_logits / T`
        return "named as raw logits, and nothing normalises it"
    binding = last_binding(ctx, expr)
    if binding is None:
        return None
    scope = ctx.functions[-1] if ctx.functions else ctx.module
    for node in descendants(scope):
        if not type(node) is cst.Call or node is expr:
            continue
        other = loss_call(ctx, node) if _may_be_loss(node) else None
        if other is None or other.loss not in _LOGIT_LOSSES or not isinstance(other.input, cst.Name):
            continue
        if other.input.value == expr.value and last_binding(ctx, other.input) == binding:
            return f"also the input of `{other.callee_text}`, a {other.loss}, which takes logits"
    return None


def _may_be_loss(node: cst.Call) -> bool:
    """Cheap syntactic pre-check before asking the dataflow: a call with at least two arguments."""
    return len(node.args) >= 2 and isinstance(node.func, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
