from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import keyword_arg, with_args
from torchcheck.analysis.distributions import DISTRIBUTIONS, KLCall, kl_call
from torchcheck.analysis.syntax import argument, literal
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity


class KlDivReductionMean(Rule):
    """
    ## What it does
    Finds KL divergence computed with `reduction="mean"` (`nn.KLDivLoss(reduction="mean")`,
    `F.kl_div(..., reduction="mean")`), and with no `reduction=` at all, whose default is
    `"mean"`, where the call compares whole distributions: its arguments come out of a
    `softmax`/`log_softmax` or out of a model (distillation between a student and a teacher).
    A pointwise use of `kl_div` on values nothing is known about is left alone.

    ## Why is this bad?
    `"mean"` divides the summed divergence by the number of *elements* (batch size × number of
    classes), not by the batch size: the loss is the KL divergence divided by the number of
    classes. Its gradient shrinks with the vocabulary or class count, so a distillation term
    weighted against a cross-entropy term is silently far weaker than intended. `"batchmean"` is
    the mathematical KL divergence per sample; torch warns about this at run time, once, but
    only for an explicit `"mean"`.

    ## Example
    ```python
    kd = nn.KLDivLoss()   # reduction="mean"
    loss = kd(F.log_softmax(student / T, 1), F.softmax(teacher / T, 1)) * T * T
    ```

    ## Use instead
    ```python
    kd = nn.KLDivLoss(reduction="batchmean")
    loss = kd(F.log_softmax(student / T, 1), F.softmax(teacher / T, 1)) * T * T
    ```

    ## Fix safety
    The fix writes `reduction="batchmean"`. It is unsafe: the loss grows by the number of
    classes, so a weight or learning rate tuned for the old scale must be retuned.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.KLDivLoss.html
    """

    code = "TC107"
    name = "kl-div-reduction-mean"
    summary = "KL divergence with `reduction=\"mean\"` divides by the number of elements, not the batch size"
    severity = Severity.WARNING
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Multiplies the loss by the number of classes, so weights tuned for the old scale change meaning."
    needles = ("kl_div", "KLDivLoss")

    def visit_Call(self, node: cst.Call) -> None:
        if api.loss_class(self.ctx.qualname(node.func)) == "KLDivLoss":
            self._check_explicit(node, api.LOSS_CLASSES["KLDivLoss"])
            return
        kl = kl_call(self.ctx, node)
        if kl is None or kl.torch_op:
            return
        if kl.options is node:
            self._check_explicit(node, api.FUNCTIONAL_LOSSES["kl_div"][1])
        if kl.reduction == "default" and self._compares_distributions(kl):
            self._report_default(kl)

    def _check_explicit(self, call: cst.Call, params: tuple[str, ...]) -> None:
        given = argument(call, params.index("reduction"), "reduction")
        if given is None or literal(given.value) != "mean":
            return
        fixed = cst.SimpleString(given.value.value.replace("mean", "batchmean", 1))
        self.report(
            given.value,
            'KL divergence with `reduction="mean"` divides by the number of elements, not the batch size, so the'
            ' loss is the KL divergence divided by the number of classes; use `reduction="batchmean"`',
            FixSpec('Use `reduction="batchmean"`', (Replacement(given.value, self.ctx.code(fixed)),)),
        )

    def _compares_distributions(self, kl: KLCall) -> bool:
        """Both sides are distributions as a whole: a softmax-family output, or a model's output."""
        for expr in (kl.loss.input, kl.loss.target):
            value = self.ctx.value(expr) if expr is not None else None
            if value is not None and value.is_tensor and (value.activation in DISTRIBUTIONS or value.source):
                return True
        return False

    def _report_default(self, kl: KLCall) -> None:
        options = kl.options
        here = options in self.ctx.analysis.values  # the constructor is in this file
        node = options if here else kl.loss.call
        fixed = with_args(options, [*options.args, keyword_arg("reduction", '"batchmean"')])
        fix = FixSpec('Pass `reduction="batchmean"`', (Replacement(options, self.ctx.code(fixed)),)) if here else None
        related = [] if node is kl.loss.call else [(kl.loss.call, "used here to compare two distributions")]
        self.report(
            node,
            f"`{kl.loss.callee_text}` uses the default `reduction=\"mean\"`, which divides by the number of elements,"
            " not the batch size, so the loss is the KL divergence divided by the number of classes; pass"
            ' `reduction="batchmean"`',
            fix,
            related=related,
        )

    VALID = [
        """
        import torch.nn as nn
        import torch.nn.functional as F
        kd = nn.KLDivLoss(reduction="batchmean")
        def distill(student_logits, teacher_logits):
            return kd(F.log_softmax(student_logits, 1), F.softmax(teacher_logits, 1))
        """,
        """
        import torch.nn.functional as F
        def pointwise(log_pred, target):  # nothing says these are distributions
            return F.kl_div(log_pred, target)
        """,
        """
        import torch.nn.functional as F
        def distill(student_logits, teacher_logits):
            return F.kl_div(F.log_softmax(student_logits, 1), F.softmax(teacher_logits, 1), reduction="sum")
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            import torch.nn.functional as F
            kd = nn.KLDivLoss()
            def distill(student_logits, teacher_logits, T=4.0):
                return kd(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1)) * T * T
            """,
            fixed="""
            import torch.nn as nn
            import torch.nn.functional as F
            kd = nn.KLDivLoss(reduction="batchmean")
            def distill(student_logits, teacher_logits, T=4.0):
                return kd(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1)) * T * T
            """,
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def distill(log_p, q):
                return F.kl_div(log_p, q, reduction='mean')
            """,
            fixed="""
            import torch.nn.functional as F
            def distill(log_p, q):
                return F.kl_div(log_p, q, reduction='batchmean')
            """,
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                return F.kl_div(F.log_softmax(student_logits, -1), F.softmax(teacher_logits, -1))
            """,
            fixed="""
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                return F.kl_div(F.log_softmax(student_logits, -1), F.softmax(teacher_logits, -1), reduction="batchmean")
            """,
        ),
    ]
