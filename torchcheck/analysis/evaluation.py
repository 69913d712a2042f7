"""Where evaluation code is: validation/test/inference functions and loops over evaluation data.
Shared by `eval-mode-missing` and `no-grad-missing`."""
from __future__ import annotations

import functools
import re

import libcst as cst

from torchcheck.analysis.calls import (
    forward_receiver,
    is_backward,
    is_model_forward,
    is_optimizer,
    method_name,
    receiver,
)
from torchcheck.analysis.imports import child_blocks, dotted_name, iter_statements
from torchcheck.analysis.structure import FunctionInfo
from torchcheck.walk import descendants

_EVAL_WORD = r"(val|valid|validate|validation|eval|evaluate|evaluation|test|testing|infer|inference|predict)"
# `validate`, `evaluate_model`, `val_epoch`, `run_eval`, `test` — not `validate_args` or `test_shapes`.
EVAL_FUNCTION = (rf"^_?((run|do|model|epoch)_)?{_EVAL_WORD}(_(epoch|step|one_epoch|loop|model|net|fn|batch|set|data|"
                 rf"dataset|loader|accuracy|acc|loss|metrics|performance))?$")
EVAL_DATA = re.compile(r"(^|[^a-z])(val|valid|validation|test|testing|eval|evaluation|dev|holdout)(?![a-z])|(val|test|eval)(loader|_?dl|set|data)", re.IGNORECASE)


LOADING_METHODS = ("load_state_dict", "load_from_checkpoint", "from_pretrained")

# A file can hold evaluation code only if it mentions one of these words (`val_loader`, `def test`).
EVAL_WORDS = re.compile(r"(?=[vetipdh])(?<![A-Za-z])(val|valid|validate|validation|eval|evaluate|evaluation|test|testing|infer|"
                        r"inference|predict|dev|holdout)(?![a-z])")  # the lookahead: a fast scan of a file's text


def is_pytest_file(path) -> bool:
    name = path.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def per_file(predicate):
    """Both evaluation rules ask these questions of every loop and function: answered once per file."""
    @functools.wraps(predicate)
    def answer(ctx, node, *args):
        memo = ctx.memo.setdefault(predicate.__name__, {})
        key = (node, *args)
        if key not in memo:
            memo[key] = predicate(ctx, node, *args)
        return memo[key]
    return answer


@per_file
def trains(ctx, node: cst.CSTNode) -> bool:
    """Does this code call backward() or `torch.autograd.grad`, step an optimizer or clear gradients,
    or call a function of the tree that differentiates (meta-learning's `learner.adapt(loss)`)? Then
    it is training, not evaluation (`metric.step(...)` is neither)."""
    return any(type(n) is cst.Call and (is_backward(ctx, n) or ctx.qualname(n.func) in _DIFFERENTIATING
                                            or method_name(n) == "zero_grad"
                                            or method_name(n) == "step" and is_optimizer(ctx, n.func.value)
                                            or _differentiates(ctx, n))
               for n in descendants(node))


_DIFFERENTIATING = ("torch.autograd.grad", "torch.autograd.backward")


def _differentiates(ctx, call: cst.Call) -> bool:
    """Is `call` a call of a function of the tree whose own body calls backward() or `autograd.grad`?"""
    value = ctx.value(call.func)
    info = value.info if value.kind == "function" else None
    if not isinstance(info, FunctionInfo):
        return False
    memo = ctx.memo.setdefault("differentiates", {})
    if info not in memo:
        imports = info.analysis.imports
        memo[info] = any(type(n) is cst.Call and (method_name(n) == "backward" or imports.qualname(n.func) in _DIFFERENTIATING)
                         for n in descendants(info.node))
    return memo[info]


@per_file
def is_eval_function(ctx, node: cst.FunctionDef, pattern: str) -> bool:
    name = node.name.value
    if not re.search(pattern, name):
        return False
    if name.startswith("test") and is_pytest_file(ctx.path):
        return False
    return not trains(ctx, node) and not _called_from_forward(ctx, node)


