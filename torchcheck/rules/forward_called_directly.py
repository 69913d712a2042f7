from __future__ import annotations

import libcst as cst

from torchcheck.analysis.dataflow import is_model_like
from torchcheck.analysis.imports import dotted_name
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity


class ForwardCalledDirectly(Rule):
    """
    ## What it does
    Finds `model.forward(x)` called on a model (an `nn.Module` instance, or an object named like
    one) from outside that model's own methods. `self.forward(...)` and `super().forward(...)`
    are fine.

    ## Why is this bad?
    `model(x)` runs `__call__`, which runs registered forward hooks and pre-hooks (used by
    `torch.nn.utils` pruning and weight norm, quantization observers, profilers, DDP,
    `torch.compile`, and torchcheck's own runtime checks) around `forward`. Calling `forward`
    directly skips all of them: pruning masks are not applied, DDP does not sync, and the code
    still runs.

    ## Example
    ```python
    logits = model.forward(images)
    ```

    ## Use instead
    ```python
    logits = model(images)
    ```

    ## Fix safety
    Unsafe: hooks start running where they did not before, which is the point but can change
    results.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.forward
    """

    code = "TC502"
    name = "forward-called-directly"
    summary = "`model.forward(x)` skips the module's hooks"
    severity = Severity.WARNING
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Forward hooks start running."
    needles = (".forward(",)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "forward":
            return
        base = func.value
        name = dotted_name(base)
        if name is None or name == "self" or (self.ctx.functions and _first_param(self.ctx.functions[-1]) == name):
            return
        value = self.ctx.value(base)
        if not (value.kind == "model" or value.kind == "unknown" and is_model_like(name)):
            return
        fixed = self.ctx.code(node.with_changes(func=base))
        self.report(node, f"`{name}.forward(...)` skips `{name}`'s forward hooks; call `{name}(...)`",
                    FixSpec(f"Call `{name}(...)`", (Replacement(node, fixed),)))

    VALID = [
        """
        import torch.nn as nn
        class Net(nn.Module):
            def forward(self, x):
                return x
            def predict(self, x):
                return self.forward(x)
        class Child(Net):
            def forward(self, x):
                return super().forward(x) + 1
        """,
        """
        import torch
        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * x
        y = Square.apply(x)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            class Net(nn.Module):
                def forward(self, x):
                    return x
            model = Net()
            out = model.forward(x)
            """,
            fixed="""
            import torch.nn as nn
            class Net(nn.Module):
                def forward(self, x):
                    return x
            model = Net()
            out = model(x)
            """,
        ),
    ]


def _first_param(function: cst.FunctionDef) -> str | None:
    params = function.params.params
    return params[0].name.value if params else None
