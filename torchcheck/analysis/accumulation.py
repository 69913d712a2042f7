"""Gradient accumulation: the `if (i + 1) % k == 0:` gate that steps every k-th micro-batch, and
whether the tensor a backward pass starts from can have been scaled down (divided by anything,
multiplied by anything but a constant) on its way there."""
from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from torchcheck.analysis.calls import loss_call, method_name
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.structure import ClassInfo, FunctionInfo
from torchcheck.analysis.syntax import literal
from torchcheck.walk import descendants

# Calls whose result is the loss of their arguments as computed, never rescaled by a step count.
_TRANSPARENT_METHODS = {"mean", "sum", "squeeze", "view", "reshape", "float", "double", "to", "cuda", "clone",
                        "contiguous"}
_SCALING_METHODS = {"div", "div_", "divide", "true_divide", "mul", "mul_", "multiply", "__truediv__"}
# Calls that only show a value: the step count passed to them changes nothing.
_REPORTING = {"print", "info", "debug", "warning", "log", "format", "set_description", "set_postfix", "add_scalar",
              "log_dict", "write"}
MAX_DEPTH = 3
_CRITERION_NAME = re.compile(r"^(criterion|loss_fn|loss_func|lossfn|loss_function)$|_criterion$", re.IGNORECASE)


@dataclass(frozen=True)
class Gate:
    """An `if` test that lets every `steps`-th micro-batch through to the optimizer step."""

    test: cst.BaseExpression
    steps: cst.BaseExpression  # `k` of `(i + 1) % k == 0`


def accumulation_gate(test: cst.BaseExpression) -> Gate | None:
    """`(i + 1) % k == 0`, `step % k == 0`, `not (i + 1) % k`, `i % k == k - 1` (alone, or one term of
    an `and`/`or`); k not the literal 1."""
    if isinstance(test, cst.BooleanOperation):
        return accumulation_gate(test.left) or accumulation_gate(test.right)
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        gate = _modulo(test.expression)
        return Gate(test, gate.steps) if gate is not None else None
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1 and \
            isinstance(test.comparisons[0].operator, cst.Equal):
        left, right = test.left, test.comparisons[0].comparator
        for side, other in ((left, right), (right, left)):
            gate = _modulo(side)
            if gate is not None and (literal(other) == 0 or _is_steps_minus_one(other, gate.steps)):
                return Gate(test, gate.steps)
    return None


def counter_gate(branch: cst.If, loop_body: cst.CSTNode) -> Gate | None:
    """`if accumulated == k:` (or `>= k`) on a counter the loop increments and the branch resets:
    `accumulated += 1` ... `accumulated = 0`."""
    test = branch.test
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1 or \
            not isinstance(test.comparisons[0].operator, (cst.Equal, cst.GreaterThanEqual)):
        return None
    counter, steps = test.left, test.comparisons[0].comparator
    if not isinstance(counter, cst.Name) or not isinstance(steps, (cst.Name, cst.Attribute, cst.Integer)) or \
            literal(steps) in (0, 1):
        return None
    counted = any(type(n) is cst.AugAssign and isinstance(n.operator, cst.AddAssign)
                  and dotted_name(n.target) == counter.value for n in descendants(loop_body))
    reset = any(type(n) is cst.Assign and literal(n.value) == 0 and any(dotted_name(t.target) == counter.value
                                                                            for t in n.targets)
                for n in descendants(branch.body))
    return Gate(test, steps) if counted and reset else None


def _modulo(expr: cst.BaseExpression) -> Gate | None:
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Modulo):
        steps = expr.right
        if literal(steps) in (0, 1) or not isinstance(steps, (cst.Name, cst.Attribute, cst.Integer)):
            return None
        if not any(type(n) is cst.Name for n in [expr.left, *descendants(expr.left)]):
            return None  # `7 % k`: not a counter
        return Gate(expr, steps)
    return None


def _is_steps_minus_one(expr: cst.BaseExpression, steps: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Subtract) and \
        literal(expr.right) == 1 and _same(expr.left, steps)


def _same(a: cst.CSTNode, b: cst.CSTNode) -> bool:
    name = dotted_name(a)
    return (name is not None and name == dotted_name(b)) or \
        (literal(a) is not None and literal(a) == literal(b))


def steps_used_elsewhere(scope: cst.CSTNode, gate: Gate) -> cst.CSTNode | None:
    """A use of the step count k outside the gate that may account for it: in arithmetic (`lr / k`,
    `loss / k`) or handed to a function that is not just reporting it. None when k only gates."""
    name = dotted_name(gate.steps)
    if name is None:
        return None
    for node in descendants(scope, prune=lambda n: n is gate.test):
        if isinstance(node, cst.BinaryOperation) and not isinstance(node.operator, cst.Modulo):
            operands = (node.left, node.right)
        elif type(node) is cst.AugAssign:
            operands = (node.value,)
        elif type(node) is cst.Call and _called(node) not in _REPORTING:
            operands = tuple(arg.value for arg in node.args)
        else:
            continue
        if any(dotted_name(operand) == name for operand in operands):
            return node
    return None


