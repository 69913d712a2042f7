"""Leaf tensors that require grad: parameters (a loop variable over `model.parameters()`, an
`nn.Parameter`, a layer's `weight`/`bias`, a module's own `self.weight`) and tensors created with
`requires_grad=True`. Autograd refuses to change one in place while grad mode is on."""
from __future__ import annotations

import re
from dataclasses import dataclass

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import last_binding, method_name
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.structure import ClassInfo
from torchcheck.analysis.syntax import argument, literal
from torchcheck.walk import descendants

PARAMETER_CLASSES = {"torch.nn.Parameter", "torch.nn.parameter.Parameter"}
# The parameters torch layers hold: `weight`, `bias`, `in_proj_weight`, `weight_ih_l0`, ...
_LAYER_PARAMETER = re.compile(r"^(weight|bias)(_(ih|hh|hr)_l\d+(_reverse)?)?$|^in_proj_(weight|bias)$")
# Methods that return the module itself (moved or cast): `Net().to(device)` is still the module.
_MODULE_MOVES = {"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval"}


@dataclass(frozen=True)
class Leaf:
    """A tensor known to be a leaf that requires grad (a parameter, `requires_grad=True`), and the evidence."""

    what: str  # "a parameter of `model`", for messages
    evidence: cst.CSTNode  # where that is seen
    note: str


def leaf_of(ctx, expr: cst.CSTNode) -> Leaf | None:
    """The leaf that `expr` is, or is an indexed view of (`w[0]`); None where not known to be one."""
    while isinstance(expr, cst.Subscript):
        expr = expr.value
    if isinstance(expr, cst.Attribute):
        return _parameter_attribute(ctx, expr)
    if isinstance(expr, cst.Name):
        return _leaf_variable(ctx, expr)
    return None


def _parameter_attribute(ctx, node: cst.Attribute) -> Leaf | None:
    """`conv.weight`, `model.fc.bias`, `self.scale` (an `nn.Parameter` the class assigns)."""
    name = node.attr.value
    owner = node.value
    value = ctx.value(owner)
    if value.kind == "layer" and api.has_parameters(value.qualname) and _LAYER_PARAMETER.match(name):
        layer = (value.qualname or "").rsplit(".", 1)[-1]
        evidence = value.origin if isinstance(value.origin, cst.CSTNode) else owner
        return Leaf(f"a parameter of an `nn.{layer}`", evidence, f"`{dotted_name(owner) or layer}` is an nn.{layer}")
    if value.kind == "model" and isinstance(value.info, ClassInfo):
        declared = declared_parameter(value.info, name)
        if declared is not None:
            return Leaf(f"an `nn.Parameter` of `{value.info.name}`", declared, f"`{name}` is made an nn.Parameter here")
    if value.kind == "unknown" and _LAYER_PARAMETER.match(name):
        root = owner
        while isinstance(root, (cst.Attribute, cst.Subscript)):
            root = root.value
        model = ctx.value(root) if root is not owner else None
        if model is not None and model.kind == "model":  # `model.fc.weight` of a torchvision model
            binding = last_binding(ctx, root)
            return Leaf(f"a parameter of `{dotted_name(root)}`", binding[0] if binding else root,
                        f"`{dotted_name(root)}` is a model")
        built = _module_built(ctx, owner)
        if built is not None:
            return Leaf(f"a parameter of the module `{dotted_name(owner)}`", built,
                        f"`{dotted_name(owner)}` is a module built and moved here")
    return None


def declared_parameter(cls: ClassInfo, name: str, seen: frozenset = frozenset()) -> cst.CSTNode | None:
    """The statement of `cls` (or of a base class in the tree) that makes `self.<name>` an
    `nn.Parameter`: `self.scale = nn.Parameter(...)` or `self.register_parameter("scale", ...)`."""
    for method in cls.methods.values():
        receiver = method.param_names()[:1]
        for node in descendants(method.node.body) if receiver else ():
            if _assigns_parameter(cls, node, f"{receiver[0]}.{name}") or _registers_parameter(node, receiver[0], name):
                return node
    for base in cls.base_classes():
        if base not in seen:
            found = declared_parameter(base, name, seen | {cls})
            if found is not None:
                return found
    return None


def _assigns_parameter(cls: ClassInfo, node: cst.CSTNode, target: str) -> bool:
    return type(node) is cst.Assign and isinstance(node.value, cst.Call) and _is_parameter_call(cls, node.value) \
        and any(dotted_name(t.target) == target for t in node.targets)


def _registers_parameter(node: cst.CSTNode, receiver: str, name: str) -> bool:
    if not type(node) is cst.Call or method_name(node) != "register_parameter" or len(node.args) < 2:
        return False
    value = node.args[1].value
    return dotted_name(node.func.value) == receiver and literal(node.args[0].value) == name \
        and not (isinstance(value, cst.Name) and value.value == "None")


def _is_parameter_call(cls: ClassInfo, call: cst.Call) -> bool:
    qualname = cls.analysis.imports.qualname(call.func)
    return qualname in PARAMETER_CLASSES and not _requires_grad_off(call)


def _requires_grad_off(call: cst.Call) -> bool:
    flag = argument(call, 1, "requires_grad")
    return flag is not None and literal(flag.value) is not True


