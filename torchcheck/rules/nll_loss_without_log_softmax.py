from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import loss_call, loss_evidence, origin_note
from torchcheck.rule import Invalid, Rule

_DESCRIPTION = {
    "softmax": "softmax probabilities",
    "sigmoid": "sigmoid probabilities",
    "logits": "raw logits",
}


class NllLossWithoutLogSoftmax(Rule):
    """
    ## What it does
    Finds `nn.NLLLoss` / `F.nll_loss` fed something other than log-probabilities: raw logits (the
    output of a final `nn.Linear`, or of a torchvision classifier) or softmax/sigmoid probabilities.

    The runtime check of the same name (`torchcheck run`, `torchcheck.watch()`) reads the values
    that reach `nll_loss`: an input above 0 (beyond a margin of 1e-3 for `log(p + eps)`), or on
    the CPU rows that are probabilities (in [0, 1], each summing to 1), is not log-probabilities,
    whatever produced it. One class, all zeros and integer inputs are left alone.

    ## Why is this bad?
    `NLLLoss` expects `log_softmax` output; it only picks `-input[target]`. Given logits it
    rewards making the target logit large without normalising against the others, so the loss
    can go to minus infinity; given probabilities it optimises the wrong objective. Training runs
    and the numbers look plausible.

    ## Example
    ```python
    probs = F.softmax(model(x), dim=1)
    loss = F.nll_loss(probs, y)
    ```

    ## Use instead
    ```python
    loss = F.nll_loss(F.log_softmax(model(x), dim=1), y)
    # or, simpler and more stable:
    loss = F.cross_entropy(model(x), y)
    ```

    ## Fix safety
    No fix: whether to add `log_softmax` or switch to `cross_entropy` is the author's choice.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.NLLLoss.html
    """

    code = "TC102"
    name = "nll-loss-without-log-softmax"
    summary = "NLLLoss is fed raw logits or probabilities instead of log-probabilities"
    runtime_check = True
    needles = ("nll_loss", "NLLLoss")

    def visit_Call(self, node: cst.Call) -> None:
        loss = loss_call(self.ctx, node)
        if loss is None or loss.loss not in ("NLLLoss", "NLLLoss2d") or loss.input is None:
            return
        value = self.ctx.value(loss.input)
        if value.activation not in _DESCRIPTION:
            return
        origin = origin_note(self.ctx, value)
        self.report(
            loss.input,
            f"`{loss.callee_text}` expects log-probabilities but gets {_DESCRIPTION[value.activation]}{origin};"
            " apply `log_softmax` first, or use `cross_entropy` on the logits",
            related=loss_evidence(self.ctx, loss, value),
        )

    VALID = [
        """
        import torch.nn.functional as F
        def step(model, x, y):
            return F.nll_loss(F.log_softmax(model(x), dim=1), y)
        """,
        """
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 3)
                self.out = nn.LogSoftmax(dim=1)
            def forward(self, x):
                return self.out(self.fc(x))
        net = Net()
        loss = nn.NLLLoss()(net(x), y)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            def step(model, x, y):
                probs = F.softmax(model(x), dim=1)
                return F.nll_loss(probs, y)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc1 = nn.Linear(8, 8)
                    self.fc2 = nn.Linear(8, 3)
                def forward(self, x):
                    return self.fc2(self.fc1(x).relu())
            criterion = nn.NLLLoss()
            net = Net()
            def step(x, y):
                return criterion(net(x), y)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            class Trainer:
                def __init__(self, model, criterion):
                    self.model = model
                    self.criterion = criterion
                def step(self, x, y):
                    return self.criterion(self.model(x), y)
            trainer = Trainer(nn.Sequential(nn.Linear(8, 3), nn.Softmax(dim=1)), nn.NLLLoss())
            trainer.step(x, y)
            """
        ),
    ]
