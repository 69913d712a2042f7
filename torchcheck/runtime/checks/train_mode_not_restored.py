"""Runtime twin of `torchcheck/rules/train_mode_not_restored.py`: an optimizer step taken while the
model owning every trainable parameter it steps is entirely in eval mode, when that optimizer had
stepped before the model was switched to eval; reported once per model, at the step, with the line
that called `eval()` as evidence.

The model is a module `eval()` (or `train(False)`) was called on directly, not one switched by its
parent's call. It counts only when it has a layer whose behaviour depends on the mode (Dropout,
BatchNorm and the other norms tracking running statistics, dropout in attention and recurrent
layers): a model whose layers behave the same in both modes trains the same either way. Layers
frozen in eval mode inside a model that trains (fine-tuning with frozen BatchNorm, an eval-mode
backbone under a training head) do not own every stepped parameter, and are not reported. Nothing
runs at a step unless some module was switched to eval and not back."""
from __future__ import annotations

import inspect
import sys
import weakref
from pathlib import Path

import torch.nn as nn
from torch.nn.modules.batchnorm import _NormBase

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.frames import user_frame

_OWN_DIR = str(Path(__file__).resolve().parent.parent.parent)


def depends_on_mode(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    if isinstance(module, _NormBase):
        return module.track_running_stats
    if isinstance(module, (nn.MultiheadAttention, nn.RNNBase)):
        return module.dropout > 0
    return False


class Switched:
    """A module switched to eval mode by a direct call, and what was true then."""

    __slots__ = ("module", "where", "steps_before", "parameters", "verdicts")

    def __init__(self, module: nn.Module, where, steps_before) -> None:
        self.module = weakref.ref(module)
        self.where = where
        self.steps_before = steps_before  # optimizer -> steps it had taken when eval() was called
        self.parameters: set[int] | None = None  # ids of the module's parameters, found when first needed
        self.verdicts: dict = {}  # (optimizer id, its parameter count) -> (generation, owns all and in eval)


class TrainModeNotRestored(RuntimeCheck):
    name = "train-mode-not-restored"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.switched: dict[int, Switched] = {}  # id(module) -> the record of its eval() call
        self.generation = 0  # counts train()/eval() calls: a verdict holds until the next one
        self.module_train = inspect.unwrap(nn.Module.train).__code__

    def on_train_mode(self, module, mode) -> None:
        self.generation += 1
        if mode:
            self.switched.pop(id(module), None)
            return
        if self.switched_by_parent():
            return
        known = self.switched.get(id(module))
        if known is not None and known.module() is module:
            known.where = user_frame()  # switched again (after a part went back to train mode): the latest call
        elif module.training:
            steps_before = weakref.WeakKeyDictionary(self.context.steps)
            self.switched[id(module)] = Switched(module, user_frame(), steps_before)

    def switched_by_parent(self) -> bool:
        """Is this call `Module.train` recursing into a child?"""
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith(_OWN_DIR):
            frame = frame.f_back
        return frame is not None and frame.f_code is self.module_train

    def on_step_pre(self, optimizer) -> None:
        if not self.switched:
            return
        for key, record in list(self.switched.items()):
            module = record.module()
            if module is None or module.training:
                del self.switched[key]
            elif record.steps_before.get(optimizer, 0) and self.trains_in_eval(record, module, optimizer):
                del self.switched[key]
                self.report_step(record, module, optimizer)

    def trains_in_eval(self, record: Switched, module: nn.Module, optimizer) -> bool:
        """The module owns every trainable parameter the optimizer steps, is entirely in eval mode and
        has a layer that depends on the mode (decided again after any train()/eval() call)."""
        stepped = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        key = (id(optimizer), len(stepped))
        known = record.verdicts.get(key)
        if known is not None and known[0] == self.generation:
            return known[1]
        if record.parameters is None:
            record.parameters = {id(p) for p in module.parameters()}
        modules = list(module.modules())
        verdict = bool(stepped) and all(id(p) in record.parameters for p in stepped) \
            and not any(m.training for m in modules) and any(depends_on_mode(m) for m in modules)
        record.verdicts[key] = (self.generation, verdict)
        return verdict

    def report_step(self, record: Switched, module: nn.Module, optimizer) -> None:
        layers = sorted({type(m).__name__ for m in module.modules() if depends_on_mode(m)})
        before = record.steps_before.get(optimizer, 0)
        self.report(f"`{type(optimizer).__name__}.step()` trains `{type(module).__name__}` while it is in eval mode:"
                    f" `eval()` was called after {before} step{'s' if before != 1 else ''} in train mode and"
                    f" `train()` never since, so its {', '.join(layers)} layers train in eval behaviour;"
                    " call `model.train()` before training again",
                    related=(("switched to eval mode here", record.where),))
