from __future__ import annotations

import libcst as cst

from torchcheck.analysis.dataflow import argument
from torchcheck.rule import Invalid, Rule
from torchcheck.types import Severity

_FUNCTIONS = {"torch.nn.functional.softmax", "torch.nn.functional.log_softmax", "torch.nn.functional.softmin"}
_LAYERS = {"torch.nn.Softmax", "torch.nn.LogSoftmax", "torch.nn.Softmin"}


class SoftmaxImplicitDim(Rule):
    """
    ## What it does
    Finds `F.softmax`, `F.log_softmax`, `F.softmin` and the `nn.Softmax`, `nn.LogSoftmax`,
    `nn.Softmin` layers called without `dim`.

    ## Why is this bad?
    Without `dim`, PyTorch guesses: dim 0 for 0-, 1- and 3-D inputs, dim 1 otherwise, with a
    deprecation warning. For a 3-D (C, H, W) or (batch, seq, classes) tensor it normalises over
    the wrong axis (the seeds show `Softmax(dim=0)` and `Softmax(dim=1)` giving different
    results on the same tensor), and the outputs still look like probabilities.

    ## Example
    ```python
    probs = F.softmax(logits)
    ```

    ## Use instead
    ```python
    probs = F.softmax(logits, dim=-1)
    ```

    ## Fix safety
    No fix: the intended dimension cannot be known from the code alone.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
    """

    code = "TC501"
    name = "softmax-implicit-dim"
    summary = "Softmax without `dim=` (the dimension is guessed)"
    severity = Severity.WARNING
    needles = ("softm", "Softm", "log_softmax", "LogSoftmax")

    def visit_Call(self, node: cst.Call) -> None:
        qualname = self.ctx.qualname(node.func)
        if qualname in _FUNCTIONS:
            if argument(node, 1, "dim") is None and not any(a.star for a in node.args):
                self.report(node, f"`{qualname.rsplit('.', 1)[1]}` without `dim=` guesses the dimension"
                                  " (dim 0 for 1-D and 3-D inputs); pass `dim=` explicitly")
        elif qualname in _LAYERS:
            if argument(node, 0, "dim") is None and not any(a.star for a in node.args):
                self.report(node, f"`nn.{qualname.rsplit('.', 1)[1]}()` without `dim=` guesses the dimension"
                                  " at each call; pass `dim=` explicitly")

    VALID = [
        """
        import torch.nn.functional as F
        p = F.softmax(x, dim=1)
        q = F.log_softmax(x, 1)
        """,
        """
        import torch
        p = torch.softmax(x, -1)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            p = F.softmax(x)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            head = nn.Sequential(nn.Linear(4, 2), nn.LogSoftmax())
            """
        ),
    ]
