from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import loss_call, loss_evidence, origin_note
from torchcheck.rule import Invalid, Rule


class BceOnLogits(Rule):
    """
    ## What it does
    Finds `nn.BCELoss` / `F.binary_cross_entropy` fed values known not to be probabilities: the
    raw output of a final `nn.Linear` (logits) or `log_softmax` output.

    ## Why is this bad?
    `BCELoss` computes `log(input)` and `log(1 - input)`: it needs values in [0, 1]. Logits
    outside that range raise a device-side assert on CUDA in recent versions and, in older ones or
    when they happen to fall inside, silently give a meaningless loss.

    ## Example
    ```python
    class Net(nn.Module):
        def forward(self, x):
            return self.fc(x)          # logits
    loss = nn.BCELoss()(net(x), y)
    ```

    ## Use instead
    ```python
    loss = nn.BCEWithLogitsLoss()(net(x), y)   # applies sigmoid itself, stably
    ```

    ## Fix safety
    No fix: switching the loss class is a choice the author should make.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.BCELoss.html
    """

    code = "TC104"
    name = "bce-on-logits"
    summary = "BCELoss is fed logits rather than probabilities"
    needles = ("binary_cross_entropy", "BCELoss")

    def visit_Call(self, node: cst.Call) -> None:
        loss = loss_call(self.ctx, node)
        if loss is None or loss.loss != "BCELoss" or loss.input is None:
            return
        value = self.ctx.value(loss.input)
        if value.activation not in ("logits", "log_softmax"):
            return
        kind = "raw logits" if value.activation == "logits" else "log-probabilities"
        origin = origin_note(self.ctx, value)
        self.report(
            loss.input,
            f"`{loss.callee_text}` needs probabilities in [0, 1] but gets {kind}{origin}; use `BCEWithLogitsLoss`"
            " on the logits",
            related=loss_evidence(self.ctx, loss, value),
        )

    VALID = [
        """
        import torch, torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 1)
            def forward(self, x):
                return torch.sigmoid(self.fc(x))
        net = Net()
        loss = nn.BCELoss()(net(x), y)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 1)
                def forward(self, x):
                    return self.fc(x)
            net = Net()
            criterion = nn.BCELoss()
            loss = criterion(net(x), y)
            """
        ),
    ]
