from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import loss_call, loss_evidence, only_use_is, origin_note
from torchcheck.analysis.dataflow import argument
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety

_TARGET_LOSSES = {"CrossEntropyLoss"}


class SoftmaxBeforeCrossEntropy(Rule):
    """
    ## What it does
    Finds softmax or log-softmax output that reaches `nn.CrossEntropyLoss` or `F.cross_entropy`:
    `F.softmax`, `torch.softmax`, `x.softmax()`, an `nn.Softmax`/`nn.LogSoftmax` layer, or
    `exp(log_softmax(x))`, passed directly, through variables, through helper functions, or as the
    output of a model whose `forward` (or `nn.Sequential`) ends in one.

    ## Why is this bad?
    `CrossEntropyLoss` applies `log_softmax` to its input itself. Given probabilities it computes
    `log_softmax(softmax(x))`: the loss is squeezed into a narrow range, gradients shrink, and the
    model learns slowly or stalls. Nothing crashes; accuracy is just worse.

    ## Example
    ```python
    logits = model(images)
    loss = F.cross_entropy(F.softmax(logits, dim=1), labels)
    ```

    ## Use instead
    ```python
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    probs = F.softmax(logits, dim=1)  # for reporting only
    ```
    Softmax used only for reporting is fine, and so is `log_softmax` followed by `NLLLoss`.

    ## Fix safety
    The fix drops a softmax written directly inside the loss call, or assigned to a variable whose
    only use is the loss (`probs = F.softmax(x, 1)` becomes `probs = x`). It is unsafe: the loss
    values and the training result change (which is the point).

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html
    """

    code = "TC101"
    name = "softmax-before-cross-entropy"
    summary = "Softmax or log-softmax output is passed to a loss that applies log-softmax itself"
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Changes the loss values and therefore training results."
    runtime_check = True
    needles = ("cross_entropy", "CrossEntropyLoss")

    def visit_Call(self, node: cst.Call) -> None:
        loss = loss_call(self.ctx, node)
        if loss is None or loss.loss not in _TARGET_LOSSES or loss.input is None:
            return
        value = self.ctx.value(loss.input)
        if value.activation not in ("softmax", "log_softmax"):
            return
        what = "log-softmax" if value.activation == "log_softmax" else "softmax"
        origin = origin_note(self.ctx, value)
        fix = None
        if value.origin is loss.input or only_use_is(self.ctx, loss.input, value.origin):
            inner = _softmax_input(self.ctx, value.origin)
            if inner is not None:
                fix = FixSpec(f"Pass the logits to `{loss.callee_text}` without {what}",
                              (Replacement(value.origin, self.ctx.code(inner)),))
        self.report(
            loss.input,
            f"{what.capitalize()} output{origin} is passed to `{loss.callee_text}`, which applies log-softmax itself;"
            " pass the raw logits",
            fix,
            related=loss_evidence(self.ctx, loss, value),
        )

    VALID = [
        """
        import torch.nn.functional as F
        def step(model, x, y):
            logits = model(x)
            probs = F.softmax(logits, dim=1)  # reporting only
            return F.cross_entropy(logits, y), probs
        """,
        """
        import torch.nn as nn, torch.nn.functional as F
        criterion = nn.NLLLoss()
        def step(model, x, y):
            return criterion(F.log_softmax(model(x), dim=1), y)
        """,
        """
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
            def forward(self, x):
                return self.body(x)
        criterion = nn.CrossEntropyLoss()
        model = Net()
        def step(x, y):
            return criterion(model(x), y)
        """,
        """
        import torch.nn as nn
        def make_head(kind):
            if kind == "probs":
                return nn.Softmax(dim=1)
            return nn.Identity()
        model = nn.Sequential(nn.Linear(8, 3), make_head("logits"))
        loss = nn.CrossEntropyLoss()(model(x), y)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            def step(model, x, y):
                return F.cross_entropy(F.softmax(model(x), dim=1), y)
            """,
            fixed="""
            import torch.nn.functional as F
            def step(model, x, y):
                return F.cross_entropy(model(x), y)
            """,
        ),
        Invalid(
            """
            import torch
            from torch import nn
            criterion = nn.CrossEntropyLoss()
            def step(model, x, y):
                out = model(x)
                probs = torch.softmax(out, dim=-1)
                loss = criterion(probs, y)
                return loss
            """,
            fixed="""
            import torch
            from torch import nn
            criterion = nn.CrossEntropyLoss()
            def step(model, x, y):
                out = model(x)
                probs = out
                loss = criterion(probs, y)
                return loss
            """,
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def step(model, x, y):
                probs = F.softmax(model(x), dim=1)
                print(probs.max(1))  # used for more than the loss: no fix
                return F.cross_entropy(probs, y)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.layers = nn.Sequential(nn.Linear(784, 10), nn.Softmax(dim=1))
                def forward(self, x):
                    return self.layers(x)
            model = Net()
            criterion = nn.CrossEntropyLoss()
            def train(x, y):
                return criterion(model(x), y)
            """
        ),
        Invalid(
            """
            from torch.nn.functional import cross_entropy as ce, log_softmax
            def step(logits, y):
                return ce(log_softmax(logits, 1).exp(), y)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            def train(model, loader, criterion):
                for x, y in loader:
                    criterion(model(x), y).backward()
            def main(loader):
                model = nn.DataParallel(nn.Sequential(nn.Linear(8, 3), nn.Softmax(dim=1)))
                train(model, loader, nn.CrossEntropyLoss())
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            import torch.nn.functional as F
            def step(model, x, y):
                losses = {"cls": nn.CrossEntropyLoss(), "box": nn.L1Loss()}
                out = {"probs": F.softmax(model(x), dim=1)}
                return losses["cls"](out["probs"], y)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            def make_head(kind):
                if kind == "probs":
                    return nn.Softmax(dim=1)
                return nn.Identity()
            class Net(nn.Module):
                def __init__(self, head="probs"):
                    super().__init__()
                    self.body = nn.Sequential(nn.Linear(8, 3), make_head(head))
                def forward(self, x):
                    return self.body(x)
            model = Net()
            loss = nn.CrossEntropyLoss()(model(x), y)
            """
        ),
    ]


def _softmax_input(ctx, call: cst.CSTNode) -> cst.BaseExpression | None:
    """`x` of `F.softmax(x, dim=1)` or `x.softmax(1)`; None for other forms (a layer, exp(log_softmax))."""
    if not type(call) is cst.Call:
        return None
    if ctx.qualname(call.func) in api.SOFTMAX_FUNCTIONS | api.LOG_SOFTMAX_FUNCTIONS:
        first = argument(call, 0, "input")
        return first.value if first is not None else None
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("softmax", "log_softmax"):
        return call.func.value
    return None
