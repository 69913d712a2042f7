"""Grad mode: whether autograd is on where a call runs, following decorators and every caller."""
from __future__ import annotations

import re

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.structure import FunctionInfo
from torchcheck.analysis.syntax import literal
from torchcheck.analysis.values import INHERIT, Value

GRAD_ON, GRAD_OFF, GRAD_UNKNOWN = "on", "off", "unknown"
# A project's own no-grad decorator, by its name: `@smart_inference_mode()`, `@utils.no_grad`.
_NO_GRAD_DECORATOR = re.compile(r"(^|_)(no_grad|inference_mode)$")


def decorated_grad(info: FunctionInfo) -> str | None:
    """The grad mode a function's decorators run its body in (`@torch.no_grad()`, a project's
    `@smart_inference_mode()`); None where they set none. A project's decorator given a literal
    False as its first argument (`@inference_mode(False)`) sets nothing known."""
    qualnames = info.decorator_qualnames()
    if any(q in api.NO_GRAD_CONTEXTS for q in qualnames):
        return GRAD_OFF
    if any(q in api.ENABLE_GRAD_CONTEXTS for q in qualnames):
        return GRAD_ON
    for decorator, qualname in zip(info.node.decorators, qualnames):
        expr = decorator.decorator
        arguments = expr.args if isinstance(expr, cst.Call) else ()
        if _NO_GRAD_DECORATOR.search(qualname.rsplit(".", 1)[-1]) and not qualname.startswith("torch.") and \
                not (arguments and literal(arguments[0].value) is False):
            return GRAD_OFF
    return None


class GradModeQueries:
    """Mixed into `FileAnalysis`."""

    def entry_grad(self, info: FunctionInfo | None) -> str:
        """on | off: the grad mode a function body starts in, from its decorators or every caller."""
        if info is None:
            return GRAD_ON
        if info in self._entry_grad:
            return self._entry_grad[info]
        self._entry_grad[info] = GRAD_ON  # recursion guard
        decorated = decorated_grad(info)
        if decorated is not None:
            result = decorated
        elif info.cls is not None and info.name in api.LIGHTNING_EVAL_HOOKS and info.cls.is_lightning():
            result = GRAD_OFF
        else:
            sites = self.sites_of(info, cross_file=True)
            if sites is None:
                result = GRAD_UNKNOWN
            elif info.parent is not None and not sites:
                result = self.entry_grad(info.parent)
            elif not sites:
                result = GRAD_UNKNOWN if info.overrides() else GRAD_ON
            else:
                grads = {where.grad_of_call(c, f) for c, f, where in sites}
                result = GRAD_OFF if grads == {GRAD_OFF} else GRAD_UNKNOWN if GRAD_UNKNOWN in grads else GRAD_ON
        self._entry_grad[info] = result
        return result

    def called_grad(self, info: FunctionInfo | None) -> str:
        """on | off | unknown: like `entry_grad`, but a function whose callers are not known (nothing in
        the tree calls it: a library API, a callback) is unknown rather than on. On where any caller
        runs it with grad enabled: on that path, at least, it runs so."""
        if info is None:
            return GRAD_ON
        if info in self._called_grad:
            return self._called_grad[info]
        self._called_grad[info] = GRAD_UNKNOWN  # recursion guard
        entry = self.entry_grad(info)
        if entry != GRAD_ON:
            result = entry
        elif decorated_grad(info) == GRAD_ON:
            result = GRAD_ON
        else:
            sites = self.sites_of(info, cross_file=True) or []
            sites = sites + [(call, caller, self) for call, caller in self.module_calls.get(info, [])]
            if not sites:
                constructor = info.name == "__init__" and info.cls is not None and info.cls.is_module()
                result = self.called_grad(info.parent) if info.parent is not None else \
                    GRAD_ON if constructor else GRAD_UNKNOWN  # modules are built with grad enabled
            else:
                grads = {where._site_grad(call, caller) for call, caller, where in sites}
                result = GRAD_ON if GRAD_ON in grads else GRAD_OFF if grads == {GRAD_OFF} else GRAD_UNKNOWN
        self._called_grad[info] = result
        return result

    def _site_grad(self, call: cst.CSTNode, caller: FunctionInfo | None) -> str:
        local = self.grad_at.get(call, INHERIT)
        return self.called_grad(caller) if local == INHERIT else local

    def grad_of_call(self, call: cst.CSTNode, scope: FunctionInfo | None) -> str:
        local = self.grad_at.get(call, INHERIT)
        return self.entry_grad(scope) if local == INHERIT else local

    def has_graph(self, value: Value, node: cst.CSTNode) -> bool | None:
        if value.graph == INHERIT:
            grad = self.entry_grad(self.scope.get(node))
            return True if grad == GRAD_ON else False if grad == GRAD_OFF else None
        return value.graph


def grad_at_statement(ctx) -> str:
    """on | off | unknown: the grad mode of the statement being visited: set by the innermost
    enclosing `with` (`torch.no_grad()`, `torch.enable_grad()`; unknown for `set_grad_enabled(flag)`),
    else the mode its function is called in (`called_grad`), else on (module level)."""
    for stmt in reversed(ctx.statements):
        if type(stmt) is cst.With:
            for item in stmt.items:
                value = ctx.value(item.item)
                if value.kind == "grad_ctx":
                    return value.qualname
                if value.kind == "unknown_grad_ctx":
                    return GRAD_UNKNOWN
        elif type(stmt) is cst.FunctionDef:
            return ctx.analysis.called_grad(ctx.analysis.function_of_node.get(stmt))
    return GRAD_ON
