"""Runtime twin of `torchcheck/rules/nll_loss_without_log_softmax.py`: `nll_loss` (so `nn.NLLLoss`)
given an input that cannot be log-probabilities: a value above 0 (beyond a margin that leaves
`log(p + eps)` alone), or, on the CPU, rows that are probabilities (all in [0, 1], each summing
to 1). Degenerate inputs stay silent: one class (its log-probability is 0), all zeros, integers.

The maximum is read as `SampledValuesCheck` reads (sampled per line, held on an accelerator
until read together, so no step waits for the device); each line is reported once."""
from __future__ import annotations

import torch

from torchcheck.runtime.device_reads import SampledValuesCheck

MARGIN = 1e-3


def _class_dim(input: torch.Tensor) -> int:
    return 1 if input.dim() > 1 else 0


def rows_are_probabilities(input: torch.Tensor) -> bool:
    """Every value in [0, 1] and every row (along the class dimension) summing to 1."""
    tolerance = 1e-3 if input.dtype in (torch.float32, torch.float64) else 1e-2
    low, high = torch.aminmax(input)
    if low.item() < 0 or high.item() > 1 + tolerance:
        return False
    sums = input.sum(_class_dim(input), dtype=torch.float64)
    return (sums - 1).abs().max().item() <= tolerance


class NllLossWithoutLogSoftmax(SampledValuesCheck):
    name = "nll-loss-without-log-softmax"

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if name != "nll_loss" or not isinstance(input, torch.Tensor) or not input.is_floating_point() \
                or not input.dim() or input.shape[_class_dim(input)] < 2 or not input.numel():
            return
        where = locate()
        if where in self.reported or not self.sampled(where):
            return
        step = self.context.iteration
        with torch.no_grad():
            values = input.detach()
            if values.device.type != "cpu":
                self.judge(self.held.add(values.max(), (where, step)))
                return
            high = values.max().item()
            if high > 0:
                probabilities = rows_are_probabilities(values)
                if high > MARGIN or probabilities:
                    self.report_input(high, probabilities, where, step)

    def judge(self, read) -> None:
        for (where, step), high in read:
            if high > MARGIN and where not in self.reported:
                self.report_input(high, None, where, step)

    def report_input(self, high: float, probabilities: bool | None, where, step: int) -> None:
        """`probabilities`: whether the rows are probabilities, None where not known (on a device)."""
        self.reported.add(where)
        if probabilities:
            kind = "rows that are probabilities (softmax output)"
        elif probabilities is None and high <= 1:
            kind = f"values up to {high:.3g}: probabilities or raw logits"
        else:
            kind = f"values up to {high:.3g}: raw logits or scores"
        self.report(f"`nll_loss` got {kind}, not log-probabilities (which are never above 0): apply"
                    " `log_softmax` first, or give the logits to `cross_entropy`", where=where, step=step)
