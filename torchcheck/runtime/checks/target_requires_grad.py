"""Runtime twin of `torchcheck/rules/target_requires_grad.py`: a loss target that requires grad."""
from __future__ import annotations

import torch

from torchcheck.runtime.checks import RuntimeCheck


class TargetRequiresGrad(RuntimeCheck):
    name = "target-requires-grad"

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if isinstance(target, torch.Tensor) and target.requires_grad:
            self.report(f"The target of `{name}` requires grad: gradients flow into it; detach it or compute it"
                        " under `torch.no_grad()`")
