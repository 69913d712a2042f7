from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import keyword_arg, with_args
from torchcheck.analysis.dataflow import argument
from torchcheck.analysis.imports import dotted_name
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety


class FunctionalDropoutTraining(Rule):
    """
    ## What it does
    Finds `F.dropout` (and `dropout1d/2d/3d`, `alpha_dropout`, `feature_alpha_dropout`) called in a
    method of an `nn.Module` without `training=`. An explicit `training=True` says that dropping at
    evaluation time is intended (Monte-Carlo dropout) and is not reported.

    ## Why is this bad?
    Unlike the `nn.Dropout` layer, the functional form does not know the module's mode: its
    `training` argument defaults to `True`. `model.eval()` then has no effect on it and the model
    keeps dropping units at evaluation and inference time: predictions are noisy and accuracy is
    understated.

    ## Example
    ```python
    class Net(nn.Module):
        def forward(self, x):
            x = F.dropout(F.relu(self.fc1(x)), p=0.5)
            return self.fc2(x)
    ```

    ## Use instead
    ```python
    class Net(nn.Module):
        def forward(self, x):
            x = F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training)
            return self.fc2(x)
    ```
    or an `nn.Dropout(0.5)` layer created in `__init__`.

    ## Fix safety
    The fix passes `training=self.training`. It is unsafe where dropout at evaluation time is
    deliberate (Monte-Carlo dropout): there, pass `training=True`.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.dropout.html
    """

    code = "TC303"
    name = "functional-dropout-training"
    summary = "Functional dropout in a module ignores the module's train/eval mode"
    fix_safety = FixSafety.UNSAFE
    fix_reason = "Changes evaluation-time behaviour, which is the intent unless dropout at inference is deliberate."
    runtime_check = True
    needles = ("dropout",)

    def visit_Call(self, node: cst.Call) -> None:
        qualname = self.ctx.qualname(node.func)
        if qualname not in api.FUNCTIONAL_DROPOUT or not self.ctx.functions or not self.ctx.classes:
            return
        method = self.ctx.functions[-1]
        if not _is_method_of(method, self.ctx.classes[-1]) or not self._is_module(self.ctx.classes[-1]):
            return
        params = method.params.params
        if not params:
            return
        self_name = params[0].name.value
        if self._guarded_by_training(self_name):
            return  # `if self.training: x = F.dropout(x, p)` only runs in training mode
        if argument(node, api.FUNCTIONAL_DROPOUT[qualname], "training") is not None:
            return
        name = qualname.rsplit(".", 1)[1]
        fixed = with_args(node, [*node.args, keyword_arg("training", f"{self_name}.training")])
        self.report(node, f"`{name}` is called without `training=`, so it keeps dropping after `.eval()`;"
                          f" pass `training={self_name}.training`",
                    FixSpec(f"Pass `training={self_name}.training`", (Replacement(node, self.ctx.code(fixed)),)))

    def _guarded_by_training(self, self_name: str) -> bool:
        """Inside the body of an `if self.training:` (or `if self.training and ...:`)."""
        statements = self.ctx.statements
        for i, statement in enumerate(statements[:-1]):
            if isinstance(statement, cst.If) and statements[i + 1] in _statements_of(statement.body):
                test = statement.test
                terms = _and_terms(test)
                if any(dotted_name(term) == f"{self_name}.training" for term in terms):
                    return True
        return False

    def _is_module(self, cls: cst.ClassDef) -> bool:
        info = self.ctx.analysis.classes.get(cls.name.value)
        if info is not None and info.node is cls:
            return info.is_module()
        return any("Module" in (self.ctx.code(b.value)) for b in cls.bases)

    VALID = [
        """
        import torch.nn as nn
        import torch.nn.functional as F
        class Net(nn.Module):
            def forward(self, x):
                if self.training:
                    x = F.dropout(x, p=0.5)
                return x
        """,
        """
        import torch.nn as nn
        import torch.nn.functional as F
        class Net(nn.Module):
            def forward(self, x):
                return F.dropout(x, p=0.5, training=self.training)
        """,
        """
        import torch.nn.functional as F
        def augment(x):
            return F.dropout(x, 0.1)  # not in a module: no mode to follow
        """,
        """
        import torch.nn as nn
        import torch.nn.functional as F
        class Net(nn.Module):
            def forward(self, x):
                return F.dropout(x, 0.5, self.training)
        """,
        """
        from torch import nn
        from torch.nn.functional import dropout2d
        class MCBlock(nn.Module):
            def forward(self, x):
                return dropout2d(x, 0.2, training=True)  # Monte-Carlo dropout: deliberate at evaluation too
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            import torch.nn.functional as F
            class Net(nn.Module):
                def forward(self, x):
                    return F.dropout(x, p=0.5)
            """,
            fixed="""
            import torch.nn as nn
            import torch.nn.functional as F
            class Net(nn.Module):
                def forward(self, x):
                    return F.dropout(x, p=0.5, training=self.training)
            """,
        ),
        Invalid(
            """
            from torch import nn
            from torch.nn.functional import dropout2d
            class Block(nn.Module):
                def forward(self, x):
                    return dropout2d(x, 0.2)
            """
        ),
    ]


def _is_method_of(function: cst.FunctionDef, cls: cst.ClassDef) -> bool:
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else []
    return any(stmt is function for stmt in body)


def _and_terms(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        return _and_terms(test.left) + _and_terms(test.right)
    return [test]


def _statements_of(block: cst.BaseSuite) -> list[cst.CSTNode]:
    """The statements of a block as the traversal sees them: small statements, not their lines."""
    out: list[cst.CSTNode] = []
    for statement in getattr(block, "body", ()):
        out.extend(statement.body if isinstance(statement, cst.SimpleStatementLine) else (statement,))
    return out
