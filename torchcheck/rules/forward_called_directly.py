from __future__ import annotations

import libcst as cst

from torchcheck.analysis.dataflow import is_model_like
from torchcheck.analysis.imports import dotted_name
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity
from torchcheck.walk import descendants


class ForwardCalledDirectly(Rule):
    """
    ## What it does
    Finds `model.forward(x)` called on a module: a model, a layer or a criterion (or an object
    named like a model), a submodule from a wrapper's own `forward` (`self.module.forward(x)`), and
    `self.forward(x)` in a module's other methods (a Lightning `training_step`, a `predict`
    helper). `super().forward(...)` is fine, and so is `self.forward(...)` in a module's own
    `__call__` (a framework's base module), or `forward()` on another runtime's network (OpenCV's).

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
        name = dotted_name(base)  # None for `super().forward(...)`
        if name is None or not self._is_module(base, name):
            return
        fixed = self.ctx.code(node.with_changes(func=base))
        self.report(node, f"`{name}.forward(...)` skips `{name}`'s forward hooks; call `{name}(...)`",
                    FixSpec(f"Call `{name}(...)`", (Replacement(node, fixed),)))

    def _is_module(self, base: cst.BaseExpression, name: str) -> bool:
        method = self.ctx.analysis.function_of_node.get(self.ctx.functions[-1]) if self.ctx.functions else None
        cls = method.cls if method is not None and method.parent is None else None
        params = method.param_names() if cls is not None else []
        self_name = params[0] if params else None
        if name == self_name:
            # `self.forward(x)` in a module's own training step or helper; inside `forward` it is
            # a call to the next class of the MRO written oddly, or recursion, and inside `__call__`
            # the module's own way of being called (a framework's base module).
            return method.name not in ("forward", "__call__") and cls.is_module()
        value = self.ctx.value(base)
        if value.kind in ("model", "layer", "criterion"):
            return True
        if value.kind != "unknown":
            return False
        head, _, attr = name.partition(".")
        if self_name is not None and head == self_name and "." not in attr and cls.is_module():
            # A submodule the module was built with: `self.module.forward(x)`; not any object it holds (a
            # TorchScript custom class, a kernel handle), whose `forward` has no hooks.
            return attr in cls.attrs() and (is_model_like(name) or _handed_in(cls, attr))
        return is_model_like(name)

    VALID = [
        """
        import torch.nn as nn
        class Net(nn.Module):
            def forward(self, x):
                return x
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
        """
        import torch.nn as nn
        class Module(nn.Module):  # a framework's base module: calling it runs forward, then more
            def __call__(self, *inputs, **kwargs):
                outputs = self.forward(*inputs, **kwargs)
                return self.postprocess(outputs)
        """,
        """
        import cv2
        class OnnxBackend:
            def __init__(self, weights):
                self.net = cv2.dnn.readNetFromONNX(weights)  # OpenCV's network, not a torch module
            def run(self, blob):
                self.net.setInput(blob)
                return self.net.forward()
        """,
        """
        class Scorer:  # not a module: its forward has no hooks to skip
            def forward(self, x):
                return x
            def score(self, x):
                return self.forward(x)
        """,
        """
        import torch
        import torch.nn as nn
        class FusedAct(nn.Module):
            def __init__(self):
                super().__init__()
                self.kernel = torch.classes.fused.Act()  # a TorchScript custom class, not a module
            def forward(self, x):
                return self.kernel.forward(x)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch
            import torch.nn as nn
            class QNet(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 2)
                def forward(self, x):
                    return self.fc(x)
                def act(self, state):
                    with torch.no_grad():
                        return self.forward(state).argmax(1)
            """,
            fixed="""
            import torch
            import torch.nn as nn
            class QNet(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 2)
                def forward(self, x):
                    return self.fc(x)
                def act(self, state):
                    with torch.no_grad():
                        return self(state).argmax(1)
            """,
        ),
        Invalid(
            """
            import torch.nn as nn
            class Masked(nn.Module):
                def __init__(self, module):
                    super().__init__()
                    self.module = module
                def forward(self, x):
                    return self.module.forward(x)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            conv = nn.Conv2d(3, 8, 3)
            out = conv.forward(x)
            """
        ),
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


def _handed_in(cls, attr: str) -> bool:
    """`self.module = module` in `__init__`: the object the module wraps, handed in by its builder."""
    init = cls.method("__init__")
    params = init.param_names() if init is not None else []
    if not params:
        return False
    target = f"{params[0]}.{attr}"
    return any(type(n) is cst.Assign and isinstance(n.value, cst.Name) and n.value.value in params[1:]
               and any(dotted_name(t.target) == target for t in n.targets) for n in descendants(init.node.body))


def _first_param(function: cst.FunctionDef) -> str | None:
    params = function.params.params
    return params[0].name.value if params else None