def _module_built(ctx, owner: cst.BaseExpression) -> cst.CSTNode | None:
    """`cconv = CatConv2d(64, 32).to(device)`: an object of a class from outside the tree, built
    and then moved or cast like a module. Tensors are not built from such classes."""
    binding = last_binding(ctx, owner)
    if binding is None or not isinstance(binding[1], cst.Call):
        return None
    call, moved = binding[1], False
    while type(call) is cst.Call and method_name(call) in _MODULE_MOVES:
        call, moved = call.func.value, True
    if not moved or not type(call) is cst.Call or not isinstance(call.func, (cst.Name, cst.Attribute)):
        return None
    qualname = ctx.qualname(call.func) or ""
    last = (dotted_name(call.func) or "").rsplit(".", 1)[-1]
    class_like = last[:1].isupper() and any(c.islower() for c in last)
    if not class_like or qualname.startswith(("torch.", "numpy.", "pandas.")):
        return None
    return binding[1]


def _leaf_variable(ctx, name: cst.Name) -> Leaf | None:
    binding = last_binding(ctx, name)
    if binding is None:
        return None
    target, value = binding
    if value is None:
        return _parameter_loop_variable(ctx, target)
    if not isinstance(value, cst.Call):
        return None
    qualname = ctx.qualname(value.func)
    if qualname in PARAMETER_CLASSES and not _requires_grad_off(value):
        return Leaf("an `nn.Parameter`", value, f"`{name.value}` is made an nn.Parameter here")
    if _created_requiring_grad(ctx, value):
        return Leaf("a leaf tensor created with `requires_grad=True`", value,
                    f"`{name.value}` is created requiring grad here")
    return None


def _created_requiring_grad(ctx, call: cst.Call) -> bool:
    """`torch.randn(3, requires_grad=True)`, `torch.zeros(3).requires_grad_()`,
    `x.detach().requires_grad_(True)`."""
    if method_name(call) == "requires_grad_":
        if call.args and literal(call.args[0].value) is not True:
            return False
        inner = call.func.value
        return isinstance(inner, cst.Call) and (method_name(inner) == "detach" or _is_factory(ctx, inner))
    if not _is_factory(ctx, call):
        return False
    flag = next((a for a in call.args if a.keyword is not None and a.keyword.value == "requires_grad"), None)
    return flag is not None and literal(flag.value) is True


def _is_factory(ctx, call: cst.Call) -> bool:
    qualname = ctx.qualname(call.func)
    return qualname in api.TENSOR_FACTORIES or qualname in api.LIKE_FACTORIES


def _parameter_loop_variable(ctx, target: cst.Name) -> Leaf | None:
    """`p` of `for p in model.parameters()`, `for name, p in model.named_parameters()`,
    `for p_ema, p in zip(ema.parameters(), model.parameters())`."""
    scope = ctx.functions[-1] if ctx.functions else ctx.module
    for loop in descendants(scope):
        if isinstance(loop, cst.For) and _contains(loop.target, target):
            iterable = _element_source(loop.target, target, loop.iter)
            if isinstance(iterable, cst.Name):  # `params = list(model.parameters())` before the loop
                binding = last_binding(ctx, iterable)
                iterable = binding[1] if binding is not None else None
            source = _parameters_source(iterable)
            if source is not None:
                return Leaf(f"a parameter of `{source}`", loop.iter,
                            f"`{target.value}` iterates over `{source}`'s parameters")
            return None
    return None


def _element_source(pattern: cst.BaseExpression, target: cst.Name, iterable: cst.BaseExpression):
    """The expression the loop variable `target` takes its items from: `b` for `x, y in zip(a, b)`,
    the `named_parameters()` call for `name, p in model.named_parameters()`."""
    if pattern is target:
        return iterable
    if not isinstance(pattern, (cst.Tuple, cst.List)) or not isinstance(iterable, cst.Call):
        return None
    elements = [e.value for e in pattern.elements]
    func = dotted_name(iterable.func)
    if func == "zip" and len(iterable.args) == len(elements):
        for element, arg in zip(elements, iterable.args):
            if _contains(element, target):
                return _element_source(element, target, arg.value)
    if func == "enumerate" and len(elements) == 2 and iterable.args:
        return _element_source(elements[1], target, iterable.args[0].value)
    if method_name(iterable) == "named_parameters" and len(elements) == 2 and elements[1] is target:
        return iterable
    return None


def _contains(pattern: cst.CSTNode, target: cst.Name) -> bool:
    return pattern is target or any(n is target for n in descendants(pattern))


def _parameters_source(iterable) -> str | None:
    """`model` of `model.parameters()` / `model.named_parameters()` / `list(model.parameters())`."""
    if isinstance(iterable, cst.Call) and dotted_name(iterable.func) in ("list", "tuple") and iterable.args:
        iterable = iterable.args[0].value
    if isinstance(iterable, cst.Call) and method_name(iterable) in ("parameters", "named_parameters"):
        return dotted_name(iterable.func.value) or "the module"
    return None


def grad_disabled_in(scope: cst.CSTNode) -> bool:
    """Does code in `scope` switch gradients off for parameters (`p.requires_grad = False`,
    `model.requires_grad_(False)`, `torch.set_grad_enabled(False)` as a statement)? Then which
    tensors still require grad here is not known."""
    for node in descendants(scope):
        if type(node) is cst.Assign and any(
                isinstance(t.target, cst.Attribute) and t.target.attr.value == "requires_grad" for t in node.targets):
            return True
        if type(node) is cst.Call and method_name(node) == "requires_grad_" and node.args:
            return True
        if isinstance(node, cst.Expr) and isinstance(node.value, cst.Call) and \
                (dotted_name(node.value.func) or "").endswith("set_grad_enabled"):
            return True  # for the rest of the program, not a `with` block
    return False
