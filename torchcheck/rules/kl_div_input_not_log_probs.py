from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import (
    loss_evidence,
    only_use_is,
    origin_note,
    short_code,
    source_evidence,
)
from torchcheck.analysis.distributions import (
    PROBABILITIES,
    KLCall,
    kl_call,
    logits_evidence,
)
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety

_DESCRIPTION = {"softmax": "softmax probabilities", "sigmoid": "sigmoid probabilities"}


class KlDivInputNotLogProbs(Rule):
    """
    ## What it does
    Finds KL divergence (`F.kl_div`, `torch.kl_div`, `nn.KLDivLoss`) fed the wrong kind of
    distribution:
    - an input that is probabilities (`softmax`, `sigmoid`, or a model whose `forward` or
      `nn.Sequential` ends in one) or raw logits, where log-probabilities are expected;
    - a target that is log-probabilities (`log_softmax`) without `log_target=True`, or
      probabilities with `log_target=True`;
    - a target that is raw logits (the output of a final linear layer, or a tensor the code also
      feeds to `cross_entropy`, which takes logits).

    The runtime check of the same name (`torchcheck run`, `torchcheck.watch()`) reads the values
    that reach `kl_div`: an input above 0 is not log-probabilities, and a target below 0 with
    `log_target=False` (above 0 with `log_target=True`) is not of the kind declared; a margin of
    1e-3 leaves `log(p + eps)` alone. On an accelerator the values are read in the harness's
    batched device read, not at every step.

    ## Why is this bad?
    `kl_div(input, target)` computes `target * (log(target) - input)`: it takes the input to be
    log-probabilities and, unless `log_target=True`, the target to be probabilities. Given
    probabilities as input it optimises a different quantity that is not a divergence (it can be
    negative and is minimised by pushing the input up, not towards the target); distillation
    "works" but the student learns the wrong thing. Nothing fails.

    ## Example
    ```python
    student = F.softmax(student_logits / T, dim=1)
    teacher = F.softmax(teacher_logits / T, dim=1)
    loss = F.kl_div(student, teacher, reduction="batchmean")
    ```

    ## Use instead
    ```python
    student = F.log_softmax(student_logits / T, dim=1)
    teacher = F.softmax(teacher_logits / T, dim=1)
    loss = F.kl_div(student, teacher, reduction="batchmean")
    # or, with both as log-probabilities:
    loss = F.kl_div(student, F.log_softmax(teacher_logits / T, dim=1), reduction="batchmean", log_target=True)
    ```

    ## Fix safety
    Where the input is a `softmax(...)` call written in the KL call, or assigned to a variable
    used only there, the fix calls `log_softmax` with the same arguments. It is safe: the input
    becomes the log-probabilities of the same distribution, over the same dimension, which is
    what KL divergence is defined on. Other cases (a `Softmax` layer, a sigmoid, a wrong
    target) need the author and get no fix.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.KLDivLoss.html
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.kl_div.html
    """

    code = "TC106"
    name = "kl-div-input-not-log-probs"
    summary = "KL divergence is fed probabilities or logits as input, or a target of the wrong kind"
    runtime_check = True
    fix_safety = FixSafety.SAFE
    fix_reason = "Turns the input into the log-probabilities of the same distribution, over the same dimension."
    needles = ("kl_div", "KLDivLoss")

    def visit_Call(self, node: cst.Call) -> None:
        kl = kl_call(self.ctx, node)
        if kl is None or kl.loss.input is None:
            return
        if not self._check_input(kl):
            self._check_target(kl)

    def _check_input(self, kl: KLCall) -> bool:
        loss = kl.loss
        value = self.ctx.value(loss.input)
        if value.activation in PROBABILITIES:
            what = f"{_DESCRIPTION[value.activation]}{origin_note(self.ctx, value)}"
            advice = "apply `log_softmax` to the logits instead" if value.activation == "softmax" else \
                "pass log-probabilities (`F.logsigmoid` for one Bernoulli variable per element)"
        else:
            why = logits_evidence(self.ctx, loss.input)
            if why is None:
                return False
            what = f"raw logits (`{short_code(self.ctx, loss.input, 40)}`, {why})"
            advice = "apply `log_softmax` first"
        self.report(
            loss.input,
            f"`{loss.callee_text}` expects log-probabilities as its input but gets {what}; {advice}",
            self._fix(loss.input, value),
            related=loss_evidence(self.ctx, loss, value),
        )
        return True

    def _check_target(self, kl: KLCall) -> None:
        loss = kl.loss
        if loss.target is None or kl.log_target is None:
            return
        value = self.ctx.value(loss.target)
        origin = origin_note(self.ctx, value)
        if value.activation == "log_softmax" and not kl.log_target:
            problem = (f"gets log-probabilities{origin} as its target without `log_target=True`, so it reads them as"
                       " probabilities; pass `log_target=True` or use `softmax` for the target")
        elif value.activation == "softmax" and kl.log_target:
            problem = (f"gets probabilities{origin} as its target with `log_target=True`, so it reads them as"
                       " log-probabilities; use `log_softmax` for the target or drop `log_target=True`")
        elif not kl.log_target and (why := logits_evidence(self.ctx, loss.target)) is not None:
            problem = (f"gets raw logits as its target (`{short_code(self.ctx, loss.target, 40)}`, {why}); it expects"
                       " probabilities (`softmax`) as the target and log-probabilities (`log_softmax`) as the input")
        else:
            return
        related = []
        if value.origin is not None and isinstance(value.origin, cst.CSTNode):
            related.append((value.origin, f"{value.activation.replace('_', '-')} applied here"))
        related.extend(source_evidence(self.ctx, loss.target))
        self.report(loss.target, f"`{loss.callee_text}` {problem}", related=related)

    def _fix(self, used: cst.CSTNode, value) -> FixSpec | None:
        call = value.origin
        if value.activation != "softmax" or not type(call) is cst.Call or not isinstance(call.func, cst.Attribute):
            return None
        if call is not used and not only_use_is(self.ctx, used, call):
            return None
        func = call.func
        method = func.attr.value == "softmax" and self.ctx.qualname(func) is None  # `x.softmax(1)`
        if not method and self.ctx.qualname(func) not in api.SOFTMAX_FUNCTIONS:
            return None
        fixed = call.with_changes(func=func.with_changes(attr=cst.Name("log_softmax")))
        return FixSpec("Use `log_softmax` for the input", (Replacement(call, self.ctx.code(fixed)),))

    VALID = [
        """
        import torch.nn.functional as F
        def distill(student_logits, teacher_logits, T=4.0):
            return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                            reduction="batchmean") * T * T
        """,
        """
        import torch.nn as nn
        import torch.nn.functional as F
        kl = nn.KLDivLoss(reduction="batchmean", log_target=True)
        def distill(student_logits, teacher_logits):
            return kl(F.log_softmax(student_logits, dim=-1), F.log_softmax(teacher_logits, dim=-1))
        """,
        """
        import torch
        import torch.nn.functional as F
        def consistency(p_logits, q_logits):
            p = torch.softmax(p_logits, dim=-1)
            return F.kl_div(torch.log(p), F.softmax(q_logits, dim=-1), reduction="batchmean")
        """,
        """
        import torch.nn.functional as F
        def kd(scores, targets):  # nothing is known about either: no finding
            return F.kl_div(scores, targets, reduction="batchmean")
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                return F.kl_div(F.softmax(student_logits, dim=1), F.softmax(teacher_logits, dim=1), reduction="sum")
            """,
            fixed="""
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                return F.kl_div(F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits, dim=1), reduction="sum")
            """,
        ),
        Invalid(
            """
            import torch
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                student = torch.softmax(student_logits, -1)
                teacher = torch.softmax(teacher_logits, -1)
                return F.kl_div(student, teacher, reduction="batchmean")
            """,
            fixed="""
            import torch
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                student = torch.log_softmax(student_logits, -1)
                teacher = torch.softmax(teacher_logits, -1)
                return F.kl_div(student, teacher, reduction="batchmean")
            """,
        ),
        Invalid(
            """
            import torch.nn as nn
            class Student(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.body = nn.Sequential(nn.Linear(16, 10), nn.Softmax(dim=1))
                def forward(self, x):
                    return self.body(x)
            student = Student()
            kl = nn.KLDivLoss(reduction="batchmean")
            def step(x, teacher_probs):
                return kl(student(x), teacher_probs)
            """
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits):
                return F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits, 1), reduction="sum")
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            criterion = nn.CrossEntropyLoss()
            kl = nn.KLDivLoss(reduction="batchmean")
            def step(student, teacher, x, y):
                outputs = student(x)
                loss = criterion(outputs, y)
                return loss + kl(teacher(x), outputs)
            """
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def distill(student_logits, teacher_logits, T=2.0):
                return F.kl_div(student_logits / T, F.softmax(teacher_logits / T, 1), reduction="batchmean")
            """
        ),
    ]
