from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import forward_model, forward_receiver, method_name
from torchcheck.analysis.evaluation import EVAL_WORDS
from torchcheck.analysis.imports import dotted_name
from torchcheck.rule import Invalid
from torchcheck.rules._eval_code import EvalCodeRule
from torchcheck.walk import descendants

_CONSEQUENCES = {
    "dropout": "Dropout stays active",
    "batchnorm": "BatchNorm uses batch statistics and updates its running statistics",
    "instancenorm": "InstanceNorm with running statistics updates them",
    "training-flag": "code that checks `self.training` takes its training path",
}


def _consequences(effects: frozenset) -> str:
    """What train mode does to this model: only what it is known to have, or, where nothing is
    known, what it would do to the usual layers."""
    if not effects:
        return "any Dropout stays active and any BatchNorm uses batch statistics and updates its running statistics"
    phrases = [_CONSEQUENCES[e] for e in _CONSEQUENCES if e in effects]
    return ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + phrases[-1]


class EvalModeMissing(EvalCodeRule):
    """
    ## What it does
    Finds evaluation code — a validation/test/inference function or a loop over evaluation data —
    that runs a model which was not put in `eval()` mode on the way there: not in the function
    before the call, and not by every caller before it calls the function
    (`model.eval(); evaluate(model, loader)` counts). Models whose class is known and contains no
    Dropout, BatchNorm, InstanceNorm, recurrent or attention layer (so `eval()` changes nothing)
    are not reported. Nor are models whose mode the code cannot see: handed in by callers outside
    the tree, used in a framework hook (a method overriding its base class's) that nothing in the
    tree calls, or held by a class that puts them in eval mode in another method (its setup).

    ## Why is this bad?
    In train mode, Dropout keeps dropping units and BatchNorm normalises with the current batch's
    statistics *and updates its running statistics* from the evaluation data. Metrics come out
    noisy and too low, depend on the batch size, and the evaluation pass silently changes the
    model.

    ## Example
    ```python
    def validate(model, loader):
        with torch.no_grad():
            for x, y in loader:
                acc += (model(x).argmax(1) == y).float().mean()
    ```

    ## Use instead
    ```python
    def validate(model, loader):
        model.eval()
        with torch.no_grad():
            for x, y in loader:
                acc += (model(x).argmax(1) == y).float().mean()
        model.train()
    ```

    ## Options
    `eval-function-pattern`: the regular expression that names evaluation functions.

    ## Fix safety
    No fix: where to switch back to `train()` needs the author.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval
    """

    code = "TC301"
    name = "eval-mode-missing"
    summary = "Evaluation code runs a model that is still in training mode"
    runtime_check = True
    needles = (EVAL_WORDS, ".backward(")  # evaluation code by name, or after a training loop

    def report_key(self, scope, node: cst.Call):
        return (scope, forward_receiver(node))

    def check_forward(self, scope, node: cst.Call) -> bool:
        receiver = forward_receiver(node)
        if receiver is None:
            return False
        value = self.ctx.value(forward_model(node))
        effects, complete = self.ctx.project.value_mode_effects(value)
        if complete and not effects:
            return False  # no layer of it behaves differently in eval()
        states = self.ctx.analysis.mode_at(node, receiver)
        if "eval" in states or self._callers_unknown(scope, receiver, node):
            return False
        if states == frozenset({"unknown"}) and self._evaluated_by_its_class(node, receiver):
            return False
        if scope in self.by_mode and states != frozenset({"train"}):
            return False  # another model of this loop is in eval mode; this one may be a part of it
        self.report(
            node,
            f"`{receiver}` runs in {self.describe(scope)} without `{receiver}.eval()`: {_consequences(effects)};"
            f" call `{receiver}.eval()` first",
            related=self.evidence(scope, node),
        )
        return True

    def _callers_unknown(self, scope, receiver: str, node: cst.Call) -> bool:
        """A model handed in by callers that the tree does not contain (a library API), as a parameter
        of this function or of a function enclosing it (a factory that returns the evaluation step):
        the caller decides the mode, and we cannot see it."""
        analysis = self.ctx.analysis
        info = analysis.scope.get(node)
        if info is not None and info.overrides() and not analysis.sites_of(info, cross_file=True):
            return True  # a framework's hook: the framework sets the mode
        root = receiver.split(".")[0]
        while info is not None and root not in info.param_names():
            info = info.parent
        return info is not None and not analysis.sites_of(info, cross_file=True)

    def _evaluated_by_its_class(self, node: cst.Call, receiver: str) -> bool:
        """`self.model`, in a method, that another method of the class puts in eval mode (its setup):
        where the mode here is not known, that method may well have run first."""
        info = self.ctx.analysis.scope.get(node)
        if info is None or info.cls is None or not info.param_names():
            return False
        head, _, rest = receiver.partition(".")
        if head != info.param_names()[0] or not rest:
            return False
        for method in info.cls.own_methods.values():
            own = method.param_names()[:1]
            if method is info or not own:
                continue
            wanted = f"{own[0]}.{rest}"
            if any(type(call) is cst.Call and method_name(call) == "eval" and dotted_name(call.func.value) == wanted
                   for call in descendants(method.node)):
                return True
        return False

    VALID = [
        """
        import torch
        @torch.no_grad()
        def predict(model, x):  # a library function: its callers are not in the tree
            return model(x).argmax(1)
        """,
        """
        import torch
        def evaluate(model, loader):
            model.eval()
            with torch.no_grad():
                return [model(x) for x, _ in loader]
        """,
        """
        import torch
        def evaluate(model, loader):
            with torch.no_grad():
                return [model(x) for x, _ in loader]
        def fit(model, loader):
            model.eval()
            evaluate(model, loader)
        """,
        """
        import torch
        import torch.nn as nn
        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(784, 128)
                self.fc2 = nn.Linear(128, 10)
            def forward(self, x):
                return self.fc2(torch.relu(self.fc1(x)))
        model = MLP()
        def test():
            with torch.no_grad():
                for x, y in test_loader:
                    model(x)
        """,
        """
        import torch
        def create_evaluator(model, forward=lambda model, x: model(x)):  # a library API
            def evaluate_step(engine, batch):
                with torch.no_grad():
                    return forward(model, batch[0]), model(batch[0])
            return evaluate_step
        """,
        """
        import torch
        def create_evaluator(model, model_fn=lambda model, x: model(x), model_transform=lambda y: y):
            def evaluate_step(engine, batch):
                model.eval()
                with torch.no_grad():
                    return model_transform(model_fn(model, batch[0]))
            return evaluate_step
        evaluator = create_evaluator(torch.nn.Linear(2, 2))
        """,
        """
        import torch
        from helpers import evaluating  # a context manager of another library: it may switch the mode
        def validate(model, loader):
            with torch.no_grad(), evaluating(model):
                return [model(x) for x, _ in loader]
        def fit(model, loader):
            model.train()
            validate(model, loader)
        """,
        """
        def _validate(solver, expr):  # a z3 solver's model(), not an nn.Module forward
            return solver.model().eval(expr)
        """,
        """
        import torch
        class Trainer:
            def validate(self):
                self.model.eval()
                with torch.no_grad():
                    for x, y in self.val_loader:
                        self.model(x)
        """,
        """
        import torch
        class Predictor:
            def setup(self, weights):
                self.model = torch.jit.load(weights)
                self.model.eval()
            @torch.no_grad()
            def __call__(self, images):
                return [self.infer(x) for x in images]
            def infer(self, x):  # its class puts the model in eval mode in setup(), run first
                return self.model(x)
        """,
    ]
    INVALID = [
        Invalid(
            """
            import torch
            def validate(model, loader):
                with torch.no_grad():
                    for x, y in loader:
                        out = model(x)
            def fit(model, train_loader, val_loader):
                model.train()
                validate(model, val_loader)
            """
        ),
        Invalid(
            """
            import torch
            import torch.nn as nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(10, 10)
                    self.bn = nn.BatchNorm1d(10)
                def forward(self, x):
                    return self.bn(self.fc(x))
            net = Net()
            def train_and_eval(train_loader, val_loader, optimizer):
                for x, y in train_loader:
                    optimizer.zero_grad()
                    net(x).sum().backward()
                    optimizer.step()
                with torch.no_grad():
                    for x, y in val_loader:
                        net(x)
            """
        ),
    ]
