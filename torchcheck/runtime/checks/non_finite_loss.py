"""Runtime-only check (documented in `torchcheck.registry`): the first loss, or gradient, that
became NaN or Inf. Every loss is checked; on an accelerator losses are held on the device and read
together (one synchronisation) when gradients are sampled, when the buffer is full and when the
run ends. Gradients are a full pass over the parameters, so they are sampled every
`GRAD_CHECK_EVERY` steps, and at once after a loss turned non-finite."""
from __future__ import annotations

import math

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.device_reads import DeviceReads
from torchcheck.runtime.harness import TorchcheckError

GRAD_CHECK_EVERY = 16


class NonFiniteLoss(RuntimeCheck):
    name = "non-finite-loss"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.reported = False  # a gradient was found non-finite: nothing more to say
        self.loss_went_non_finite = False
        self.device_losses: dict[torch.device, DeviceReads] = {}

    def on_loss(self, name, input, target, output, locate, args, kwargs) -> None:
        if self.loss_went_non_finite or not isinstance(output, torch.Tensor) or output.grad_fn is None:
            return
        step = self.context.iteration
        if output.device.type == "cpu":
            if not math.isfinite(output.sum().item() if output.dim() else output.item()):
                self.report_loss(step, name, locate())
            return
        reads = self.device_losses.get(output.device)
        if reads is None:
            reads = self.device_losses[output.device] = DeviceReads(output.device)
        if reads.add(output, (step, name, locate())):
            self.check_device_losses()  # the buffer is full: read it now

    def on_step_pre(self, optimizer) -> None:
        sampled = self.context.steps.get(optimizer, 0) % GRAD_CHECK_EVERY == 0
        if self.reported or not (self.loss_went_non_finite or sampled):
            return
        self.check_device_losses()
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if params:
            self.check_gradients(params)

    def on_run_end(self) -> None:
        """Losses the device still holds are read once more when a run ends."""
        if not self.device_losses:
            return
        try:
            self.check_device_losses()
        except TorchcheckError:
            raise
        except RuntimeError:  # a device error (e.g. an assert in the user's code) already ended the run
            pass

    def check_device_losses(self) -> None:
        for reads in self.device_losses.values():
            first = reads.first_not_finite()
            if first is not None and not self.loss_went_non_finite:
                self.report_loss(*first)

    def check_gradients(self, params) -> None:
        norms = torch._foreach_norm([p.grad for p in params])
        if math.isfinite(torch.stack(norms).sum().item()):
            return
        first = next(i for i, n in enumerate(norms) if not math.isfinite(n.item()))
        path = self.context.param_path(params[first])
        self.reported = True
        if self.loss_went_non_finite:
            return  # the loss was reported already; the gradient check only confirmed it
        self.report(f"The gradient of `{path}` is NaN or Inf at step {self.context.iteration}"
                    " (the first step where one appeared)", module_path=path.rsplit(".", 1)[0])

    def report_loss(self, step: int, name: str, where) -> None:
        self.loss_went_non_finite = True
        self.report(f"`{name}` returned NaN or Inf at step {step} (the first step where one appeared)",
                    where=where, step=step)
