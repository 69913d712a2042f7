"""Calls of the project's own functions: what a call returns and sets on its receiver, given its
arguments' values (a summary, memoised for the whole run, see `memo`), and what every caller of a
function passes it (its parameters' values when it is evaluated on its own)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from torchcheck.analysis.frame import MAX_CALL_DEPTH, Frame
from torchcheck.analysis.structure import ClassInfo, FunctionInfo
from torchcheck.analysis.syntax import argument
from torchcheck.analysis.values import UNKNOWN, Value, join

if TYPE_CHECKING:
    from torchcheck.analysis.dataflow import FileAnalysis

_LOSS_FUNCTION = re.compile(r"(^|_)loss$", re.IGNORECASE)
_CONTEXT_MANAGERS = frozenset({"contextlib.contextmanager", "contextlib.asynccontextmanager"})


class CallSummaries:
    """The calls part of `FileAnalysis`."""

    def bound_params(self, info: FunctionInfo) -> dict[str, Value]:
        """Parameter values that every caller in this file agrees on (e.g. the criterion passed in); the
        callers of a forward include the calls of its module (`criterion(out, y)`). A function that nothing
        here calls gets its defaults (`criterion=nn.CrossEntropyLoss()`)."""
        sites = self.sites_of(info) + [(call, caller, self) for call, caller in self.module_calls.get(info, [])]
        defaults = {name: Frame(self, info, record=False).eval(node) for name, node in info.defaults().items()}
        if not sites:
            return {name: value for name, value in defaults.items()
                    if value.kind not in ("unknown", "tensor", "number")}
        names = info.param_names()
        offset = 1 if info.cls is not None else 0
        agreed: dict[str, Value] = {}
        if offset and names:
            receiver = self._agreed_receiver(info, sites)
            if receiver is not None:
                agreed[names[0]] = receiver
        for position, name in enumerate(names[offset:]):
            values = []
            for call, _caller, where in sites:
                arg = argument(call, position, name)
                values.append(where.values.get(arg.value, UNKNOWN) if arg is not None else defaults.get(name, UNKNOWN))
            merged = values[0]
            for value in values[1:]:
                merged = join(merged, value)
            # A tensor only where every caller passes the same: its facts (a teacher's probabilities,
            # a model's logits) then hold for each call.
            if merged.kind not in ("unknown", "number") and (merged.kind != "tensor" or values.count(merged) == len(values)):
                agreed[name] = merged
            elif merged.is_tensor and merged.activation is not None:
                # Only the activation: the graph and shape the callers see are theirs.
                agreed[name] = Value(kind="tensor", activation=merged.activation, origin=merged.origin)
        return agreed

    @staticmethod
    def _agreed_receiver(info: FunctionInfo, sites) -> Value | None:
        """`trainer.step(x, y)` everywhere on one `Trainer(model, nn.CrossEntropyLoss())`: that instance,
        with the attributes its constructor set from its arguments."""
        merged = None
        for call, _caller, where in sites:
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value == info.name:
                receiver = func.value
            elif info.name == "forward":  # `model(x)`
                receiver = func
            else:
                return None
            value = where.values.get(receiver, UNKNOWN)
            merged = value if merged is None else join(merged, value)
        if merged is None or not merged.keys or not isinstance(merged.info, ClassInfo):
            return None
        return merged if merged.info.method(info.name) is info else None

    def sites_of(self, info: FunctionInfo, cross_file: bool = False):
        """Calls of a function as (call, calling function, its file's analysis). With `cross_file`, a
        top-level function that nothing in its file calls is looked up in the files that import it;
        None when too many files do to tell (a library API)."""
        self.ensure_evaluated()
        sites = self.call_sites.get(info, [])
        if sites or not cross_file or info.cls is not None or info.parent is not None:
            return [(call, caller, self) for call, caller in sites]
        importers = self.project.importers_of(self.module_name, info.name, exclude=self)
        if importers is None:
            return None
        found = []
        for other in importers:
            other.ensure_evaluated()
            found.extend((call, caller, other) for call, caller in other.call_sites.get(info, []))
        return found

    def call_function(self, info: FunctionInfo, args, kwargs, bound: Value | None, caller: Frame,
                      receiver: str | None = None) -> Value:
        """The return value of a project function called with these argument values. A method called
        on `receiver` (`self._build()` in `__init__`) also sets, in the caller, the attributes it sets."""
        result, assigned = self._summary(info, args, kwargs, bound, caller)
        if receiver is not None:
            caller.env.update({f"{receiver}.{attr}": value for attr, value in assigned.items()})
        return result

    def defer_call(self, info: FunctionInfo, args, kwargs, bound: Value | None, caller: Frame) -> DeferredCall:
        """The last statement of a function, a call of a project function (`self.post_init()`): what it
        sets on its receiver is read by nothing after it, and what it returns is computed only if a
        question asks (`value`), as the same isolated evaluation."""
        return DeferredCall(self, info, args, kwargs, bound, caller)

    def encloses_functions(self, info: FunctionInfo) -> bool:
        """Whether functions are defined inside `info`: they see what it holds once it has run."""
        if self._enclosing is None:
            self._enclosing = {f.parent for f in self.all_functions if f.parent is not None}
        return info in self._enclosing

    def construct(self, instance: Value, args, kwargs, caller: Frame) -> Value:
        """`Net(3, head=nn.Softmax(1))`: the new instance, holding the attributes its `__init__` sets
        from these arguments (`self.head = head`)."""
        fields = instance.info.record_fields()
        if fields is not None:  # a dataclass or NamedTuple: its fields hold the arguments
            values = dict(zip(fields, args)) | kwargs
            kind = "tuple" if instance.info.is_named_tuple() else instance.kind
            return instance.with_(kind=kind, keys=tuple(fields), items=tuple(values.get(f, UNKNOWN) for f in fields))
        init = instance.info.method("__init__")
        if init is None or not args and not kwargs and not init.defaults():
            return instance
        _, assigned = self._summary(init, args, kwargs, instance, caller)
        return instance.with_(keys=tuple(assigned), items=tuple(assigned.values()))

    def _summary(self, info: FunctionInfo, args, kwargs, bound: Value | None, caller: Frame):
        if caller.depth >= MAX_CALL_DEPTH:
            self.project.memo.depth_cut()
            return UNKNOWN, {}
        key = (info, bound, tuple(args), tuple(sorted(kwargs.items())), caller.grad)
        return self.project.memo.get(info.analysis._summaries, key, caller.depth,
                                     lambda: self._run_call(info, args, kwargs, bound, caller), (UNKNOWN, {}))

    def _run_call(self, info: FunctionInfo, args, kwargs, bound: Value | None, caller: Frame):
        """(the return value, the attributes of the bound object the call assigned)."""
        frame = Frame(info.analysis, info, record=False, depth=caller.depth + 1, grad=caller.grad)
        if info.parent is not None and info.parent is caller.func:  # a nested function sees its caller's names
            frame.env.update({k: v for k, v in caller.env.items() if k not in info.param_names()})
        names = info.param_names()
        prefix = None
        if bound is not None and names:
            frame.env[names[0]] = bound
            prefix = names[0] + "."
            names = names[1:]
        for name, value in zip(names, args):
            frame.env[name] = value
        for name, value in kwargs.items():
            frame.env[name] = value
        for name, default in info.defaults().items():
            if name not in frame.env:
                frame.env[name] = frame.eval(default)
        frame.run()
        result = UNKNOWN
        for i, value in enumerate(frame.returns):
            result = value if i == 0 else join(result, value)
        if result.is_tensor and _LOSS_FUNCTION.search(info.name):
            result = result.with_(is_loss=True)  # `compute_loss(...)`, `_smooth_l1_loss(...)`
        yielded_in = set(frame.yield_grads)
        if len(yielded_in) == 1 and yielded_in != {caller.grad} and _CONTEXT_MANAGERS.intersection(info.decorator_qualnames()):
            # `with inference():` of a @contextmanager that yields under `torch.no_grad()`
            result = Value(kind="grad_ctx", qualname=yielded_in.pop())
        assigned = {k[len(prefix):]: v for k, v in frame.env.items() if k.startswith(prefix)} if prefix else {}
        return result, assigned


@dataclass
class DeferredCall:
    """A call whose answer is computed when asked (`FileAnalysis.defer_call`)."""
    analysis: FileAnalysis
    info: FunctionInfo
    args: list
    kwargs: dict
    bound: Value | None
    caller: Frame

    def result(self) -> Value:
        with self.analysis.project.memo.isolated():  # as when its function was evaluated
            return self.analysis._summary(self.info, self.args, self.kwargs, self.bound, self.caller)[0]
