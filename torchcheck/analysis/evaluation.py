"""Where evaluation code is: validation/test/inference functions and loops over evaluation data.
Shared by `eval-mode-missing` and `no-grad-missing`."""
from __future__ import annotations

import re

import libcst as cst

from torchcheck.analysis.calls import is_backward, method_name
from torchcheck.analysis.imports import dotted_name
from torchcheck.walk import descendants

_EVAL_WORD = r"(val|valid|validate|validation|eval|evaluate|evaluation|test|testing|infer|inference|predict)"
# `validate`, `evaluate_model`, `val_epoch`, `run_eval`, `test` — not `validate_args` or `test_shapes`.
EVAL_FUNCTION = (rf"^_?((run|do|model|epoch)_)?{_EVAL_WORD}(_(epoch|step|one_epoch|loop|model|net|fn|batch|set|data|"
                 rf"dataset|loader|accuracy|acc|loss|metrics|performance))?$")
EVAL_DATA = re.compile(r"(^|[^a-z])(val|valid|validation|test|testing|eval|evaluation|dev|holdout)(?![a-z])|(val|test|eval)(loader|_?dl|set|data)", re.IGNORECASE)


# A file can hold evaluation code only if it mentions one of these words (`val_loader`, `def test`).
EVAL_WORDS = re.compile(r"(?<![A-Za-z])(val|valid|validate|validation|eval|evaluate|evaluation|test|testing|infer|"
                        r"inference|predict|dev|holdout)(?![a-z])")


def is_pytest_file(path) -> bool:
    name = path.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def trains(ctx, node: cst.CSTNode) -> bool:
    """Does this code call backward(), step() or zero_grad()? Then it is training, not evaluation."""
    return any(isinstance(n, cst.Call) and (is_backward(ctx, n) or method_name(n) in ("step", "zero_grad"))
               for n in descendants(node))


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
