from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import keyword_arg, with_args
from torchcheck.analysis.dataflow import argument
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity

_SHAPE_KEEPING = {"torch.nn.ReLU", "torch.nn.LeakyReLU", "torch.nn.GELU", "torch.nn.Tanh", "torch.nn.Sigmoid",
                  "torch.nn.Dropout", "torch.nn.Identity", "torch.nn.ELU", "torch.nn.SiLU", "torch.nn.BatchNorm1d"}


def _after_flatten_linear(ctx, sequential: cst.Call) -> set:
    """Softmax layers of this Sequential whose input is certainly 2-D: Flatten() (from dim 1), then
    Linear, then only shape-keeping layers."""
    found: set = set()
    state = "start"
    for arg in sequential.args:
        layer = arg.value
        name = ctx.qualname(layer.func) if isinstance(layer, cst.Call) else None
        if name == "torch.nn.Flatten" and not layer.args:
            state = "flat"
        elif name in ("torch.nn.Linear", "torch.nn.LazyLinear") and state in ("flat", "linear"):
            state = "linear"
        elif name in _SHAPE_KEEPING and state == "linear":
            pass
        elif name in _LAYERS and state == "linear":
            found.add(layer)
        else:
            state = "start"
    return found

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
    Safe, and offered only where the dimension is certain: a softmax layer in an `nn.Sequential`
    right after `Flatten()` and `Linear` (and layers that keep the shape) gets a 2-D input, for
    which PyTorch picks `dim=1`; the fix writes exactly that. Elsewhere the intended dimension
    cannot be known from the code alone and no fix is offered.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
    """

    code = "TC501"
    name = "softmax-implicit-dim"
    summary = "Softmax without `dim=` (the dimension is guessed)"
    severity = Severity.WARNING
    fix_safety = FixSafety.SAFE
    fix_reason = "Writes the dimension PyTorch already picks, only where the input is certainly 2-D."
    needles = ("softm", "Softm", "log_softmax", "LogSoftmax")

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._two_d_layers: set = set()  # softmax layers whose input is certainly 2-D

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.qualname(node.func) == "torch.nn.Sequential":
            self._two_d_layers = _after_flatten_linear(self.ctx, node)
        qualname = self.ctx.qualname(node.func)
        if qualname in _FUNCTIONS:
            if argument(node, 1, "dim") is None and not any(a.star for a in node.args):
                self.report(node, f"`{qualname.rsplit('.', 1)[1]}` without `dim=` guesses the dimension"
                                  " (dim 0 for 1-D and 3-D inputs); pass `dim=` explicitly")
        elif qualname in _LAYERS:
            if argument(node, 0, "dim") is None and not any(a.star for a in node.args):
                fix = None
                if node in self._two_d_layers:
                    fix = FixSpec("Pass `dim=1` (what PyTorch picks for this 2-D input)",
                                  (Replacement(node, self.ctx.code(with_args(node, [keyword_arg("dim", "1")]))),))
                self.report(node, f"`nn.{qualname.rsplit('.', 1)[1]}()` without `dim=` guesses the dimension"
                                  " at each call; pass `dim=` explicitly", fix)

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
        Invalid(
            """
            import torch.nn as nn
            head = nn.Sequential(nn.Flatten(), nn.Linear(1024, 10), nn.ReLU(), nn.Softmax())
            """,
            fixed="""
            import torch.nn as nn
            head = nn.Sequential(nn.Flatten(), nn.Linear(1024, 10), nn.ReLU(), nn.Softmax(dim=1))
            """,
        ),
    ]
