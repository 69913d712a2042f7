"""Grad mode: whether autograd is on where a call runs, following decorators and every caller."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.structure import FunctionInfo
from torchcheck.analysis.values import INHERIT, Value

GRAD_ON, GRAD_OFF, GRAD_UNKNOWN = "on", "off", "unknown"


class GradModeQueries:
    """Mixed into `FileAnalysis`."""

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
        elif info.cls is not None and info.name in api.LIGHTNING_EVAL_HOOKS and info.cls.is_lightning():
            result = GRAD_OFF
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
