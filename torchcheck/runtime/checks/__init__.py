"""The runtime checks: one module each, named after its rule (`missing_zero_grad.py` holds
`missing-zero-grad`; the rule's documentation is in `torchcheck/rules/` or, for runtime-only
checks, in `torchcheck.registry`).

A check is a `RuntimeCheck` subclass with its catalog `name`, its own state, and one handler
method per event it needs, named `on_<event>` (the events are listed in `runtime/events.py`).
It reports through `self.report()` and uses what the session shares through `self.context`
(`runtime/context.py`). A check never imports another: adding one touches no other file."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import ClassVar


class RuntimeCheck:
    name: ClassVar[str]

    def __init__(self, context) -> None:
        self.context = context

    @classmethod
    def events(cls) -> tuple[str, ...]:
        """The events this check subscribes to: those it has an `on_<event>` handler for."""
        return _events_of(cls)

    def report(self, message: str, **kwargs) -> None:
        self.context.report(self.name, message, **kwargs)


@lru_cache(maxsize=None)
def _events_of(check: type[RuntimeCheck]) -> tuple[str, ...]:
    return tuple(attribute[3:] for attribute in dir(check) if attribute.startswith("on_"))


@lru_cache(maxsize=1)
def all_checks() -> dict[str, type[RuntimeCheck]]:
    """Every runtime check by name, found by scanning this package."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, RuntimeCheck) and obj.__module__ == module.__name__:
                found[obj.name] = obj
    return dict(sorted(found.items()))
