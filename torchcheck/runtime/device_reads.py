"""Scalars held on an accelerator and read together: each is copied into a buffer on its device
(one copy kernel, never waiting for the device) and the buffer is read in one synchronisation when
a check asks, or when it is full."""
from __future__ import annotations

import math

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.harness import TorchcheckError


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

    def read(self) -> list[tuple[object, float]]:
        """Read and empty the buffer: each entry held with its value."""
        if not self.entries:
            return []
        values = self.buffer[: len(self.entries)].tolist()
        entries, self.entries = self.entries, []
        return list(zip(entries, values))

    def first_not_finite(self):
        """Read and empty the buffer: the entry of the first NaN or Inf held, or None."""
        return next((entry for entry, value in self.read() if not math.isfinite(value)), None)


class HeldValues:
    """Scalars of tensors on any device, each with its entry: on the CPU read at once, on an
    accelerator held in its device's buffer until `read()`, or until the buffer fills."""

    def __init__(self) -> None:
        self.devices: dict[torch.device, DeviceReads] = {}

    def add(self, value: torch.Tensor, entry) -> list[tuple[object, float]]:
        """Hold a 0-dim tensor; returns the (entry, value) pairs read now: this one on the CPU, all
        of its device's when its buffer is full, else none."""
        if value.device.type == "cpu":
            return [(entry, value.item())]
        reads = self.devices.get(value.device)
        if reads is None:
            reads = self.devices[value.device] = DeviceReads(value.device)
        return reads.read() if reads.add(value, entry) else []

    def read(self) -> list[tuple[object, float]]:
        """Read what every device holds (one synchronisation each)."""
        return [pair for reads in self.devices.values() for pair in reads.read()]

    def __bool__(self) -> bool:
        for reads in self.devices.values():
            if reads.entries:
                return True
        return False


class SampledValuesCheck(RuntimeCheck):
    """A check that judges values a line of user code passes (a loss's input), reported once per
    line. Each line is read on its first `ALWAYS_READ` calls, then on every `SAMPLE_EVERY`-th: what a
    line passes keeps its kind between calls. Values on the CPU are read at once; on an accelerator
    they are held on the device and read together every `READ_EVERY` optimizer steps, when the buffer
    fills and when the run ends, so no step waits for the device. Subclasses `judge` what is read."""

    READ_EVERY = 16
    ALWAYS_READ = 8
    SAMPLE_EVERY = 16

    def __init__(self, context) -> None:
        super().__init__(context)
        self.held = HeldValues()
        self.calls: dict = {}  # line -> calls seen there
        self.reported: set = set()  # lines reported

    def sampled(self, where) -> bool:
        """Count a call at line `where`; whether this one is read."""
        calls = self.calls[where] = self.calls.get(where, 0) + 1
        return calls <= self.ALWAYS_READ or calls % self.SAMPLE_EVERY == 0

    def judge(self, read: list[tuple[object, float]]) -> None:
        raise NotImplementedError

    def on_step_pre(self, optimizer) -> None:
        if self.held and self.context.steps.get(optimizer, 0) % self.READ_EVERY == 0:
            self.judge(self.held.read())

    def on_run_end(self) -> None:
        if self.held:
            try:
                self.judge(self.held.read())
            except TorchcheckError:
                raise
            except RuntimeError:  # a device error (e.g. an assert in the user's code) already ended the run
                pass
