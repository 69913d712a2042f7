"""Runtime twin of `torchcheck/rules/interpolate_3d_input.py`: `F.interpolate` on a (1|3|4, H, W)
image with an int size or a scalar scale, read as a batch of 1-D signals. (N, C, L) signals with
`mode="linear"` or a long L are left alone."""
from __future__ import annotations

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.events import arg


def looks_like_image(x: torch.Tensor) -> bool:
    if x.dim() != 3:
        return False
    channels, height, width = x.shape
    return channels in (1, 3, 4) and height >= 8 and width >= 8 and 0.25 <= height / width <= 4


class Interpolate3dInput(RuntimeCheck):
    name = "interpolate-3d-input"

    def on_interpolate(self, args, kwargs) -> None:
        x = arg(args, kwargs, 0, "input")
        size = arg(args, kwargs, 1, "size")
        scale = arg(args, kwargs, 2, "scale_factor")
        mode = arg(args, kwargs, 3, "mode") or "nearest"
        if isinstance(x, torch.Tensor) and looks_like_image(x) and mode in ("nearest", "nearest-exact", "area") \
                and (isinstance(size, int) or isinstance(scale, (int, float))):
            c, h, w = x.shape
            self.report(f"`F.interpolate` got a 3-D tensor of shape ({c}, {h}, {w}) that looks like one (C, H, W)"
                        f" image: it is read as {c} signals of {h} channels and only the width is resized; use"
                        " `x.unsqueeze(0)` and size=(H, W)")