def rescales(body: cst.CSTNode) -> bool:
    """Does `body` (the gated step) divide or multiply anything: gradients averaged before the step
    (`p.grad /= n`, `p.grad.div_(k)`)?"""
    return any(isinstance(n, cst.BinaryOperation) and isinstance(n.operator, (cst.Divide, cst.FloorDivide))
               or type(n) is cst.AugAssign and isinstance(n.operator, (cst.DivideAssign, cst.MultiplyAssign))
               or type(n) is cst.Call and method_name(n) in _SCALING_METHODS
               for n in descendants(body))


def _called(call: cst.Call) -> str:
    func = call.func
    return func.value if isinstance(func, cst.Name) else func.attr.value if isinstance(func, cst.Attribute) else ""


def may_be_scaled(ctx, expr: cst.BaseExpression, scope: cst.CSTNode, depth: int = 0) -> bool:
    """Could the tensor `expr` have been divided by the number of micro-batches? False only where every
    step of its derivation is known: a criterion, a model's loss, sums and means of those, a function
    of the tree that divides nothing. Any division or non-constant factor on the way counts."""
    if depth > MAX_DEPTH:
        return True
    if isinstance(expr, cst.BinaryOperation):
        if isinstance(expr.operator, (cst.Divide, cst.FloorDivide)):
            return True
        if isinstance(expr.operator, cst.Multiply) and not (_constant(expr.left) or _constant(expr.right)) \
                and not (_tensor(ctx, expr.left) and _tensor(ctx, expr.right)):
            return True  # `loss * scale`
        return may_be_scaled(ctx, expr.left, scope, depth) or may_be_scaled(ctx, expr.right, scope, depth)
    if isinstance(expr, (cst.Integer, cst.Float)):
        return False
    if isinstance(expr, cst.UnaryOperation):
        return may_be_scaled(ctx, expr.expression, scope, depth)
    if isinstance(expr, cst.Name):
        return _binding_scaled(ctx, expr.value, scope, depth)
    if isinstance(expr, (cst.Attribute, cst.Subscript)):
        base = expr.value
        while isinstance(base, (cst.Attribute, cst.Subscript)):
            base = base.value
        # `outputs.loss`, `outputs[0]`, `out["loss"]` of a model's output
        return not _model_output(ctx, base)
    if isinstance(expr, cst.Call):
        return _call_scaled(ctx, expr, scope, depth)
    return True


def _call_scaled(ctx, call: cst.Call, scope, depth: int) -> bool:
    name = method_name(call)
    if name in _SCALING_METHODS:
        return True
    if name in _TRANSPARENT_METHODS:
        return may_be_scaled(ctx, call.func.value, scope, depth)
    if loss_call(ctx, call) is not None:
        return False
    callee = ctx.value(call.func)
    if callee.kind == "function" and isinstance(callee.info, FunctionInfo):
        return _function_divides(callee.info)
    if callee.kind == "model" and isinstance(callee.info, ClassInfo):
        forward = callee.info.method("forward")
        return forward is None or _function_divides(forward)
    if callee.kind == "unknown" and _CRITERION_NAME.search((dotted_name(call.func) or "").rsplit(".", 1)[-1]):
        return False  # `criterion(out, y)` built elsewhere: a loss of its arguments
    return not _model_output(ctx, call)  # a library model's loss is its own mean


def _function_divides(info: FunctionInfo) -> bool:
    return rescales(info.node.body)


def _binding_scaled(ctx, name: str, scope, depth: int) -> bool:
    """Could any binding of `name` in the scope be scaled, or is it divided in place somewhere?"""
    values = []
    for node in descendants(scope):
        if type(node) is cst.AugAssign and dotted_name(node.target) == name:
            if not isinstance(node.operator, (cst.AddAssign, cst.SubtractAssign)):
                return True  # `loss /= k`, `loss *= scale`
            values.append(node.value)
        elif isinstance(node, (cst.Assign, cst.AnnAssign)) and node.value is not None:
            targets = [t.target for t in node.targets] if type(node) is cst.Assign else [node.target]
            for target in targets:
                if dotted_name(target) == name:
                    values.append(node.value)
                elif _binds(target, name):
                    return not _model_output(ctx, node.value)  # `loss, logits = model(x, y)`
        elif type(node) is cst.For and _binds(node.target, name) or \
                isinstance(node, cst.WithItem) and node.asname is not None and _binds(node.asname.name, name):
            return True
    if not values:
        return True  # a parameter, a global: not known
    return any(may_be_scaled(ctx, value, scope, depth + 1) for value in values)


def _binds(target: cst.CSTNode, name: str) -> bool:
    return any(type(n) is cst.Name and n.value == name for n in (target, *descendants(target)))


def _model_output(ctx, expr: cst.CSTNode) -> bool:
    """A model's output (`model(**batch)`, or a variable holding one), whose loss is the model's own."""
    value = ctx.value(expr)
    return isinstance(expr, (cst.Call, cst.Name)) and value.is_tensor and value.source is not None


def _constant(expr: cst.CSTNode) -> bool:
    return isinstance(literal(expr), (int, float)) and not isinstance(literal(expr), bool)


def _tensor(ctx, expr: cst.CSTNode) -> bool:
    return ctx.value(expr).is_tensor
