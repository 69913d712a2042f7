"""Runtime twin of `torchcheck/rules/functional_dropout_training.py`: `F.dropout` (or a variant)
dropping units inside a module that is in eval mode."""
from __future__ import annotations

from torchcheck.runtime.checks import RuntimeCheck
from torchcheck.runtime.events import arg, calling_module


class FunctionalDropoutTraining(RuntimeCheck):
    name = "functional-dropout-training"

    def on_dropout(self, name, args, kwargs) -> None:
        training = arg(args, kwargs, 2, "training")
        p = arg(args, kwargs, 1, "p")
        if (training is None or training is True) and (p is None or p > 0):
            caller = calling_module()
            if caller is not None and not caller.training:
                path = self.context.module_path(caller)
                self.report(f"`F.{name}` dropped units while module `{path}` is in eval mode: pass"
                            " `training=self.training`", module_path=path)
