from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import loss_call, short_code, source_evidence
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety


class TargetRequiresGrad(Rule):
    """
    ## What it does
    Finds a loss whose *target* carries an autograd graph: it was computed by a model outside
    `torch.no_grad()` and not detached (a teacher's output in distillation, a target network's
    output in RL), or it was created with `requires_grad=True`.

    ## Why is this bad?
    Gradients then flow into the target as well as the prediction: the teacher or target network
    is trained towards the student, memory for its graph is kept, and the loss can be minimised by
    moving the target. Older PyTorch versions raised an error for some losses; newer ones train
    silently.

    ## Example
    ```python
    student_logits = student(x)
    teacher_logits = teacher(x)
    loss = F.mse_loss(student_logits, teacher_logits)
    ```

    ## Use instead
    ```python
    with torch.no_grad():
        teacher_logits = teacher(x)
    loss = F.mse_loss(student_logits, teacher_logits)
    # or: F.mse_loss(student_logits, teacher_logits.detach())
    ```
    A loss between two outputs of the *same* model (a consistency loss) is not reported, and
    neither are swapped arguments: a symmetric loss (`l1_loss`, `mse_loss`, `smooth_l1_loss`,
    `huber_loss`) whose other argument is data, or any loss whose input carries no graph. A target
    computed by arithmetic on a model's output (a bootstrapped TD target `r + gamma * q(s')`) is
    reported even when the prediction comes from the same network.

    ## Fix safety
    The fix appends `.detach()` to the target. It is unsafe: if the gradient into the target was
    intended, training changes.

    ## References
    - https://pytorch.org/docs/stable/notes/autograd.html
    """

    code = "TC105"
    name = "target-requires-grad"
    summary = "A loss target carries an autograd graph"
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Stops gradients into the target, which changes training if they were intended."
    runtime_check = True
    needles = ("loss", "Loss")

    def visit_Call(self, node: cst.Call) -> None:
        loss = loss_call(self.ctx, node)
        if loss is None or loss.loss not in api.TARGET_LOSSES or loss.target is None or loss.input is None:
            return
        target = self.ctx.value(loss.target)
        if not target.is_tensor or self.ctx.analysis.has_graph(target, loss.target) is not True:
            return
        prediction = self.ctx.value(loss.input)
        prediction_graph = self.ctx.analysis.has_graph(prediction, loss.input)
        if prediction_graph is not True:
            return  # swapped arguments (the "target" is the prediction, the input is data), or unknown
        if target.source is not None and target.source == prediction.source and not target.arithmetic:
            return  # two outputs of one model: a consistency loss, gradients into both are intended
        if target.source is None and prediction.source is None and target.dtype is None:
            return  # neither side traced to a model or a requires_grad tensor: not sure enough
        where = f"an output of `{target.source}`" if target.source else "a tensor created with requires_grad=True"
        self.report(
            loss.target,
            f"The target of `{loss.callee_text}` is {where} that carries an autograd graph; gradients will flow"
            f" into it — compute it under `torch.no_grad()` or pass {_shown_detached(self.ctx, loss.target)}",
            FixSpec("Detach the target", (Replacement(loss.target, _detached(self.ctx, loss.target)),)),
            related=source_evidence(self.ctx, loss.target),
        )

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        """A soft-target cross-entropy written by hand: `(teacher_probs * -student_log_probs).sum(-1)`."""
        if not isinstance(node.operator, cst.Multiply):
            return
        left, right = _negated(node.left), _negated(node.right)
        for target, log_probs in ((left, right), (right, left)):
            soft = self.ctx.value(target)
            student = self.ctx.value(log_probs)
            if soft.activation != "softmax" or student.activation != "log_softmax":
                continue
            if soft.source is None or soft.source == student.source:
                continue  # not traced to a model, or one model's own entropy / consistency
            if self.ctx.analysis.has_graph(soft, target) is not True or self.ctx.analysis.has_graph(student, log_probs) is not True:
                continue
            self.report(
                target,
                f"The soft target `{short_code(self.ctx, target)}` of this cross-entropy is an output of `{soft.source}`"
                f" that carries an autograd graph; gradients will flow into `{soft.source}` — pass"
                f" {_shown_detached(self.ctx, target)}",
                FixSpec("Detach the target", (Replacement(target, _detached(self.ctx, target)),)),
                related=source_evidence(self.ctx, target),
            )

    VALID = [
        """
        import torch
        import torch.nn.functional as F
        def soft_distillation(student, teacher, x):
            with torch.no_grad():
                teacher_probs = F.softmax(teacher(x), dim=-1)
            return -(teacher_probs * F.log_softmax(student(x), dim=-1)).sum(-1).mean()
        """,
        """
        import torch.nn.functional as F
        def entropy(model, x):
            logits = model(x)
            return -(F.softmax(logits, -1) * F.log_softmax(logits, -1)).sum(-1)
        """,
        """
        import torch
        import torch.nn.functional as F
        def distill(student, teacher, x):
            with torch.no_grad():
                t = teacher(x)
            return F.kl_div(F.log_softmax(student(x), 1), F.softmax(t, 1), reduction="batchmean")
        """,
        """
        import torch.nn.functional as F
        def distill(student, teacher, x):
            return F.mse_loss(student(x), teacher(x).detach())
        """,
        """
        import torch.nn.functional as F
        def consistency(model, x1, x2):
            return F.mse_loss(model(x1), model(x2))
        """,
        """
        import torch.nn.functional as F
        def reconstruction_loss(autoencoder, pixel_values):
            reconstruction = autoencoder(pixel_values)
            return F.l1_loss(pixel_values, reconstruction)  # swapped, symmetric: same loss
        """,
        """
        import torch
        import torch.nn as nn
        kl = nn.KLDivLoss(reduction="batchmean")
        def born_again(student, teacher, x):
            with torch.no_grad():
                t = teacher(x)
            return kl(t, student(x))  # swapped: the student is trained through the "target"
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            def distill(student, teacher, x):
                s = student(x)
                t = teacher(x)
                return F.mse_loss(s, t)
            """,
            fixed="""
            import torch.nn.functional as F
            def distill(student, teacher, x):
                s = student(x)
                t = teacher(x)
                return F.mse_loss(s, t.detach())
            """,
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            criterion = nn.MSELoss()
            target = torch.randn(10, requires_grad=True)
            def step(model, x):
                return criterion(model(x), target)
            """
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def joint_distillation_loss(student, teacher, x):
                teacher_probs = F.softmax(teacher(x), dim=-1)
                student_lprobs = F.log_softmax(student(x), dim=-1)
                return (teacher_probs * -student_lprobs).sum(-1).mean()
            """,
            fixed="""
            import torch.nn.functional as F
            def joint_distillation_loss(student, teacher, x):
                teacher_probs = F.softmax(teacher(x), dim=-1)
                student_lprobs = F.log_softmax(student(x), dim=-1)
                return (teacher_probs.detach() * -student_lprobs).sum(-1).mean()
            """,
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def td_loss(q_net, states, actions, rewards, next_states, gamma):
                q = q_net(states).gather(1, actions)
                q_next = q_net(next_states).max(1, keepdim=True)[0]
                return F.smooth_l1_loss(q, rewards + gamma * q_next)
            """
        ),
    ]


def _negated(node: cst.BaseExpression) -> cst.BaseExpression:
    """`lprobs` in `-lprobs`."""
    while isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        node = node.expression
    return node


def _detached(ctx, node: cst.BaseExpression) -> str:
    code = ctx.code(node)
    if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
        return f"{code}.detach()"
    return f"({code}).detach()"


def _shown_detached(ctx, node: cst.BaseExpression) -> str:
    shown = short_code(ctx, node)
    return f"`{shown}.detach()`" if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) \
        else f"`({shown}).detach()`"
