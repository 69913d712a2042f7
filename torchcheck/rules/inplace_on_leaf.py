from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import short_code
from torchcheck.analysis.grad_mode import GRAD_ON, grad_at_statement
from torchcheck.analysis.leaves import grad_disabled_in, leaf_of
from torchcheck.rule import Invalid, Rule

# Methods ending in `_` that change flags or storage sharing, not the values autograd tracks.
_NOT_VALUE_CHANGES = {"requires_grad_", "share_memory_", "detach_", "retain_grad_"}


def _in_place_method(name: str) -> bool:
    return name.endswith("_") and not name.startswith("_") and name not in _NOT_VALUE_CHANGES


class InplaceOnLeaf(Rule):
    """
    ## What it does
    Finds in-place operations (`-=`, `+=`, `*=`, `/=`, `p.add_(...)`, `p.sub_(...)`, `p.mul_(...)`,
    `p.copy_(...)`, `p.zero_()`, `p.fill_(...)`, `p.clamp_(...)`, item assignment `w[0] = v`, …)
    on a leaf tensor that requires grad — a parameter (a loop variable over `model.parameters()`,
    an `nn.Parameter`, a layer's `weight`/`bias`) or a tensor created with `requires_grad=True` —
    where grad mode is on: outside `torch.no_grad()`/`torch.inference_mode()` and outside a
    function decorated with them or only called under them.

    ## Why is this bad?
    Autograd cannot record an in-place change of a leaf it computes gradients for: the step
    raises `RuntimeError: a leaf Variable that requires grad is being used in an in-place
    operation` (or, for a slice, "a view of a leaf Variable ..."). Hand-written SGD and weight
    surgery (`w -= lr * w.grad`, `conv.weight[:] = w`) fail this way the first time they run.

    ## Example
    ```python
    for p in model.parameters():
        p -= lr * p.grad
    ```

    ## Use instead
    ```python
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    ```
    Updates through `.data` (`p.data -= lr * p.grad`), changes to the gradient
    (`p.grad.zero_()`), `torch.nn.init` functions and optimizer internals are correct and not
    reported; neither are functions whose callers are not in the linted tree (they may run under
    `no_grad`), nor files that turn `requires_grad` off somewhere (a frozen EMA copy updated in
    place is correct).

    ## Fix safety
    No fix: whether the update should run under `torch.no_grad()` or be done out of place
    (`w = w - lr * w.grad`, tracked by autograd) is the author's choice.

    ## References
    - https://pytorch.org/docs/stable/notes/autograd.html#in-place-operations-with-autograd
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    """

    code = "TC305"
    name = "inplace-on-leaf"
    summary = "An in-place operation changes a parameter or a tensor that requires grad while grad mode is on"
    needles = ("parameters()", "Parameter", "requires_grad", ".weight", ".bias")

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._disabled: bool | None = None

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        operator = self.ctx.code(node.operator).strip()
        self._check(node.target, node.target, f"`{operator}`")

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, cst.Subscript):
                self._check(target.target, target.target.value, "item assignment")

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and _in_place_method(func.attr.value):
            self._check(node, func.value, f"`{func.attr.value}()`")

    def _check(self, node: cst.CSTNode, changed: cst.CSTNode, operation: str) -> None:
        leaf = leaf_of(self.ctx, changed)
        if leaf is None or grad_at_statement(self.ctx) != GRAD_ON or self._grad_disabled():
            return
        self.report(
            node,
            f"In-place {operation} on `{short_code(self.ctx, changed, 40)}`, {leaf.what}, with grad enabled: autograd"
            " raises \"a leaf Variable that requires grad is being used in an in-place operation\"; do it under"
            " `with torch.no_grad():`",
            related=[(leaf.evidence, leaf.note)],
        )

    def _grad_disabled(self) -> bool:
        """Code in this file that turns `requires_grad` off (an EMA copy frozen where it is built, a
        frozen backbone): which tensors still require grad is then not known anywhere in it."""
        if self._disabled is None:
            self._disabled = grad_disabled_in(self.ctx.module)
        return self._disabled

    VALID = [
        """
        import torch
        def sgd(model, lr):
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
                    p.grad.zero_()
        sgd(model, 0.1)
        """,
        """
        import torch
        @torch.no_grad()
        def sgd(model, lr):
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)
        sgd(model, 0.1)
        """,
        """
        def sgd(model, lr):
            for p in model.parameters():
                p.data -= lr * p.grad.data
        sgd(model, 0.1)
        """,
        """
        import torch.nn as nn
        class Scale(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(1))
            def clamp(self):  # called by code outside this file, maybe under no_grad
                self.scale.clamp_(0, 1)
        """,
        """
        import torch
        w = torch.randn(3, requires_grad=True)
        w = w - 0.1 * w  # out of place: a new, non-leaf tensor
        w *= 2
        """,
    ]
    INVALID = [
        Invalid(
            """
            def sgd(model, lr):
                params = list(model.parameters())
                for p in params:
                    p -= lr * p.grad
            sgd(model, 0.1)
            """
        ),
        Invalid(
            """
            import torch
            w = torch.randn(3, 1, requires_grad=True)
            for step in range(10):
                loss = (x @ w - y).pow(2).mean()
                loss.backward()
                w.sub_(0.1 * w.grad)
            """
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            conv = nn.Conv2d(3, 8, 3)
            conv.weight[:] = torch.randn(8, 3, 3, 3)
            """
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            class Gate(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.alpha = nn.Parameter(torch.zeros(1))
                    self.reset()
                def reset(self):
                    self.alpha.fill_(0.5)
            """
        ),
    ]
