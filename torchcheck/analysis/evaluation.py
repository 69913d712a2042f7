"""Where evaluation code is: validation/test/inference functions and loops over evaluation data.
Shared by `eval-mode-missing` and `no-grad-missing`."""
from __future__ import annotations

import re

import libcst as cst

from torchcheck.analysis.calls import is_backward, method_name
from torchcheck.analysis.imports import dotted_name

EVAL_FUNCTION = r"^_*(val|valid|validate|validation|eval|evaluate|evaluation|test|testing|infer|inference|predict|score)(_.*)?$|_(val|valid|validate|validation|eval|evaluate|evaluation|test|inference|predict)$"
EVAL_DATA = re.compile(r"(^|[^a-z])(val|valid|validation|test|testing|eval|evaluation|dev|holdout)(?![a-z])|(val|test|eval)(loader|_?dl|set|data)", re.IGNORECASE)


def is_pytest_file(path) -> bool:
    name = path.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


class _TrainingCalls(cst.CSTVisitor):
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.found = False

    def visit_Call(self, node: cst.Call) -> bool:
        if is_backward(self.ctx, node) or method_name(node) in ("step", "zero_grad"):
            self.found = True
        return not self.found


def trains(ctx, node: cst.CSTNode) -> bool:
    """Does this code call backward(), step() or zero_grad()? Then it is training, not evaluation."""
    visitor = _TrainingCalls(ctx)
    node.visit(visitor)
    return visitor.found


def is_eval_function(ctx, node: cst.FunctionDef, pattern: str) -> bool:
    name = node.name.value
    if not re.search(pattern, name):
        return False
    if name.startswith("test") and is_pytest_file(ctx.path):
        return False
    return not trains(ctx, node)


def is_eval_loop(ctx, node: cst.For) -> bool:
    iterable = node.iter
    names = []
    while isinstance(iterable, cst.Call):  # enumerate(val_loader), tqdm(test_loader, ...)
        names.append(dotted_name(iterable.func) or "")
        iterable = iterable.args[0].value if iterable.args else None
    text = dotted_name(iterable) if iterable is not None else None
    if isinstance(iterable, cst.Subscript):  # loaders["val"]
        key = iterable.slice[0].slice
        text = key.value.evaluated_value if isinstance(key, cst.Index) and isinstance(key.value, cst.SimpleString) else None
    if not text or not EVAL_DATA.search(text.rsplit(".", 1)[-1]):
        return False
    return not trains(ctx, node.body)
