from __future__ import annotations

import libcst as cst

from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity


class DeprecatedNllLoss2d(Rule):
    """
    ## What it does
    Finds uses of `nn.NLLLoss2d`.

    ## Why is this bad?
    `NLLLoss2d` is a deprecated alias: `nn.NLLLoss` has handled (N, C, H, W) inputs with
    (N, H, W) targets since PyTorch 0.4, and the alias is slated for removal. Code using it breaks
    on upgrade.

    ## Example
    ```python
    criterion = nn.NLLLoss2d()
    ```

    ## Use instead
    ```python
    criterion = nn.NLLLoss()
    ```

    ## Fix safety
    Safe: `NLLLoss` computes exactly the same loss for 4-D inputs. The fix rewrites attribute
    uses (`nn.NLLLoss2d`); a name imported directly is reported without a fix.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.NLLLoss.html
    """

    code = "TC403"
    name = "deprecated-nll-loss-2d"
    summary = "Deprecated `nn.NLLLoss2d`"
    severity = Severity.WARNING
    fix_safety = FixSafety.SAFE
    fix_reason = "NLLLoss computes the same loss for 4-D inputs."
    min_target_version = (0, 4)
    needles = ("NLLLoss2d",)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value == "NLLLoss2d" and self.ctx.qualname(node) == "torch.nn.NLLLoss2d":
            self.report(node, "`NLLLoss2d` is deprecated; `NLLLoss` handles (N, C, H, W) inputs",
                        FixSpec("Use `NLLLoss`", (Replacement(node.attr, "NLLLoss"),)))

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and self.ctx.qualname(node.func) == "torch.nn.NLLLoss2d":
            self.report(node.func, "`NLLLoss2d` is deprecated; `NLLLoss` handles (N, C, H, W) inputs")

    VALID = [
        """
        import torch.nn as nn
        criterion = nn.NLLLoss()
        """,
        """
        class NLLLoss2d:  # a project's own class of that name
            pass
        criterion = NLLLoss2d()
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            criterion = nn.NLLLoss2d()
            """,
            fixed="""
            import torch.nn as nn
            criterion = nn.NLLLoss()
            """,
        ),
        Invalid(
            """
            from torch.nn import NLLLoss2d
            criterion = NLLLoss2d(ignore_index=255)
            """
        ),
    ]
