"""Train/eval mode: the states a model may be in at a call, following `model.eval()` and
`model.train()` through the callers of the function the call is in."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.syntax import argument, literal

# Methods that return the module itself and leave its mode alone: `model.to(device).eval()`.
_MODE_KEEPING = {"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "requires_grad_", "share_memory"}


def mode_set_by(call: cst.Call) -> frozenset | None:
    """The state `model.eval()` / `model.train(flag)` puts its receiver in; None for other calls."""
    func = call.func
    if type(func) is not cst.Attribute:
        return None
    if func.attr.value == "eval" and not call.args:
        return frozenset({"eval"})
    if func.attr.value == "train":
        flag = literal(call.args[0].value) if call.args else True
        return frozenset({"eval" if flag is False else "train" if flag is True else "unknown"})
    return None


def mode_of_chain(expr: cst.BaseExpression) -> frozenset | None:
    """`self.eval()`, `Net().to(device).eval()`: the mode of the module such an expression returns."""
    while type(expr) is cst.Call and type(expr.func) is cst.Attribute:
        state = mode_set_by(expr)
        if state is not None:
            return state
        if expr.func.attr.value not in _MODE_KEEPING:
            return None
        expr = expr.func.value
    return None


class TrainModeQueries:
    """Mixed into `FileAnalysis`."""

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
                arg = argument(site, position, head) if position >= 0 else None
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
