from __future__ import annotations

import libcst as cst

from torchcheck.analysis.calls import short_code
from torchcheck.analysis.imports import child_blocks, dotted_name, iter_statements
from torchcheck.analysis.mode_switches import Event, IterationEvents
from torchcheck.rule import Invalid, Rule
from torchcheck.walk import descendants


def _related(name: str, other: str) -> bool:
    return name == other or name.startswith(other + ".") or other.startswith(name + ".")


class TrainModeNotRestored(Rule):
    """
    ## What it does
    Finds a training loop (it calls `backward()`) whose iterations also run `model.eval()` —
    directly, or in a function they call, in this file or another — and never switch that model
    back with `model.train()`: not in the loop body, and not in the functions it calls (a
    training function that starts with `model.train()` counts). The model is the one the loop
    trains: it runs its forward with grad enabled (not in the helper that put it in eval mode,
    which evaluates it: `predict(best_model)` on a copy), or an optimizer stepped in the loop
    updates its parameters.

    The runtime check of the same name (`torchcheck run`, `torchcheck.watch()`) reports an
    optimizer step taken while the model owning every parameter it steps is entirely in eval
    mode, when that optimizer had stepped before `eval()` was called on the model, with the line
    that called `eval()`. A model without Dropout, BatchNorm or other mode-dependent layers
    trains the same in both modes and is not reported.

    ## Why is this bad?
    A `validate()` that ends in eval mode leaves the model there. Every later training step runs
    with Dropout off and BatchNorm normalising with (and no longer updating) its running
    statistics. Training continues without error; accuracy plateaus early and nothing says why.

    ## Example
    ```python
    model.train()
    for epoch in range(epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        validate(model, val_loader)   # calls model.eval()
    ```

    ## Use instead
    ```python
    for epoch in range(epochs):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        validate(model, val_loader)
    ```
    Putting only some submodules in eval mode while the model trains (frozen BatchNorm layers
    during fine-tuning) is deliberate and not reported, and neither is a model whose layers
    behave the same in both modes.

    ## Fix safety
    No fix: whether `train()` belongs at the top of the epoch, after the evaluation or inside
    the training function is the author's choice.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.train
    """

    code = "TC304"
    name = "train-mode-not-restored"
    summary = "A training loop switches the model to eval mode and never back to train mode"
    runtime_check = True
    needles = (".eval(", "backward", ".train(")

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._events = IterationEvents()

    def visit_For(self, node: cst.For) -> None:
        self._check(node)

    def visit_While(self, node: cst.While) -> None:
        self._check(node)

    def _check(self, loop: cst.For | cst.While) -> None:
        if not any(type(n) is cst.Call for n in descendants(loop.body)):
            return
        scope = self.ctx.analysis.function_of_node.get(self.ctx.functions[-1]) if self.ctx.functions else None
        events = self._events.of_body(self.ctx.analysis, scope, loop.body)
        backward = next((e for e in events if e.kind == "backward"), None)
        if backward is None:
            return
        evaluating = {e.via for e in events if e.kind == "eval" and e.via is not None}  # `self.predict(model)`
        trained = {e.receiver for e in events if e.receiver and (
            e.kind == "step" or e.kind == "forward" and not e.grad_off and (e.via is None or e.via not in evaluating))}
        switched_on = [e.receiver for e in events if e.kind == "train"]
        for event in events:
            if event.kind != "eval" or not event.module or event.receiver is None:
                continue
            model = event.receiver
            if not any(model == t or t.startswith(model + ".") for t in trained):
                continue  # not trained here (a frozen teacher), or a submodule of it (frozen BatchNorm)
            if any(r is None or model == r or model.startswith(r + ".") or not any(_related(r, t) for t in trained)
                   for r in switched_on):
                continue  # restored, or maybe: a `train()` on a module we cannot name
            if self._no_mode_effects(event) or _leaves_loop_after(loop, event.via or event.node):
                continue
            self._report(loop, event, model, backward)

    def _no_mode_effects(self, event: Event) -> bool:
        value = event.where.value(event.node.func.value)
        effects, complete = self.ctx.project.value_mode_effects(value)
        return complete and not effects

    def _report(self, loop, event: Event, model: str, backward: Event) -> None:
        here = event.where is self.ctx.analysis
        node = event.node if here else event.via
        local = dotted_name(event.node.func.value) or model
        via = f" (through `{short_code(self.ctx, event.via, 40)}`)" if event.via is not None else ""
        related = [(loop, "the training loop")]
        if event.via is not None and node is not event.via:
            related.append((event.via, "the loop calls the evaluation here"))
        if node is not event.node:
            related.append((event.node, f"`{local}.eval()` here"))
        related.append((backward.node, "the next training step's backward()"))
        self.report(
            node,
            f"`{local}.eval()` runs in a training loop{via} and nothing switches `{model}` back with `.train()`"
            " before the next training step: later steps train with Dropout off and BatchNorm frozen; call"
            f" `{model}.train()` after evaluating, or at the start of each epoch",
            related=related,
        )

    VALID = [
        """
        import copy
        import torch.nn as nn
        import torch.nn.functional as F
        model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1), nn.Linear(8, 1))
        def predict(model, x):  # shows how a copy of the model does: evaluation, not training
            model.eval()
            return model(x)
        def fit(loader, optimizer):
            for x, y in loader:
                loss = F.mse_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                best = copy.deepcopy(model)
                predict(best, x)
        """,
        """
        def validate(model, loader):
            model.eval()
            for x, y in loader:
                model(x)
        for epoch in range(10):
            model.train()
            for x, y in train_loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
            validate(model, val_loader)
        """,
        """
        def train_one_epoch(model, loader, optimizer):
            model.train()
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
        def evaluate(model, loader):
            model.eval()
            return [model(x) for x, _ in loader]
        for epoch in range(10):
            train_one_epoch(model, train_loader, optimizer)
            evaluate(model, val_loader)
        """,
        """
        import torch.nn as nn
        for epoch in range(10):
            model.train()
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()  # frozen BatchNorm while fine-tuning
            model.backbone.eval()
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
        """,
        """
        import torch
        teacher.eval()
        for x, y in loader:
            teacher.eval()
            with torch.no_grad():
                soft = teacher(x)
            optimizer.zero_grad()
            criterion(student(x), soft).backward()
            optimizer.step()
        """,
        """
        for epoch in range(10):
            for phase in ["train", "val"]:
                if phase == "train":
                    model.train()
                else:
                    model.eval()
                for x, y in loaders[phase]:
                    loss = criterion(model(x), y)
                    if phase == "train":
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
        """,
    ]
    INVALID = [
        Invalid(
            """
            def validate(model, loader):
                model.eval()
                for x, y in loader:
                    model(x)
            model.train()
            for epoch in range(10):
                for x, y in train_loader:
                    optimizer.zero_grad()
                    criterion(model(x), y).backward()
                    optimizer.step()
                validate(model, val_loader)
            """
        ),
        Invalid(
            """
            class Trainer:
                def __init__(self, model, optimizer, loader):
                    self.model, self.optimizer, self.loader = model, optimizer, loader
                def evaluate(self):
                    self.model.eval()
                def train_epoch(self):
                    self.model.train()
                    for i, (x, y) in enumerate(self.loader):
                        if i % 100 == 0:
                            self.evaluate()
                        self.optimizer.zero_grad()
                        self.model(x).sum().backward()
                        self.optimizer.step()
            """
        ),
    ]


def _leaves_loop_after(loop, anchor: cst.CSTNode) -> bool:
    """Does the statement holding `anchor` end the loop's iteration for good (a `break`, `return` or
    `raise` after it in its block): then no training step follows it."""
    return _exits_after(iter_statements(loop.body), anchor) is True


def _exits_after(statements, anchor: cst.CSTNode) -> bool | None:
    """True: the block holding `anchor` leaves the loop after it; False: it does not; None: not here."""
    for i, stmt in enumerate(statements):
        if stmt is not anchor and not any(n is anchor for n in descendants(stmt)):
            continue
        if isinstance(stmt, cst.BaseCompoundStatement) and not isinstance(stmt, (cst.For, cst.While)):
            for block in child_blocks(stmt):
                inner = _exits_after(iter_statements(block), anchor)
                if inner is not None:
                    return inner or _ends_with_exit(statements[i + 1:])
        return _ends_with_exit(statements[i + 1:])
    return None


def _ends_with_exit(statements) -> bool:
    return any(isinstance(stmt, (cst.Break, cst.Return, cst.Raise)) for stmt in statements)
