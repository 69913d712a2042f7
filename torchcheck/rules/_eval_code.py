"""The visitor both evaluation rules share: it finds model forwards inside evaluation code and
hands each (scope, call) to the rule once."""
from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import forward_model, forward_receiver, is_model_forward
from torchcheck.analysis.dataflow import ClassInfo
from torchcheck.analysis.evaluation import (
    EVAL_FUNCTION,
    fresh_model,
    is_eval_after_training,
    is_eval_by_mode,
    is_eval_function,
    is_eval_loop,
)
from torchcheck.rule import Rule

_CALL_SITES = 3  # the calls of an evaluation function cited as evidence, at most


class EvalCodeRule(Rule):
    options = {"eval-function-pattern": EVAL_FUNCTION}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.scopes: list[cst.CSTNode | None] = []  # the eval function/loop we are in, or None
        self.reported: set = set()
        self.by_mode: set = set()  # loops that are evaluation because their model was put in eval mode

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        pattern = self.option("eval-function-pattern")
        self.scopes.append(node if is_eval_function(self.ctx, node, pattern) else None)

    def leave_FunctionDef(self, node) -> None:
        self.scopes.pop()

    def visit_For(self, node: cst.For) -> None:
        inside = self.scopes[-1] if self.scopes else None
        evaluation = is_eval_loop(self.ctx, node) or self._by_mode(node) or is_eval_after_training(self.ctx, node)
        self.scopes.append(inside or (node if evaluation else None))

    def leave_For(self, node) -> None:
        self.scopes.pop()

    def visit_While(self, node: cst.While) -> None:
        inside = self.scopes[-1] if self.scopes else None
        self.scopes.append(inside or (node if self._by_mode(node) else None))

    def leave_While(self, node) -> None:
        self.scopes.pop()

    def _by_mode(self, node) -> bool:
        if is_eval_by_mode(self.ctx, node):
            self.by_mode.add(node)
            return True
        return False

    def visit_Call(self, node: cst.Call) -> None:
        scope = self.scopes[-1] if self.scopes else None
        if scope is None or not is_model_forward(self.ctx, node) or fresh_model(self.ctx, forward_receiver(node) or ""):
            return
        key = self.report_key(scope, node)
        if key in self.reported:
            return
        if self.check_forward(scope, node):
            self.reported.add(key)

    def report_key(self, scope, node: cst.Call):
        return scope

    def check_forward(self, scope, node: cst.Call) -> bool:
        """Report if needed; True if a finding was made for this scope."""
        raise NotImplementedError

    def evidence(self, scope, node: cst.Call) -> list[tuple[cst.CSTNode, str]]:
        """For `related`: the class of the model `node` runs and the calls of the evaluation function
        (both maybe in other modules), and the evaluation code it runs in."""
        model = self.ctx.value(forward_model(node))
        evidence = []
        if isinstance(model.info, ClassInfo):
            evidence.append((model.info.node.name, f"model class `{model.info.name}` defined here"))
        if isinstance(scope, cst.FunctionDef):
            info = self.ctx.analysis.function_of_node.get(scope)
            sites = self.ctx.analysis.sites_of(info, cross_file=True) if info is not None else None
            evidence.extend((call, f"`{scope.name.value}` called here") for call, _, _ in (sites or [])[:_CALL_SITES])
        evidence.append((scope.name if isinstance(scope, cst.FunctionDef) else scope, self.describe(scope)))
        return evidence

    @staticmethod
    def describe(scope) -> str:
        if isinstance(scope, cst.FunctionDef):
            return f"evaluation function `{scope.name.value}`"
        return "this evaluation loop"
