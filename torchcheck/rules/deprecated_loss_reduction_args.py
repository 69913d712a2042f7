from __future__ import annotations

import libcst as cst

from torchcheck.analysis import torch_api as api
from torchcheck.analysis.calls import keyword_arg, with_args
from torchcheck.analysis.dataflow import literal
from torchcheck.rule import FixSpec, Invalid, Replacement, Rule
from torchcheck.types import FixSafety, Severity

_LEGACY = ("size_average", "reduce")


def legacy_reduction(size_average, reduce) -> str:
    """torch's own mapping of the old flags (torch.nn._reduction.legacy_get_string)."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


class DeprecatedLossReductionArgs(Rule):
    """
    ## What it does
    Finds `size_average=` or `reduce=`, by keyword or by position, on any loss class
    (`nn.CrossEntropyLoss(...)`, `nn.MSELoss(...)`, ...) or functional loss (`F.mse_loss(...)`).

    ## Why is this bad?
    Both flags were deprecated in PyTorch 0.4.1 in favour of `reduction=`. When either is given
    it silently *overrides* `reduction`, so `MSELoss(reduce=False, reduction="sum")` returns
    per-element losses, not a sum. Positional uses are the worst: `CrossEntropyLoss(w, False)` is
    `size_average=False`, which nobody reading it would guess.

    ## Example
    ```python
    criterion = nn.CrossEntropyLoss(size_average=False)
    ```

    ## Use instead
    ```python
    criterion = nn.CrossEntropyLoss(reduction="sum")
    ```

    ## Fix safety
    Safe when both flags are literals given by keyword: the fix writes exactly the `reduction`
    that torch derives from them (`reduce=False` -> `"none"`, `size_average=False` -> `"sum"`,
    otherwise `"mean"`). No fix for positional or computed flags.

    ## References
    - https://pytorch.org/docs/stable/nn.html#loss-functions
    """

    code = "TC401"
    name = "deprecated-loss-reduction-args"
    summary = "Deprecated `size_average`/`reduce` arguments on a loss"
    severity = Severity.WARNING
    fix_safety = FixSafety.SAFE
    fix_reason = "The new `reduction=` is exactly what torch derives from the old flags."
    min_target_version = (0, 4, 1)
    needles = ("Loss", "loss", "cross_entropy", "kl_div")

    def visit_Call(self, node: cst.Call) -> None:
        qualname = self.ctx.qualname(node.func)
        name = api.loss_class(qualname)
        if name is not None:
            params = api.LOSS_CLASSES[name]
            shown = f"nn.{name}"
        else:
            name = api.functional_loss(qualname)
            if name is None:
                return
            params = api.FUNCTIONAL_LOSSES[name][1]
            shown = f"F.{name}"
        positional = [a for a in node.args if a.keyword is None and not a.star]
        found: dict[str, cst.Arg] = {}
        for arg in node.args:
            if arg.keyword is not None and arg.keyword.value in _LEGACY:
                found[arg.keyword.value] = arg
        for index, arg in enumerate(positional):
            if index < len(params) and params[index] in _LEGACY:
                found[params[index]] = arg
        # A wrapper that forwards its own legacy parameters (`size_average=size_average`) keeps an old
        # API working for its callers; the deprecated use is at those callers, unless the wrapper's
        # own default is a legacy value that every default construction passes on.
        found = {k: a for k, a in found.items() if not (isinstance(a.value, cst.Name) and a.value.value == k
                                                        and not self._defaults_to_legacy_value(k))}
        if not found:
            return
        flags = " and ".join(f"`{k}`" for k in _LEGACY if k in found)
        self.report(
            next(iter(found.values())),
            f"{flags} on `{shown}` {'is deprecated and overrides' if len(found) == 1 else 'are deprecated and override'}"
            " `reduction`;"
            f" use `reduction=` instead",
            self._fix(node, found),
        )

    def _defaults_to_legacy_value(self, name: str) -> bool:
        if not self.ctx.functions:
            return False
        params = self.ctx.functions[-1].params
        param = next((p for p in (*params.params, *params.kwonly_params) if p.name.value == name), None)
        return param is not None and param.default is not None and literal(param.default) in (True, False)

    def _fix(self, node: cst.Call, found: dict[str, cst.Arg]) -> FixSpec | None:
        if any(arg.keyword is None for arg in found.values()):
            return None
        values = {k: literal(a.value) for k, a in found.items()}
        if any(v not in (True, False, None) or isinstance(found[k].value, cst.SimpleString) for k, v in values.items()):
            return None
        if all(v is None for v in values.values()):
            reduction = None  # both None: torch uses `reduction` as given
        else:
            reduction = legacy_reduction(values.get("size_average"), values.get("reduce"))
        kept = [a for a in node.args if a not in found.values() and not (
            reduction is not None and a.keyword is not None and a.keyword.value == "reduction")]
        if reduction is not None:
            kept.append(keyword_arg("reduction", repr(reduction).replace("'", '"')))
        title = f'Use `reduction="{reduction}"`' if reduction else "Remove the deprecated flags"
        return FixSpec(title, (Replacement(node, self.ctx.code(with_args(node, kept))),))

    VALID = [
        """
        import torch.nn as nn
        criterion = nn.CrossEntropyLoss(reduction="sum")
        """,
        """
        import torch.nn.functional as F
        def f(x, y):
            return F.mse_loss(x, y, reduction="none")
        """,
        """
        import torch.nn.functional as F
        def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
            return F.l1_loss(input, target, size_average=size_average, reduce=reduce, reduction=reduction)
        """,
        """
        def reduce(x, size_average=True):  # not a loss
            return x
        reduce([1], size_average=False)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn as nn
            class MaskedNLL(nn.Module):
                def __init__(self, ignore_index=-1, size_average=True):
                    super().__init__()
                    self.loss = nn.NLLLoss(ignore_index=ignore_index, size_average=size_average)
            """
        ),
        Invalid(
            """
            import torch.nn as nn
            criterion = nn.CrossEntropyLoss(size_average=False)
            """,
            fixed="""
            import torch.nn as nn
            criterion = nn.CrossEntropyLoss(reduction="sum")
            """,
        ),
        Invalid(
            """
            import torch.nn.functional as F
            def f(x, y):
                return F.mse_loss(x, y, reduce=False, reduction="sum")
            """,
            fixed="""
            import torch.nn.functional as F
            def f(x, y):
                return F.mse_loss(x, y, reduction="none")
            """,
        ),
        Invalid(
            """
            from torch import nn
            criterion = nn.NLLLoss(None, False)
            """
        ),
    ]
