"""Runtime twin of `torchcheck/rules/loss_accumulated_without_item.py`: a loss tensor (or a sum of
them, `total += loss`) still holding its autograd graph `STALE_AFTER` or more optimizer steps
after it was made."""
from __future__ import annotations

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.context import WeakIdMap

STALE_AFTER = 2


class LossAccumulatedWithoutItem(RuntimeCheck):
    name = "loss-accumulated-without-item"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.losses = WeakIdMap()  # loss tensor, or a sum reaching one -> (step it was made, user line)

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            self.losses[output] = (self.context.iteration, locate())

    def on_tensor_sum(self, result, left, right) -> None:
        """`total = total + loss` keeps the graph of every loss summed in: tag the sum with the
        oldest step it reaches back to."""
        losses = self.losses
        if not losses or not (left in losses or (isinstance(right, torch.Tensor) and right in losses)):
            return
        made = [losses[o] for o in (left, right) if isinstance(o, torch.Tensor) and o in losses]
        if isinstance(result, torch.Tensor) and result.grad_fn is not None:
            losses[result] = min(made, key=lambda entry: entry[0])

    def on_step_post(self, optimizer) -> None:
        if not self.losses:
            return
        iteration = self.context.iteration
        for tensor, (made, where) in self.losses.items():
            if tensor.grad_fn is not None and iteration - made >= STALE_AFTER:
                self.report(f"A loss tensor made at step {made} still holds its autograd graph"
                            f" {iteration - made} steps later: every kept step's graph stays in memory;"
                            " accumulate `loss.item()` (or `loss.detach()`)", where=where, step=made)
                del self.losses[tensor]