def _called_from_forward(ctx, node: cst.FunctionDef) -> bool:
    """A `predict()` helper that a module's `forward` calls runs during training too."""
    info = ctx.analysis.function_of_node.get(node)
    sites = ctx.analysis.sites_of(info) if info is not None else []
    return any(caller is not None and caller.name == "forward" for _call, caller, _where in sites)


@per_file
def is_eval_loop(ctx, node: cst.For) -> bool:
    """A loop over evaluation data (`val_loader`, `loaders["test"]`) that trains nothing."""
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


@per_file
def is_eval_by_mode(ctx, node: cst.For | cst.While) -> bool:
    """A loop that runs a model its code put in eval mode (`model.eval()` before it) and trains
    nothing: evaluation, whatever its names."""
    if trains(ctx, node.body):
        return False
    for call in descendants(node.body):
        if type(call) is cst.Call and is_model_forward(ctx, call):
            name = forward_receiver(call)
            if name and ctx.analysis.mode_at(call, name) == frozenset({"eval"}):
                return True
    return False


@per_file
def is_eval_after_training(ctx, node: cst.For | cst.While) -> bool:
    """A loop after a training loop of the same block that trains nothing and uses what a model
    returns (`preds = model(x).argmax(1)`): the trained model evaluated, whatever the data's name.
    A bare `model(x)` statement (re-estimating BatchNorm statistics on purpose) is not evaluation."""
    if trains(ctx, node.body):
        return False
    block = _block_holding(ctx, node)
    earlier = block[:block.index(node)] if node in block else []
    if not any(isinstance(stmt, (cst.For, cst.While)) and trains(ctx, stmt.body) for stmt in earlier):
        return False
    return any(not isinstance(stmt, cst.Expr) and _runs_a_model(ctx, stmt) for stmt in _simple_statements(node.body))


def _runs_a_model(ctx, stmt: cst.CSTNode) -> bool:
    return any(type(call) is cst.Call and is_model_forward(ctx, call) for call in descendants(stmt))


def _block_holding(ctx, node: cst.CSTNode) -> list[cst.CSTNode]:
    """The statements of the block `node` (the statement being visited) stands in."""
    parent = ctx.statements[-2] if len(ctx.statements) > 1 else None
    blocks = child_blocks(parent) if parent is not None else [ctx.module]
    for block in blocks:
        statements = iter_statements(block)
        if node in statements:
            return statements
    return []


def _simple_statements(block) -> list[cst.CSTNode]:
    out = []
    for stmt in iter_statements(block):
        if isinstance(stmt, cst.BaseCompoundStatement):
            for inner in child_blocks(stmt):
                out.extend(_simple_statements(inner))
        else:
            out.append(stmt)
    return out


def fresh_model(ctx, name: str) -> bool:
    """`net = Net(); net(torch.randn(1, 3, 32, 32))`: a model built in the function that runs it, never
    trained there and never loaded, is a shape smoke test, not a trained model under evaluation."""
    function = ctx.functions[-1] if ctx.functions else None
    if function is None or "." in name or trains(ctx, function):
        return False
    built = False
    for node in descendants(function.body):
        if type(node) is cst.Assign and any(dotted_name(t.target) == name for t in node.targets):
            value = node.value
            while _is_move(value):
                value = value.func.value
            if not isinstance(value, cst.Call) or ctx.value(value.func).kind not in ("class", "ref") \
                    or ctx.value(value).kind != "model":
                return False  # bound to something else too: a parameter, a loaded model
            built = True
        elif type(node) is cst.Call and receiver(node) == name and method_name(node) in LOADING_METHODS:
            return False
    return built


def _is_move(node: cst.BaseExpression) -> bool:
    return type(node) is cst.Call and method_name(node) in ("to", "cuda", "cpu", "float", "double", "half")
