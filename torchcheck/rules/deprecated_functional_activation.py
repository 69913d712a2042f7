from __future__ import annotations

import libcst as cst

from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity

_REPLACEMENTS = {"torch.nn.functional.sigmoid": "sigmoid", "torch.nn.functional.tanh": "tanh"}


class DeprecatedFunctionalActivation(Rule):
    """
    ## What it does
    Finds `F.sigmoid` and `F.tanh` (`torch.nn.functional.sigmoid` / `.tanh`).

    ## Why is this bad?
    Both are deprecated and emit a warning on every call; `torch.sigmoid` and `torch.tanh` are
    the same functions without the warning (and without the risk of removal).

    ## Example
    ```python
    y = F.sigmoid(x)
    ```

    ## Use instead
    ```python
    y = torch.sigmoid(x)
    ```

    ## Fix safety
    Safe: the replacement computes the same values. Offered when the file imports `torch` under
    some name.

    ## References
    - https://pytorch.org/docs/stable/nn.functional.html
    """

    code = "TC405"
    name = "deprecated-functional-activation"
    summary = "Deprecated `F.sigmoid` / `F.tanh`"
    severity = Severity.WARNING
    fix_safety = FixSafety.SAFE
    fix_reason = "`torch.sigmoid`/`torch.tanh` compute the same values."
    needles = ("sigmoid", "tanh")

    def visit_Call(self, node: cst.Call) -> None:
        qualname = self.ctx.qualname(node.func)
        if qualname not in _REPLACEMENTS:
            return
        new = _REPLACEMENTS[qualname]
        torch_names = self.ctx.imports.local_names_for("torch")
        fix = FixSpec(f"Use `torch.{new}`", (Replacement(node.func, f"{torch_names[0]}.{new}"),)) if torch_names else None
        self.report(node.func, f"`F.{new}` is deprecated; use `torch.{new}`", fix)

    VALID = [
        """
        import torch
        y = torch.sigmoid(x)
        """,
        """
        import torch.nn as nn
        act = nn.Sigmoid()
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch
            import torch.nn.functional as F
            y = F.sigmoid(x)
            """,
            fixed="""
            import torch
            import torch.nn.functional as F
            y = torch.sigmoid(x)
            """,
        ),
        Invalid(
            """
            from torch.nn.functional import tanh
            y = tanh(x)
            """
        ),
    ]
