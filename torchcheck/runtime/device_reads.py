"""Scalars held on an accelerator and read together: each is copied into a buffer on its device
(one copy kernel, never waiting for the device) and the buffer is read in one synchronisation when
a check asks, or when it is full."""
from __future__ import annotations

import torch


class DeviceReads:
    """Scalars of one device, each with the entry (any object) that says what it was."""

    SIZE = 64

    def __init__(self, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64  # float64: a finite value stays finite
        self.buffer = torch.zeros(self.SIZE, dtype=dtype, device=device)
        self.entries: list = []

    def add(self, value: torch.Tensor, entry) -> bool:
        """Hold one value (a tensor's sum); True when the buffer is full and must be read."""
        with torch.no_grad():
            self.buffer[len(self.entries)].copy_(value.sum() if value.dim() else value)
        self.entries.append(entry)
        return len(self.entries) == self.SIZE

    def first_not_finite(self):
        """Read and empty the buffer: the entry of the first NaN or Inf held, or None."""
        if not self.entries:
            return None
        finite = torch.isfinite(self.buffer[: len(self.entries)]).tolist()
        entries, self.entries = self.entries, []
        return next((entry for entry, ok in zip(entries, finite) if not ok), None)
