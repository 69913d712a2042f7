"""What every runtime check may use, kept once per session: the watched models and optimizers,
optimizer step counts, names of modules and parameters, and the finding sink."""
from __future__ import annotations

import contextlib
import gc
import warnings
import weakref

import torch
import torch.nn as nn

from torchcheck.runtime.frames import modules_being_called


class WeakIdMap:
    """A weak map keyed by object identity. Tensors cannot be keys of a WeakKeyDictionary or members
    of a WeakSet: those compare keys with `==`, which is elementwise for tensors."""

    def __init__(self) -> None:
        self._data: dict[int, tuple[weakref.ref, object]] = {}

    def _entry(self, obj):
        entry = self._data.get(id(obj))
        return entry if entry is not None and entry[0]() is obj else None

    def __contains__(self, obj) -> bool:
        return self._entry(obj) is not None

    def get(self, obj, default=None):
        entry = self._entry(obj)
        return entry[1] if entry is not None else default

    def __getitem__(self, obj):
        entry = self._entry(obj)
        if entry is None:
            raise KeyError(id(obj))
        return entry[1]

    def __setitem__(self, obj, value) -> None:
        key = id(obj)
        entry = self._entry(obj)
        if entry is not None:
            self._data[key] = (entry[0], value)
            return
        data = self._data

        def forget(ref, key=key):
            if data.get(key, (None,))[0] is ref:
                del data[key]

        data[key] = (weakref.ref(obj, forget), value)

    def add(self, obj) -> None:
        self[obj] = True

    def discard(self, obj) -> None:
        if self._entry(obj) is not None:
            del self._data[id(obj)]

    __delitem__ = discard

    def items(self) -> list[tuple[object, object]]:
        return [(obj, value) for ref, value in list(self._data.values()) if (obj := ref()) is not None]

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


class Context:
    """Shared by the checks of one session. Modules, optimizers and parameters are held weakly.
    `stack` takes the handles a check registers itself (hooks on parameters); it closes when the
    session ends, also on an exception."""

    def __init__(self, session, stack: contextlib.ExitStack) -> None:
        self.session = session
        self.stack = stack
        self.models: weakref.WeakSet = weakref.WeakSet()  # models passed to watch()
        self.optimizers: weakref.WeakSet = weakref.WeakSet()
        self.explicit = False
        self.steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> its steps
        self.iteration = 0  # the most optimizer steps any single optimizer has taken
        self.param_names = WeakIdMap()

    # -- what is watched ---------------------------------------------------------------------------
    def watch(self, objects) -> None:
        for obj in objects:
            if isinstance(obj, nn.Module):
                self.models.add(obj)
                self.explicit = True
            elif isinstance(obj, torch.optim.Optimizer):
                self.optimizers.add(obj)
                self.explicit = True
            else:
                raise TypeError(f"watch() takes models and optimizers, not {type(obj).__name__}")

    def watches_module(self, module: nn.Module) -> bool:
        if not self.explicit or not self.models:
            return True
        return any(module is m or any(module is sub for sub in m.modules()) for m in self.models)

    def watches_optimizer(self, optimizer) -> bool:
        return not self.explicit or not self.optimizers or optimizer in self.optimizers

    def count_step(self, optimizer) -> None:
        """Subscribed to `step_post` before any check, so checks see the step just taken counted."""
        steps = self.steps[optimizer] = self.steps.get(optimizer, 0) + 1
        self.iteration = max(self.iteration, steps)

    # -- names -------------------------------------------------------------------------------------
    def module_path(self, module: nn.Module) -> str:
        roots = list(self.models) + [m for m in modules_being_called() if m is not None][-1:]
        for root in roots:
            for name, sub in root.named_modules():
                if sub is module:
                    return name or type(root).__name__
        return type(module).__name__

    def param_path(self, param) -> str:
        """`features.0.weight`: the parameter's name in its model (found once, when a finding needs it)."""
        name = self.param_names.get(param)
        if name is None:
            with warnings.catch_warnings():  # some torch module objects warn when inspected
                warnings.simplefilter("ignore")
                roots = list(self.models) or [o for o in gc.get_objects() if isinstance(o, nn.Module)]
            candidates = [n for root in roots for n, p in root.named_parameters() if p is param]
            name = max(candidates, key=lambda n: n.count("."), default="a parameter")
            self.param_names[param] = name
        return name

    # -- findings ----------------------------------------------------------------------------------
    def report(self, name: str, message: str, *, step: int | None = None, **kwargs) -> None:
        """Report a finding of check `name`; it points at the user's line unless `where` is given,
        and happened at the current step unless `step` is."""
        self.session.report(name, message, step=self.iteration if step is None else step, **kwargs)

    def wants(self, name: str) -> bool:
        return self.session.wants(name)
