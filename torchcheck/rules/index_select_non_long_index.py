from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import source_evidence
from torchcheck.analysis.dataflow import argument
from torchcheck.rule import Invalid, Rule

_INDEX_DTYPES = {"int64", "int32"}


class IndexSelectNonLongIndex(Rule):
    """
    ## What it does
    Finds `torch.index_select(x, dim, index)` / `x.index_select(dim, index)` where the index
    tensor's dtype is known statically and is not an integer index type (`int64`, or `int32`):
    a float, bool, `uint8` or `int16` tensor, e.g. `torch.tensor([0., 2.])` or
    `torch.FloatTensor([...])`. The runtime check `index-select-out-of-bounds` covers bounds.

    ## Why is this bad?
    `index_select` requires a `LongTensor` (or `IntTensor`) index; anything else raises, often far
    from where the index was built (after a `.float()` conversion in a data pipeline), and on GPU
    index problems surface as an asynchronous device assert somewhere later (as the seeds warn).

    ## Example
    ```python
    idx = torch.tensor([0.0, 2.0])
    rows = torch.index_select(x, 0, idx)
    ```

    ## Use instead
    ```python
    idx = torch.tensor([0, 2])          # int64
    rows = torch.index_select(x, 0, idx.long())
    ```

    ## Fix safety
    No fix: converting a float index hides the real bug upstream.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.index_select.html
    """

    code = "TC503"
    name = "index-select-non-long-index"
    summary = "`index_select` with an index that is not an integer tensor"
    needles = ("index_select",)

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.qualname(node.func) == "torch.index_select":
            index = argument(node, 2, "index")
        elif isinstance(node.func, cst.Attribute) and node.func.attr.value == "index_select":
            if self.ctx.qualname(node.func) is not None:
                return
            index = argument(node, 1, "index")
        else:
            return
        if index is None:
            return
        dtype = self.ctx.value(index.value).dtype
        if dtype is None or dtype in _INDEX_DTYPES:
            return
        self.report(index.value, f"`index_select` needs an int64 (LongTensor) index, but this index is {dtype};"
                                 " build it as an integer tensor", related=source_evidence(self.ctx, index.value))

    VALID = [
        """
        import torch
        idx = torch.tensor([0, 2])
        rows = torch.index_select(x, 0, idx)
        cols = x.index_select(1, torch.arange(3))
        """,
        """
        import torch
        idx = torch.tensor([0.0, 2.0]).long()
        rows = torch.index_select(x, 0, idx)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch
            idx = torch.tensor([0.0, 2.0])
            rows = torch.index_select(x, 0, idx)
            """
        ),
        Invalid(
            """
            import torch
            rows = x.index_select(0, torch.FloatTensor([1, 3]))
            """
        ),
    ]
