"""Runtime twin of `torchcheck/rules/interpolate_3d_input.py`: `F.interpolate` on a single
(C, H, W) image, which it reads as C signals of H channels, resizing only the width.

Two kinds of evidence make a 3-D tensor an image:
- its shape, (1|3|4, H, W) with H and W at least 8 and within a factor 4 of each other, given an
  int size or a scalar scale with a mode of images (`nearest`, `nearest-exact`, `area`);
- its origin, with any mode that takes 3-D input (`linear` too): torchvision made it from a
  picture, with `to_tensor`/`ToTensor` (from a PIL image, or an array of 8-bit pixels or of 3 or
  4 channels: not from a float array of one channel, like a spectrogram), `pil_to_tensor`/
  `PILToTensor`, `decode_image` (so `read_image`), `decode_jpeg` or `decode_png`, then maybe
  `normalize`/`Normalize` or `convert_image_dtype`; or it is a `tv_tensors.Image` (the v2
  transforms). So torchvision datasets' items count when their transform makes the tensor.
  Tensors computed from an image by other operations are not followed.

Batched 1-D signals (N, C, L) made otherwise stay silent with any mode."""
from __future__ import annotations

import sys

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.context import WeakIdMap
from torchcheck.runtime.events import arg

IMAGE_MODES = ("nearest", "nearest-exact", "area")
MODES_OF_3D_INPUT = (*IMAGE_MODES, "linear")


def looks_like_image(x: torch.Tensor) -> bool:
    if x.dim() != 3:
        return False
    channels, height, width = x.shape
    return channels in (1, 3, 4) and height >= 8 and width >= 8 and 0.25 <= height / width <= 4


def from_picture(input) -> bool:
    """Is what `to_tensor` converted a picture: a PIL image, or an array of 8-bit pixels or of
    3 or 4 channels (H, W, C)? Not a float array of one channel, like a spectrogram."""
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(input, pil.Image):
        return True
    shape, dtype = getattr(input, "shape", None), str(getattr(input, "dtype", ""))
    return shape is not None and (dtype == "uint8" or (len(shape) == 3 and shape[2] in (3, 4)))


class Interpolate3dInput(RuntimeCheck):
    name = "interpolate-3d-input"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.images = WeakIdMap()  # tensors torchvision made as images

    def on_image_function(self, name, input, output) -> None:
        if name in ("normalize", "convert_image_dtype"):
            made = isinstance(input, torch.Tensor) and self.made_as_image(input)  # an image stays one
        elif name == "to_tensor":
            made = from_picture(input)
        else:
            made = True  # pil_to_tensor, the decoders
        if made:
            for tensor in output if isinstance(output, (list, tuple)) else (output,):
                if isinstance(tensor, torch.Tensor) and tensor.dim() == 3:
                    self.images.add(tensor)

    def made_as_image(self, x: torch.Tensor) -> bool:
        if x in self.images:
            return True
        tv_tensors = sys.modules.get("torchvision.tv_tensors")
        return tv_tensors is not None and isinstance(x, tv_tensors.Image)

    def on_interpolate(self, args, kwargs) -> None:
        x = arg(args, kwargs, 0, "input")
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            return
        size = arg(args, kwargs, 1, "size")
        scale = arg(args, kwargs, 2, "scale_factor")
        mode = arg(args, kwargs, 3, "mode") or "nearest"
        c, h, w = x.shape
        if mode in MODES_OF_3D_INPUT and self.made_as_image(x):
            self.report(f"`F.interpolate` got an image of shape ({c}, {h}, {w}) made by torchvision, with"
                        f" mode={mode!r}: a 3-D input is read as {c} signals of {h} channels and only the width"
                        " is resized; use `x.unsqueeze(0)`, size=(H, W)"
                        + (" and mode='bilinear'" if mode == "linear" else ""))
        elif mode in IMAGE_MODES and looks_like_image(x) and (isinstance(size, int) or isinstance(scale, (int, float))):
            self.report(f"`F.interpolate` got a 3-D tensor of shape ({c}, {h}, {w}) that looks like one (C, H, W)"
                        f" image: it is read as {c} signals of {h} channels and only the width is resized; use"
                        " `x.unsqueeze(0)` and size=(H, W)")
