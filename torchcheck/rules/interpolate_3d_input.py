from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import source_evidence
from torchcheck.analysis.dataflow import argument, literal
from torchcheck.rule import Invalid, Rule

_FUNCTIONS = {"torch.nn.functional.interpolate", "torch.nn.functional.upsample"}
_MODES_3D = {None, "nearest", "nearest-exact", "area"}


class Interpolate3dInput(Rule):
    """
    ## What it does
    Finds `F.interpolate` called on a single image (C, H, W) — a tensor from `to_tensor`,
    `ToTensor()`, `read_image`, or created with a (1|3, H, W) shape — with an int `size` or a
    scalar `scale_factor`. The runtime check of the same name covers tensors whose shape is only
    known when the code runs, and with `mode="linear"` too when torchvision made the tensor from a
    picture (`ToTensor` on a PIL image or an 8-bit or RGB array, `PILToTensor`,
    `read_image`/`decode_image`, then maybe `Normalize`; a `tv_tensors.Image`).

    ## Why is this bad?
    `interpolate` treats a 3-D input as a *batch* of 1-D signals (N, C, L): it takes C as the
    batch, H as the channels, and resizes only W. The result has the right number of dimensions
    and a wrong, stretched content; nothing raises (the seeds describe exactly this).

    ## Example
    ```python
    img = TF.to_tensor(pil_image)            # (3, H, W)
    small = F.interpolate(img, size=64)
    ```

    ## Use instead
    ```python
    small = F.interpolate(img.unsqueeze(0), size=(64, 64)).squeeze(0)
    ```
    Batched 1-D signals (N, C, L) resized with an int size are correct and not reported.

    ## Fix safety
    No fix.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.interpolate.html
    """

    code = "TC504"
    name = "interpolate-3d-input"
    summary = "`F.interpolate` on a (C, H, W) image resizes only its width"
    runtime_check = True
    needles = ("interpolate", "upsample")

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.qualname(node.func) not in _FUNCTIONS:
            return
        tensor = argument(node, 0, "input")
        if tensor is None:
            return
        value = self.ctx.value(tensor.value)
        shape = value.shape
        is_image = (value.image and shape is not None and len(shape) == 3) or (
            shape is not None and len(shape) == 3 and shape[0] in (1, 3) and shape[1] == shape[2] and shape[1] >= 8
        )
        if not is_image:
            return
        mode = argument(node, 4 if self.ctx.qualname(node.func).endswith("interpolate") else 3, "mode")
        if mode is not None and literal(mode.value) not in _MODES_3D:
            return
        size = argument(node, 1, "size")
        scale = argument(node, 2, "scale_factor")
        scalar = (size is not None and isinstance(size.value, (cst.Integer, cst.Name, cst.Attribute, cst.BinaryOperation))) or (
            scale is not None and isinstance(scale.value, (cst.Integer, cst.Float, cst.Name))
        )
        if not scalar:
            return
        self.report(tensor.value, "`F.interpolate` reads this 3-D (C, H, W) image as a batch of C signals and"
                                  " resizes only its width; add a batch dimension (`.unsqueeze(0)`) and give"
                                  " size=(H, W)", related=source_evidence(self.ctx, tensor.value))

    VALID = [
        """
        import torch
        import torch.nn.functional as F
        signals = torch.randn(8, 16, 100)          # (N, C, L)
        longer = F.interpolate(signals, size=200)
        """,
        """
        import torch.nn.functional as F
        import torchvision.transforms.functional as TF
        img = TF.to_tensor(pil)
        big = F.interpolate(img.unsqueeze(0), size=(64, 64))
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch.nn.functional as F
            import torchvision.transforms.functional as TF
            img = TF.to_tensor(pil)
            small = F.interpolate(img, size=64)
            """
        ),
        Invalid(
            """
            import torch
            import torch.nn.functional as F
            img = torch.rand(3, 32, 32)
            up = F.interpolate(img, scale_factor=2)
            """
        ),
    ]
