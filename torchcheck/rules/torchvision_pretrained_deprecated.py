from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import keyword_arg, with_args
from torchcheck.analysis.dataflow import literal
from torchcheck.analysis.imports import dotted_name
from torchcheck.analysis.torchvision_weights import weights_enum
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity


class TorchvisionPretrainedDeprecated(Rule):
    """
    ## What it does
    Finds `pretrained=` and `pretrained_backbone=` passed to torchvision model builders
    (`torchvision.models.resnet18`, `models.detection.fasterrcnn_resnet50_fpn`, ...). Builders
    of other model zoos (timm, `pretrainedmodels`) are not torchvision's and are left alone.

    ## Why is this bad?
    torchvision 0.13 replaced the boolean with a `weights=` enum and the boolean has been
    deprecated since; it is removed in newer releases. `pretrained=True` also hides *which*
    weights you get, and the preprocessing that goes with them (`weights.transforms()`).

    ## Example
    ```python
    import torchvision.models as models
    model = models.resnet18(pretrained=True)
    ```

    ## Use instead
    ```python
    import torchvision.models as models
    model = models.resnet18(weights=models.ResNet18_Weights.DEFAULT)
    model = models.resnet18(weights=None)  # for pretrained=False
    ```

    ## Fix safety
    `pretrained=False` -> `weights=None` is exact and safe. `pretrained=True` ->
    `weights=<Model>_Weights.DEFAULT` is unsafe: for some models `DEFAULT` is a newer, better set of
    weights than the `IMAGENET1K_V1` that `pretrained=True` loaded, so results change. When the
    builder was imported by name, the fix also imports the weights enum beside it.

    ## References
    - https://pytorch.org/vision/stable/models.html
    """

    code = "TC402"
    name = "torchvision-pretrained-deprecated"
    summary = "Deprecated `pretrained=` on a torchvision model builder"
    severity = Severity.WARNING
    fix_safety = FixSafety.SAFE
    fix_reason = "`weights=None` is exact; `weights=...DEFAULT` may load newer weights, so that fix is unsafe."
    min_target_version = (1, 12)
    needles = ("pretrained",)

    def visit_Call(self, node: cst.Call) -> None:
        flags = [arg for arg in node.args
                 if arg.keyword is not None and arg.keyword.value in ("pretrained", "pretrained_backbone")]
        if not flags:
            return
        qualname = self.ctx.qualname(node.func)
        enum = weights_enum(qualname) if qualname is not None else None
        if enum is None and not self._dynamic_builder(node.func):
            return
        for arg in flags:
            new_name = "weights" if arg.keyword.value == "pretrained" else "weights_backbone"
            self.report(arg, f"`{arg.keyword.value}=` is deprecated since torchvision 0.13; use `{new_name}=`",
                        self._fix(node, arg, qualname, enum[1]) if enum is not None else None)

    def _dynamic_builder(self, func: cst.BaseExpression) -> bool:
        """`getattr(models, arch)` (called at once or later) and `models.__dict__[arch]`: a torchvision
        builder chosen by name."""
        if isinstance(func, cst.Subscript) and isinstance(func.value, cst.Attribute) and func.value.attr.value == "__dict__":
            return (self.ctx.qualname(func.value.value) or "").startswith("torchvision.models")
        value = self.ctx.value(func)
        return value.kind == "ref" and (value.qualname or "").startswith("torchvision.models") and (
            value.qualname.endswith(api.CHOSEN_BY_NAME) or weights_enum(value.qualname) is not None)

    def _fix(self, node: cst.Call, arg: cst.Arg, qualname: str, enum: str) -> FixSpec | None:
        flag = literal(arg.value)
        if flag is False:
            value, safety, extra = "None", FixSafety.SAFE, ()
        elif flag is True and arg.keyword.value == "pretrained":
            builder = dotted_name(node.func)
            if builder is None:
                return None
            safety = FixSafety.UNSAFE
            if "." in builder:
                value, extra = f"{builder.rsplit('.', 1)[0]}.{enum}.DEFAULT", ()
            else:
                statement = _import_statement_of(self.ctx.module, builder)
                if statement is None:
                    return None
                module = qualname.rsplit(".", 1)[0]
                source = self.ctx.imports.aliases.get(builder, "").rsplit(".", 1)[0] or module
                value = f"{enum}.DEFAULT"
                extra = (Replacement(statement, f"from {source} import {enum}\n", insert_before=True),)
        else:
            return None
        new_name = "weights" if arg.keyword.value == "pretrained" else "weights_backbone"
        args = [keyword_arg(new_name, value).with_changes(comma=a.comma) if a is arg else a for a in node.args]
        return FixSpec(f"Use `{new_name}={value}`", (Replacement(node, self.ctx.code(with_args(node, args))), *extra),
                       safety)

    VALID = [
        """
        import torchvision.models as models
        model = models.resnet18(weights=models.ResNet18_Weights.DEFAULT)
        """,
        """
        import timm
        model = timm.create_model("resnet18", pretrained=True)
        """,
        """
        import pretrainedmodels
        model = pretrainedmodels.resnet18(pretrained="imagenet")
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torchvision.models as models
            def build(arch):
                return models.__dict__[arch](pretrained=True)
            """
        ),
        Invalid(
            """
            import torchvision.models as models
            resnet18 = models.resnet18(pretrained=True)
            """,
            fixed="""
            import torchvision.models as models
            resnet18 = models.resnet18(weights=models.ResNet18_Weights.DEFAULT)
            """,
        ),
        Invalid(
            """
            from torchvision.models import vgg16
            model = vgg16(pretrained=False)
            """,
            fixed="""
            from torchvision.models import vgg16
            model = vgg16(weights=None)
            """,
        ),
        Invalid(
            """
            from torchvision.models import resnet50
            model = resnet50(pretrained=True)
            """,
            fixed="""
            from torchvision.models import ResNet50_Weights
            from torchvision.models import resnet50
            model = resnet50(weights=ResNet50_Weights.DEFAULT)
            """,
        ),
    ]


def _import_statement_of(module: cst.Module, name: str) -> cst.SimpleStatementLine | None:
    """The top-level `from ... import name` line, where a new import can go just before."""
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                for alias in small.names:
                    local = alias.asname.name.value if alias.asname else dotted_name(alias.name)
                    if local == name:
                        return statement
    return None
