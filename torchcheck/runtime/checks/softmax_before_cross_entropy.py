"""Runtime twin of `torchcheck/rules/softmax_before_cross_entropy.py`: a tensor made by softmax or
log-softmax reaching `cross_entropy`."""
from __future__ import annotations

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.context import WeakIdMap


class SoftmaxBeforeCrossEntropy(RuntimeCheck):
    name = "softmax-before-cross-entropy"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.softmax_outputs = WeakIdMap()

    def on_softmax(self, output) -> None:
        if isinstance(output, torch.Tensor):
            self.softmax_outputs.add(output)

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if name == "cross_entropy" and isinstance(input, torch.Tensor) and input in self.softmax_outputs:
            self.report("`cross_entropy` got softmax probabilities: it applies log-softmax itself; pass the raw logits")
