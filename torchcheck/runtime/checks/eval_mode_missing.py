"""Runtime twin of `torchcheck/rules/eval_mode_missing.py`: a BatchNorm updating its running
statistics, or a dropout dropping, during a no-grad forward (evaluation or inference) while the
layer is in train mode, more than once between optimizer steps (one no-grad forward between
steps can be part of training, like a GAN's generator). Re-estimating statistics on purpose is
not reported: `swa_utils.update_bn`, and a recalibration after `reset_running_stats()` until the
next `eval()` or step."""
from __future__ import annotations

import weakref

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.events import arg, calling_module
from torchcheck.runtime.frames import inside


class EvalModeMissing(RuntimeCheck):
    name = "eval-mode-missing"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.nograd_train_forwards: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # since the last step
        self.recalibrating = False

    def on_dropout(self, name, args, kwargs) -> None:
        if torch.is_grad_enabled():
            return
        training = arg(args, kwargs, 2, "training")
        p = arg(args, kwargs, 1, "p")
        if (training is None or training is True) and (p is None or p > 0):
            caller = calling_module()
            if caller is not None and caller.training:
                self.train_mode_layer(caller)

    def on_batch_norm(self, args, kwargs) -> None:
        if not torch.is_grad_enabled() and arg(args, kwargs, 5, "training") \
                and arg(args, kwargs, 1, "running_mean") is not None:
            caller = calling_module()
            if isinstance(caller, _BatchNorm):
                self.train_mode_layer(caller)

    def on_reset_running_stats(self, module) -> None:
        self.recalibrating = True

    def on_train_mode(self, module, mode) -> None:
        if mode is False:
            self.recalibrating = False

    def on_step_post(self, optimizer) -> None:
        if self.nograd_train_forwards:
            self.nograd_train_forwards = weakref.WeakKeyDictionary()
        self.recalibrating = False

    def train_mode_layer(self, module: nn.Module) -> None:
        """A BatchNorm updating its running statistics, or a dropout dropping, with grad disabled."""
        if self.recalibrating or not self.context.watches_module(module):
            return
        if isinstance(module, _BatchNorm) and module.momentum is None:
            return
        count = self.nograd_train_forwards.get(module, 0) + 1
        self.nograd_train_forwards[module] = count
        if count < 2 or inside("swa_utils.py"):
            return
        path = self.context.module_path(module)
        kind = type(module).__name__
        what = "its running statistics were updated from this data" if isinstance(module, _BatchNorm) else "it dropped units"
        self.report(f"{kind} `{path}` ran in train mode during a no-grad forward (evaluation or inference):"
                    f" {what}; call `model.eval()` before evaluating", module_path=path, outside_modules=True)
