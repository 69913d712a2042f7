"""What a `backward()` call teaches: the loss it runs through, and the loss terms computed with it,
carry a graph that backward has already used. Mixed into `Frame`."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.values import Value


class BackwardSemantics:
    def note_backward(self, call: cst.Call) -> None:
        """`loss.backward()`, `scaler.scale(loss).backward()`, `accelerator.backward(loss)`,
        `torch.autograd.backward(loss)`: the loss, the loss terms it was built from in a container
        (`losses.total.backward()`, `out["loss"].backward()`) and the loss terms returned beside it
        (`loss, terms = criterion(...)`) carry a graph that backward has already used."""
        func = call.func
        positional = [a.value for a in call.args if a.keyword is None and not a.star]
        if self.fa.imports.qualname(func) == "torch.autograd.backward":
            target = positional[0] if positional else None
        elif isinstance(func, cst.Attribute) and func.attr.value in ("backward", "manual_backward"):
            receiver = func.value
            use_argument = positional and (func.attr.value == "manual_backward" or not self.eval(receiver).is_tensor)
            target = positional[0] if use_argument else receiver
        else:
            return
        if isinstance(target, cst.Call) and isinstance(target.func, cst.Attribute) and target.func.attr.value == "scale" and target.args:
            target = target.args[0].value  # GradScaler.scale(loss)
        if target is not None:
            self.mark_backpropagated(target, direct=True)

    def mark_backpropagated(self, expr: cst.CSTNode, direct: bool) -> None:
        if isinstance(expr, cst.BinaryOperation):  # `(loss / k).backward()`
            self.mark_backpropagated(expr.left, direct=False)
            self.mark_backpropagated(expr.right, direct=False)
            return
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("sum", "mean"):
            self.mark_backpropagated(expr.func.value, direct=False)  # `loss.mean().backward()`
            return
        name = dotted_name(expr)
        if name in self.env:
            self.env[name] = _backpropagated(self.env[name], direct)
            for sibling in self.siblings.get(name, ()):
                if sibling != name and sibling in self.env:
                    self.env[sibling] = _backpropagated(self.env[sibling], direct=False)
        elif isinstance(expr, (cst.Attribute, cst.Subscript)):  # a field of a record, an entry of a dict
            self.mark_backpropagated(expr.value, direct=False)


def _backpropagated(value: Value, direct: bool) -> Value:
    """`value` after a backward() through it: `direct`ly, or as one of the loss terms of the total."""
    if value.kind in ("tuple", "dict"):
        return value.with_(items=tuple(_backpropagated(item, direct=False) for item in value.items))
    if value.graph is False or not (direct or value.is_loss):
        return value
    if value.kind == "unknown":
        return Value(kind="tensor", is_loss=True, graph=True, backpropagated=True)
    if value.is_tensor:
        return value.with_(graph=True, backpropagated=True)
    return value
