"""Runtime-only check (documented in `torchcheck.registry`): an `index_select`/`gather`/embedding
index of the wrong dtype or out of bounds, caught before the op runs (on GPU the op's own assert
fires asynchronously, at some later line, and leaves the device unusable). Raises
`IndexCheckError`."""
from __future__ import annotations

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.harness import IndexCheckError


class IndexSelectOutOfBounds(RuntimeCheck):
    name = "index-select-out-of-bounds"

    def on_index(self, op: str, source, dim: int, index) -> None:
        if not isinstance(index, torch.Tensor) or not isinstance(source, torch.Tensor):
            return
        if index.dtype not in (torch.int64, torch.int32):
            self.report(f"`{op}` got an index of dtype {index.dtype}; it needs int64 (or int32)", error=IndexCheckError)
        if index.numel() == 0:
            return
        size = source.shape[dim] if source.dim() else 1
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            self.report(f"`{op}` index {bad} is out of bounds for dimension {dim} of size {size} (source shape"
                        f" {tuple(source.shape)}, index shape {tuple(index.shape)}, device {source.device})",
                        error=IndexCheckError)
