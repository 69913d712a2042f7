from __future__ import annotations

import libcst as cst

from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity


class DeprecatedVariable(Rule):
    """
    ## What it does
    Finds `torch.autograd.Variable(...)` and its `volatile=` argument.

    ## Why is this bad?
    Since PyTorch 0.4 tensors *are* variables: `Variable(t)` just returns a tensor, and
    `volatile=True` is ignored with a warning, so code that relied on it to disable autograd in
    evaluation now builds graphs and uses far more memory, silently.

    ## Example
    ```python
    inputs = Variable(images)
    outputs = model(Variable(images, volatile=True))
    ```

    ## Use instead
    ```python
    inputs = images
    with torch.no_grad():
        outputs = model(images)
    ```

    ## Fix safety
    `Variable(x)` with a single argument becomes `x`. Unsafe: `Variable(t)` returns a new tensor
    object that does not require grad, which code comparing identities could notice. No fix where
    `volatile=` or `requires_grad=` is given.

    ## References
    - https://pytorch.org/blog/pytorch-0_4_0-migration-guide/
    """

    code = "TC404"
    name = "deprecated-variable"
    summary = "Deprecated `torch.autograd.Variable` or `volatile=`"
    severity = Severity.WARNING
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Returns the original tensor object instead of a new one."
    min_target_version = (0, 4)
    needles = ("Variable", "volatile")

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.qualname(node.func) != "torch.autograd.Variable":
            return
        volatile = next((a for a in node.args if a.keyword is not None and a.keyword.value == "volatile"), None)
        if volatile is not None:
            self.report(volatile, "`volatile=` has no effect since PyTorch 0.4, so autograd stays on;"
                                  " run the code under `torch.no_grad()` instead")
            return
        fix = None
        if len(node.args) == 1 and node.args[0].keyword is None and not node.args[0].star:
            fix = FixSpec("Use the tensor directly", (Replacement(node, self.ctx.code(node.args[0].value)),))
        self.report(node, "`Variable` is deprecated since PyTorch 0.4: tensors track gradients themselves;"
                          " use the tensor (with `requires_grad=True` where needed)", fix)

    VALID = [
        """
        import torch
        x = torch.randn(3, requires_grad=True)
        """,
        """
        class Variable:  # not torch's
            def __init__(self, x): ...
        v = Variable(1)
        """,
    ]
    INVALID = [
        Invalid(
            """
            from torch.autograd import Variable
            inputs = Variable(images)
            """,
            fixed="""
            from torch.autograd import Variable
            inputs = images
            """,
        ),
        Invalid(
            """
            import torch
            out = model(torch.autograd.Variable(images, volatile=True))
            """
        ),
    ]
