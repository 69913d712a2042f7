"""Runtime twin of `torchcheck/rules/missing_zero_grad.py`: `optimizer.step()` consuming gradients
that already fed the previous step.

Watched on the first and last trainable parameter of each parameter group: forgetting
`zero_grad()` leaves every gradient stale and a partial clear leaves one end stale, so two per
group find it, at a per-step cost (one hook call per backward each) that does not grow with the
model. After each step the check remembers the gradient tensor the step consumed and its version
counter. At the first backward pass after the step (a post-accumulate-grad hook), the gradient is
stale when it is still that tensor and nothing but this accumulation changed it: not set to None,
not replaced, not zeroed in place. The decision is taken there because it is the last moment
only the user's code has touched the gradient: DistributedDataParallel copies the all-reduced
gradient back in place at the end of every synchronising backward, which a version count taken
at the next step would mistake for a clear. A `zero_grad()` after the decision still clears."""
from __future__ import annotations

import functools
import weakref

import torch

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.context import WeakIdMap


class ParamState:
    """What the check knows of one watched parameter since the last optimizer step."""

    __slots__ = ("accumulations", "cleared", "fed", "fed_version", "untouched")

    def __init__(self) -> None:
        self.fed = None  # a weak reference to the .grad tensor the last step consumed
        self.fed_version = 0
        self.accumulations = 0  # backward passes accumulated since the last step
        self.untouched = False  # the first of them added onto the consumed gradient, unchanged since the step
        self.cleared = False  # zero_grad() covered the parameter since the step


def _version(grad) -> int:
    """The version counter of a gradient's data: a DTensor's local shard (FSDP2 accumulates into
    the shard, leaving the DTensor's own counter alone)."""
    return grad._version if type(grad) is torch.Tensor else getattr(grad, "_local_tensor", grad)._version


def _accumulated(state: ParamState, param) -> None:
    state.accumulations += 1
    if state.accumulations == 1 and state.fed is not None:
        grad = param.grad
        state.untouched = grad is state.fed() and _version(grad) == state.fed_version + 1


class MissingZeroGrad(RuntimeCheck):
    name = "missing-zero-grad"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.params = WeakIdMap()  # parameter -> ParamState
        self.sampled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> (count, [(ref, state)])

    def sample(self, optimizer) -> list:
        """The optimizer's watched parameters with their states, hooking any not seen yet."""
        count = sum(len(group["params"]) for group in optimizer.param_groups)
        known = self.sampled.get(optimizer)
        if known is not None and known[0] == count:
            return known[1]
        records = []
        for group in optimizer.param_groups:
            trainable = [p for p in group["params"] if p.requires_grad]
            for param in dict.fromkeys(trainable[:1] + trainable[-1:]):
                state = self.params.get(param)
                if state is None:
                    state = self.params[param] = ParamState()
                    hook = functools.partial(_accumulated, state)
                    self.context.stack.callback(param.register_post_accumulate_grad_hook(hook).remove)
                records.append((weakref.ref(param), state))
        self.sampled[optimizer] = (count, records)
        return records

    def on_step_pre(self, optimizer) -> None:
        for ref, state in self.sample(optimizer):
            if not state.untouched or state.cleared:
                continue
            param = ref()
            if param is None or param.grad is None or param.grad is not state.fed():
                continue
            added = state.accumulations
            self.report(f"`{type(optimizer).__name__}.step()` uses gradients that already fed the previous"
                        f" step: nothing cleared them (`{self.context.param_path(param)}` accumulated {added} more"
                        f" backward pass{'es' if added != 1 else ''} on top); call `optimizer.zero_grad()` each step")
            return

    def on_step_post(self, optimizer) -> None:
        for ref, state in self.sample(optimizer):
            param = ref()
            grad = param.grad if param is not None else None
            state.fed, state.fed_version = (weakref.ref(grad), _version(grad)) if grad is not None else (None, 0)
            state.accumulations = 0
            state.untouched = state.cleared = False

    def on_optimizer_zero_grad(self, optimizer) -> None:
        for _, state in self.sampled.get(optimizer, (0, ()))[1]:
            state.cleared = True

    def on_module_zero_grad(self, module) -> None:
        for param in module.parameters():
            state = self.params.get(param)
            if state is not None:
                state.cleared = True
