from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import loss_call, loss_evidence, origin_note
from torchcheck.rule import Invalid, Rule


class SigmoidBeforeBceWithLogits(Rule):
    """
    ## What it does
    Finds sigmoid (or softmax) output passed to `nn.BCEWithLogitsLoss` or
    `F.binary_cross_entropy_with_logits`, directly, through variables or helpers, or as the output
    of a model whose `forward` ends in `nn.Sigmoid` / `torch.sigmoid`.

    ## Why is this bad?
    `BCEWithLogitsLoss` applies the sigmoid itself (in a numerically stable way). Given
    probabilities it computes `sigmoid(sigmoid(x))`, which lives in (0.5, 0.73): the loss can
    never reach zero and gradients vanish. The model trains badly without any error.

    ## Example
    ```python
    criterion = nn.BCEWithLogitsLoss()
    loss = criterion(torch.sigmoid(model(x)), y)
    ```

    ## Use instead
    ```python
    criterion = nn.BCEWithLogitsLoss()
    loss = criterion(model(x), y)
    ```

    ## Fix safety
    No fix: the sigmoid may also feed other code.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html
    """

    code = "TC103"
    name = "sigmoid-before-bce-with-logits"
    summary = "Sigmoid output is passed to a loss that applies sigmoid itself"
    needles = ("with_logits", "WithLogits")

    def visit_Call(self, node: cst.Call) -> None:
        loss = loss_call(self.ctx, node)
        if loss is None or loss.loss != "BCEWithLogitsLoss" or loss.input is None:
            return
        value = self.ctx.value(loss.input)
        if value.activation not in ("sigmoid", "softmax"):
            return
        origin = origin_note(self.ctx, value)
        self.report(
            loss.input,
            f"{value.activation.capitalize()} output{origin} is passed to `{loss.callee_text}`, which applies"
            " sigmoid itself; pass the raw logits (or use `BCELoss` on probabilities)",
            related=loss_evidence(self.ctx, loss, value),
        )

    VALID = [
        """
        import torch, torch.nn as nn
        criterion = nn.BCEWithLogitsLoss()
        def step(model, x, y):
            logits = model(x)
            preds = torch.sigmoid(logits) > 0.5  # for metrics
            return criterion(logits, y), preds
        """,
        """
        import torch, torch.nn as nn
        criterion = nn.BCELoss()
        def step(model, x, y):
            return criterion(torch.sigmoid(model(x)), y)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch, torch.nn as nn
            criterion = nn.BCEWithLogitsLoss()
            def step(model, x, y):
                return criterion(torch.sigmoid(model(x)), y)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            import torch.nn.functional as F
            class Disc(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.main = nn.Sequential(nn.Linear(64, 1), nn.Sigmoid())
                def forward(self, x):
                    return self.main(x)
            D = Disc()
            def d_loss(x, real):
                return F.binary_cross_entropy_with_logits(D(x), real)
            """
        ),
        Invalid(
            """
            import torch
            import torch.nn.functional as F
            class Trainer:
                def __init__(self):
                    self.loss_fn = F.binary_cross_entropy_with_logits
                def loss(self, scores, labels):
                    return self.loss_fn(scores, labels)
                def step(self, model, x, y):
                    return self.loss(torch.sigmoid(model(x)), y)
            """
        ),
    ]
